// File: datapump/http/server.hpp
//
// The HTTP/1.1 streaming server that datapumpd runs (docs/daemon.md is its user contract).
//
//   server ──owns──> registry + provider instance (posix or direct) + file_cache (the arena)
//          ──owns──> N loop threads: io::event_loop, a SO_REUSEPORT listening socket, connections
//          ──owns──> stream_table (live streams, VCR), admission, counters
//          ──owns──> rt::system (its VPs tick the paced streams: stream::rt_pacing)
//
// A connection belongs to the loop that accepted it, for life. Its bytes move by the send path
// chosen at start: sendfile (page cache -> socket), send_zc (arena loans -> SEND_ZC from fixed
// buffers, pinned until the notification), send (arena loans, copied by the kernel).
//
// Signals: start() sets SIGPIPE to SIG_IGN when it is at its default (sendfile() cannot be told
// not to raise it); a handler the program installed is left alone.
//
// Thread-safety: start() and shutdown() from one controlling thread; the views, port() and the
// stream controls from any thread.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/http/views.hpp"
#include "datapump/ingest/publisher.hpp"
#include "datapump/stream/stream_table.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::http {

enum class send_path : std::uint8_t { automatic, sendfile, splice, send_zc, send };
[[nodiscard]] const char* to_string(send_path p);

// The burst of a paced stream when neither the request nor the configuration names one: a
// quarter second of its rate, at least 256 KiB. The burst is also the piece a paced stream sends
// at once (one rt tick each, stream::rt_piece), and each piece costs a wake-up and a send: with a
// fixed 256 KiB, 100 streams at 5 MB/s cost 1.8x nginx's CPU per byte; with a quarter second, less
// than nginx (docs/benchmarks.md).
[[nodiscard]] constexpr std::uint64_t auto_burst(std::uint64_t rate) {
    return rate / 4 > 262144 ? rate / 4 : 262144;
}

struct server_config {
    std::string root = ".";
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 8080;  // 0: the kernel picks (see server::port())
    unsigned loops = 1;
    std::string provider = "posix";
    send_path path = send_path::automatic;
    std::uint32_t cache_mib = 256;
    std::uint32_t buffer_kib = 256;
    std::uint64_t capacity = 0;
    std::uint64_t default_rate = 0;
    std::uint64_t max_rate = 0;
    // Token-bucket depth of a paced stream that asks for none; 0: auto_burst(rate).
    std::uint64_t default_burst = 0;
    // The rt system paced streams run on (docs/daemon.md, "Pacing and admission"): its virtual
    // processors (0: one per online CPU) and the density each may be loaded to (admission).
    unsigned rt_vps = 1;
    double rt_max_density = 0.9;
    std::uint64_t max_connections = 10000;
    std::uint64_t idle_timeout_ms = 60000;
    std::uint64_t header_timeout_ms = 10000;
    std::uint32_t max_header_bytes = 16384;
    std::uint32_t max_request_line = 8192;
    bool directory_listing = false;
    bool access_log = true;
    // Uploads (docs/daemon.md, "Uploads"): PUT and DELETE are refused (405) unless writable.
    bool writable = false;
    std::string upload_token;       // non-empty: PUT/DELETE need "Authorization: Bearer TOKEN"
    std::uint64_t max_upload = 0;   // bytes; larger bodies get 413; 0: no limit
    unsigned upload_windows = 4;    // arena buffers of one upload being written at once
    // How a finished upload becomes durable (ingest::publisher): fsync per upload, or batched
    // (one syncfs for the uploads finishing within durability_window).
    ingest::durability durability = ingest::durability::per_upload;
    std::chrono::microseconds durability_window{5000};
};

class server {
public:
    // Builds the cache and provider, binds the listening sockets and starts the loops.
    // Errors: invalid_argument (bad address, unknown provider or send path for it), not_found /
    // not_regular_file (root), unsupported (no io_uring), io_error (bind: sys = errno), and those
    // of the cache and the provider.
    [[nodiscard]] static result<std::unique_ptr<server>> start(const server_config& config);

    server(const server&) = delete;
    server& operator=(const server&) = delete;
    ~server();  // shutdown(0) if still running

    // The bound port (the kernel's choice when the config said 0).
    [[nodiscard]] std::uint16_t port() const;
    // The send path in use (never `automatic`).
    [[nodiscard]] send_path path() const;

    // Stops accepting, closes idle connections, lets responses in progress run for `grace`, then
    // cuts the rest and joins the loops. Returns the number of streams cut. Idempotent.
    std::size_t shutdown(std::chrono::milliseconds grace);

    [[nodiscard]] server_view view() const;
    [[nodiscard]] std::vector<stream_view> streams() const;
    // The live streams, for VCR control from the library (any thread, while the server lives).
    // A control taken from it may be kept past shutdown(): it then reads `ending` and its kick
    // does nothing.
    [[nodiscard]] stream::stream_table& streams_table();

    struct DATAPUMP_INTERNAL state;

private:
    explicit server(std::unique_ptr<state> s);
    std::unique_ptr<state> state_;
};

}  // namespace datapump::http
DATAPUMP_API_END
