// File: src/http/server/server_state.hpp
//
// The server's shared state and each loop's context, as the connections see them.
//
//   server::state ──owns──> loop_context[i] ──owns──> event_loop, listener, acceptor
//                                          ──indexes──> connections by id, streams by id
//                 ──owns──> rt::system (VP threads) + rt_pacing: one timer connection per paced stream
//
// Thread-safety: the atomics may be read from any thread (monitoring snapshots, relaxed). A
// loop_context's maps and its connections are touched only by that loop's thread.
#pragma once

#include "datapump/base/accept_guard.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/cache/file_cache.hpp"
#include "datapump/fs/open_cache.hpp"
#include "datapump/fs/registry.hpp"
#include "datapump/http/proto/cache_rules.hpp"
#include "datapump/http/proto/cors.hpp"
#include "datapump/http/proto/mime.hpp"
#include "datapump/http/server.hpp"
#include "datapump/ingest/ingest.hpp"
#include "datapump/io/event_loop.hpp"
#include "datapump/rt/system.hpp"
#include "datapump/stream/admission.hpp"
#include "datapump/stream/client_limits.hpp"
#include "datapump/stream/open.hpp"
#include "datapump/stream/rt_pacing.hpp"
#include "datapump/stream/sender.hpp"
#include "datapump/stream/stream_table.hpp"
#include "latency_histogram.hpp"
#include "uploads.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/types.h>

namespace datapump::http {

class connection;
struct loop_context;

// Relaxed increments of monitoring counters: nothing else is ordered by them.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) {
    counter.fetch_add(by, std::memory_order_relaxed);
}

using send_counters = stream::send_counters;  // the send paths are the stream engine's

// Accepts connections on one of a loop's listening sockets (multishot accept): one per public
// address on every loop, and the admin listener on loop 0.
struct acceptor final : io::completion {
    loop_context* ctx = nullptr;
    unique_fd listener;
    bool admin = false;  // its connections see only the control plane (router.cpp, admin_route)
    bool armed = false;
    void arm();
    void complete(int result, std::uint32_t flags) override;
};

// Ends a loop's accept pause (accept back-off, docs/daemon.md "Limits"): the timer's completion.
struct accept_resumer final : io::completion {
    loop_context* ctx = nullptr;
    void complete(int result, std::uint32_t flags) override;
};

// How a stream's control reaches its loop from any thread. A library caller may hold a control
// past shutdown, so its kick goes through this, which shutdown closes before the loop is freed.
struct loop_doorbell {
    std::mutex mutex;
    io::event_loop* loop = nullptr;  // guarded by mutex; null once shut down
    // Posts `task` to the loop unless it is shut down.
    void ring(std::function<void()> task) {
        const std::lock_guard lock(mutex);
        if (loop != nullptr) {
            loop->post(std::move(task));
        }
    }
    void attach(io::event_loop* l) {
        const std::lock_guard lock(mutex);
        loop = l;
    }
    void close() { attach(nullptr); }
};

// conf: the folder requests are served from. A reload may change it on a server that is not
// writable (uploads' temp files, publisher and leftovers belong to the root it started with).
// An open fs::file keeps its provider instance alive past this: a stream goes on from the old
// root to its end.
struct served_root {
    std::string path;
    fs::provider_instance* instance = nullptr;  // the server's own (as started), or `owned`
    int fd = -1;                                 // O_PATH, for listings
    fs::provider_instance owned;                 // made by a reload
    unique_fd owned_fd;
    // Files kept open between requests (null: config.open_file_cache is 0, or inotify refused).
    // Declared last: its files go before the instance they were opened with.
    std::unique_ptr<fs::open_cache> files;
};

// The parsed forms of the settings a file answer's headers follow (CORS, caching rules), made
// once per settings snapshot (make_answer_rules, router.cpp) instead of per request. A setting
// the library was given unchecked counts as off (datapumpd checks both at start and reload).
struct answer_rules {
    http::cors_policy cors;
    std::vector<http::cache_rule> cache;
};
[[nodiscard]] std::shared_ptr<const answer_rules> make_answer_rules(const server_config& c);

struct loop_context {
    server::state* owner = nullptr;
    unsigned index = 0;
    std::unique_ptr<io::event_loop> loop;
    std::shared_ptr<loop_doorbell> doorbell = std::make_shared<loop_doorbell>();
    std::vector<std::unique_ptr<acceptor>> acceptors;  // the public addresses, then the admin one

    // Loop thread only.
    std::unordered_map<std::uint64_t, connection*> conns;    // by connection id
    std::unordered_map<std::uint64_t, connection*> streams;  // by stream id (control id)
    std::uint64_t next_conn_id = 1;

    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> stream_count{0};
    std::thread thread;

    // conf: the settings a request starting on this loop takes (server::reconfigure replaces
    // them, on this loop). Loop thread only, but for the start, before the loop runs.
    std::shared_ptr<const server_config> settings;
    std::shared_ptr<const answer_rules> rules;  // the same, parsed: settings->cors_origins, cache_control
    std::shared_ptr<const served_root> root;    // the same, for settings->root

