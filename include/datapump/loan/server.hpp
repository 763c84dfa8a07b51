// File: datapump/loan/server.hpp
//
// Serves a file cache to local processes as zero-copy loans (seed 002's VOP_REQZCBUF /
// VOP_RETZCBUF across a process boundary, seed 001's lease with reclaim). See docs/ipc.md,
// "Loans across the process boundary (loan/)", and loan/client.hpp for the other side.
//
//   loan::server ──owns──> ipc::server_runtime, ipc::server (the endpoint)
//                ──owns──> file_cache (arena memfd) <── fs provider instance (root, "posix")
//                ──owns──> per connection: files (handle -> fs::file), leases (id -> read_loans)
//                ──owns──> the lease timer thread
//                ──owns──> when `writable`: the put service (an io::event_loop thread, the arena
//                          registered with its ring) for local ingest
//
// A client learns the arena's geometry (MAP), receives the memfd of each buffer it is lent with
// the borrow that first lends it (one memfd per buffer, reopened read-only; a buffer refilled with
// other data gets a fresh memfd first, so a client never reads what it was not lent: docs/ipc.md,
// "What a loan client can read"), opens
// files by path beneath the root (OPEN), and borrows byte ranges (BORROW): the server pins the
// cache buffers holding them (read_loans kept in the connection's lease table) and answers with
// their arena offsets. GIVE_BACK unpins. Each lease has a deadline (`lease_time`); the timer
// reclaims overdue leases: it sends the client a RECLAIM note, the client library makes those
// pages private to itself and acknowledges (RECLAIMED), and only then the server unpins. A client
// that does not acknowledge within `reclaim_grace` is disconnected, and the pins of its
// unacknowledged leases are held until its process has exited (pidfd), so even a stuck client
// never sees the bytes it holds change.
//
// Local ingest (PUT; docs/ipc.md, "Local ingest (put)"), off unless `writable`: a client sends a
// path, a length and a descriptor (a pipe or a stream socket); the server reads exactly `length`
// bytes from it through the ingest path (arena windows, O_DIRECT writes) into a temp file beside
// the target (.NAME.dp-upload-PID-N), then truncates and fsyncs it, renames it over the target
// (RENAME_NOREPLACE first, so the reply says whether the name was new) and fsyncs the directory.
// Any failure removes the temp file; the old version is never touched, and readers (borrowers of
// the old file included) see the old version or the new one. A put runs on a worker of the ipc
// pool and holds it until the reply: at most `workers` puts run at once, the others queue there.
//
// Connection close (client deinit, death, disconnect): every lease of the connection is dropped,
// except leases whose RECLAIM note was sent and not acknowledged: those are held as above.
//
// Clients are untrusted: every request is copied out of the channel and checked; unknown handles
// or lease ids (another connection's included) fail with not_found, malformed requests with
// invalid_argument, an offset past the end of the file with out_of_range, a borrow over the
// client's allowance with full. A borrow never fails for being long: it is clamped at the end of
// the file, at the client's allowance, at what its reply can describe and at the number of
// buffers in the cache.
//
// Thread-safety: create, stats, endpoint and destruction from any thread; handlers run on the ipc
// server's threads; everything they share is guarded (see src/loan/server.cpp).
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/cache/file_cache.hpp"
#include "datapump/ipc/server.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::loan {

struct server_config {
    std::string endpoint;             // "/path/to/socket" or "@abstract-name"
    std::string root;                 // directory the clients' paths resolve beneath
    std::string provider = "posix";   // fs provider, from the built-in registry
    // The cache whose arena is lent out. Small by default (4 MiB); a multiple of 4096 per buffer.
    cache::file_cache_config cache = default_cache();
    std::chrono::milliseconds lease_time{2000};    // a lease is reclaimed once this old
    std::chrono::milliseconds reclaim_grace{1000}; // time a client has to acknowledge a reclaim
    // Cache a client may keep pinned, counted in whole buffers (a lease of one byte in a buffer
    // costs the buffer). At least one buffer.
    std::uint64_t max_loan_bytes = std::uint64_t{256} << 20;
    std::uint32_t max_files_per_client = 1024;
    std::uint32_t max_leases_per_client = 4096;
    std::uint32_t workers = 2;        // the ipc server runtime's pool (created internally)
    ipc::server_options ipc{};
    // Local ingest. Off by default: a put is then refused with unsupported.
    bool writable = false;
    std::uint64_t max_put_bytes = std::uint64_t{16} << 30;  // a longer put is refused with full
    // A put whose source delivers nothing (and whose writes make no progress) this long fails
    // with peer_gone, so a stalled writer cannot hold a worker for ever. Positive.
    std::chrono::milliseconds put_idle_timeout{30000};
    unsigned put_windows = 4;         // blocks of one put being written while the next is read (>= 1)

    [[nodiscard]] static cache::file_cache_config default_cache() {
        cache::file_cache_config c;
        c.buffers.buffer_size = std::size_t{256} * 1024;
        c.buffers.buffer_count = 16;
        return c;
    }
};

// Counters, for tests and /metrics. Monotonic except the gauges (`_now`, held_leases,
// pinned_buffers).
struct server_stats {
    std::uint64_t leases_now = 0;     // leases holding pins: live, pending reclaim, and held;
                                      // a lease leaves it once its pins are released
    std::uint64_t held_leases = 0;    // of those, held for disconnected clients whose process lives
    std::uint64_t borrows = 0;        // leases handed out (empty ones excluded)
    std::uint64_t give_backs = 0;     // leases given back by their client
    std::uint64_t reclaims = 0;       // leases reclaimed: RECLAIM sent and acknowledged
    std::uint64_t stuck_clients = 0;  // clients disconnected for not acknowledging in time
    std::uint64_t refused = 0;        // commands answered with an error status
    std::uint32_t clients_now = 0;
    std::uint32_t pinned_buffers = 0; // cache buffers pinned right now (by anyone)
    std::uint64_t evictions = 0;      // cache buffers reused for other blocks
    std::uint64_t puts = 0;           // files published by put
    std::uint64_t put_bytes = 0;      // bytes of those
    std::uint64_t puts_failed = 0;    // puts refused or failed (nothing published)
};

class server {
public:
    // Creates the cache, the provider instance over `root`, the put service (when writable), the
    // ipc runtime and server on `endpoint`, and the lease timer. Errors: invalid_argument (empty
    // endpoint or root, zero times, an allowance below one buffer, a bad cache geometry, zero
    // put_windows), not_found (unknown provider or root), busy (a live server answers on the
    // endpoint), no_buffers, unsupported (writable without io_uring), io_error.
    [[nodiscard]] static result<std::unique_ptr<server>> create(server_config config);

    server(const server&) = delete;
    server& operator=(const server&) = delete;
    // Stops the timer, fails the puts in progress (closed; their temp files are removed), closes
    // the endpoint (every client sees peer_gone), drops every lease and file, then the cache.
    // Clients keep their mappings: the bytes they still hold stay readable.
    ~server();

    [[nodiscard]] server_stats stats() const;
    [[nodiscard]] std::string_view endpoint() const;

    class DATAPUMP_INTERNAL impl;

private:
    explicit server(std::unique_ptr<impl> impl);
    std::unique_ptr<impl> impl_;
};

}  // namespace datapump::loan
DATAPUMP_API_END