    // hostile network: after accept() failed (EMFILE...) the loop does not accept on any of its
    // listeners until the timer ends the pause; the guard keeps the spare descriptor and logs
    // once per interval.
    std::unique_ptr<accept_guard> guard;
    accept_resumer resuming;
    io::timer resume_timer{&resuming};
    bool accept_paused = false;

    // Arms every acceptor that is not armed and still has its listener.
    void arm_accept();
    // Loop thread: stop accepting for `pause` (armed multishot accepts are cancelled).
    void pause_accepting(std::chrono::milliseconds pause);
    // Loop thread: stop accepting; close idle connections; others close after their response.
    void drain();
    // Loop thread: shut every connection down now.
    void cut_all();

private:
    template <class F>
    void for_each_connection(F f);
};

struct server::state {
    // As started. A request reads its settings from its connection's snapshot (the loop's
    // `settings` when it began): only the fields fixed at start are to be read from here.
    server_config config;
    send_path path = send_path::sendfile;
    fs::registry registry;
    std::unique_ptr<cache::file_cache> cache;
    fs::provider_instance instance;
    unique_fd root_fd;  // O_PATH, for directory listings
    http::mime_types mime;  // the built-in table and config.mime_types_file's, read at start
    stream::stream_table table;
    stream::admission admission{0};
    // Paced streams run on rt: its VPs grant them credit (docs/daemon.md, "Pacing and admission").
    // Made at start, after the loops' contexts exist; pacing goes before rt (shutdown).
    std::unique_ptr<rt::system> rt_system;
    std::unique_ptr<stream::rt_pacing> pacing;

    std::array<std::atomic<std::uint64_t>, 600> by_status{};
    std::atomic<std::uint64_t> bytes_sent{0};
    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> active_streams{0};
    send_counters sends;
    // Uploads: those in progress (followed by GETs), the path's counters, the publisher thread.
    upload_table uploads;
    ingest::counters ingest;
    std::atomic<std::uint64_t> uploads_started{0};
    std::atomic<std::uint64_t> uploads_completed{0};
    std::atomic<std::uint64_t> uploads_failed{0};
    std::uint64_t leftovers_removed = 0;
    std::uint64_t arena_huge_bytes = 0;  // of the cache's arena in huge pages, at start
    std::unique_ptr<ingest::publisher> publishing;
    // hostile network: nothing held forever (the senders' limits: send timeout, pause, stall)
    stream::limit_counters limits;
    io::clock::time_point started{};
    std::uint16_t port = 0;
    // private control plane: the bound ports of the public addresses, the admin listener's port
    // (tcp) or socket path (unix: removed at shutdown if it is still the one bound, by inode).
    std::vector<std::uint16_t> ports;
    std::uint16_t admin_port = 0;
    std::string admin_socket;
    ino_t admin_socket_inode = 0;

    std::vector<std::unique_ptr<loop_context>> loops;
    std::string served_path;  // conf: the root requests are served from now (controlling thread)
    // conf: every root a loop may still hold, released here by a later reload (once no loop holds
    // it and no file of it is open) or with the state: a provider instance is never terminated on
    // a loop. Controlling thread only.
    std::vector<std::shared_ptr<const served_root>> roots;
    std::atomic<bool> draining{false};
    bool stopped = false;
    // hostile network: uploads. The global cap in force: config.max_uploads, or the auto one.
    unsigned max_uploads = 0;
    // hostile network: connections, streams and paced rate per client address (any loop).
    stream::client_limits clients{{.max_connections = config.max_connections_per_ip,
                                   .max_streams = config.max_streams_per_ip,
                                   .max_rate = config.max_rate_per_ip}};
    // logs: /metrics' histograms, observed by the loops at each response's end (connection.cpp).
    latency_histogram request_duration{request_duration_bounds_us};
    latency_histogram first_byte{first_byte_bounds_us};

    explicit state(const server_config& c) : config(c), admission(c.capacity) {}
    [[nodiscard]] std::uint64_t block_size() const { return cache->block_size(); }
    [[nodiscard]] bool loans_path() const { return stream::sends_loans(path); }
    // What a stream is admitted by and registered in (stream::open, stream::readmit).
    [[nodiscard]] stream::parts stream_parts() {
        return {.clients = clients, .capacity = admission, .pacing = pacing.get(), .table = table};
    }
    // The arena is in use (and registered with the loops): loans are sent from it, or uploads
    // are received into it.
    [[nodiscard]] bool arena_used() const { return loans_path() || config.writable; }
    // SEND_ZC that the kernel copies goes plainly (stream::sender_env): the arena is mostly in
    // huge pages.
    [[nodiscard]] bool plain_when_copied() const { return arena_huge_bytes * 2 >= cache->buffers().arena().bytes(); }
};

// Snapshots for the control API, the status page and /metrics (server.cpp).
[[nodiscard]] stream_view view_of(const stream::control& c);
// `root`: the served root whose open-file cache is counted (the caller's loop's).
[[nodiscard]] server_view make_view(const server::state& s, const served_root& root);
[[nodiscard]] std::vector<stream_view> stream_views(const server::state& s);

}  // namespace datapump::http
