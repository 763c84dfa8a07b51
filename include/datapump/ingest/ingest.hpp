// File: datapump/ingest/ingest.hpp
//
// The network-to-storage write path (seed 003; design: docs/ingest.md). One call couples a
// socket (or a pipe: a local client's source, docs/ipc.md "Local ingest (put)") with a file
// range: received bytes land in arena buffers (the cache's blocks) and go to storage from there
// with O_DIRECT fixed-buffer writes, one per block, several in flight; heads and tails that are
// not aligned to the file system's block get read-modify-write of just those blocks. The engine
// never copies a received byte, except the `prefix` the caller read before the call and data of
// a framed body that arrived in one receive with its framing (both counted).
//
//   socket ──recv──> window k (arena buffer = cache block k) ──WRITE_FIXED──> extent(file, kB..)
//                    window k+1 receiving while k, k-1 .. are written
//
// A job runs on one io::event_loop; every operation is an io_uring operation of that loop.
// Lifetime: the caller owns the job and keeps it (and the target file) alive until on_done has
// run; on_done is the job's last act, so it may destroy the job. Destroying a job before that
// aborts (a bug).
// Thread-safety: loop thread only, except the counters (relaxed atomics, any thread).
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/cache/file_cache.hpp"
#include "datapump/fs/file.hpp"
#include "datapump/ingest/body_decoder.hpp"
#include "datapump/io/event_loop.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

DATAPUMP_API_BEGIN

namespace datapump::ingest {

struct source {
    // A connected stream socket (received with RECV), or any other stream — a pipe, a FIFO
    // (read with READ at no offset; fstat tells them apart once, at start). Not owned.
    int socket = -1;
    std::span<const std::byte> prefix;   // body bytes already read from the socket: copied at start
    // Null: the body is exactly target.length bytes. Else the body is framed and its length is what
    // the decoder finds (HTTP's chunked coding: datapump/http/chunked_body.hpp); the decoder's
    // limits bound it. Not owned; it must outlive the job (until on_done has run).
    body_decoder* decoder = nullptr;
};

struct target {
    fs::file* file = nullptr;    // opened for writing (open_mode::create_new for uploads); not owned
    std::uint64_t offset = 0;    // where the first byte goes
    std::uint64_t length = 0;    // without a decoder: the byte count; with one: ignored
    std::uint64_t old_size = 0;  // the file's size before: blocks at or past it are zero-filled, not read
};

struct options {
    unsigned windows_in_flight = 4;  // blocks being written while the next one receives (>= 1)
    // A load-and-play file readers may follow (view()); needs offset 0 into a new file.
    bool load_and_play = false;
};

// Path counters; several jobs may share one set. Relaxed: monitoring only.
struct counters {
    std::atomic<std::uint64_t> received{0};   // body bytes received (or taken from the prefix)
    std::atomic<std::uint64_t> copied{0};     // of those, bytes the engine copied (prefix, framing spill)
    std::atomic<std::uint64_t> written{0};    // bytes written to storage (aligned, padding included)
    std::atomic<std::uint64_t> writes{0};     // storage write operations
    std::atomic<std::uint64_t> rmw_reads{0};  // file-system blocks read for read-modify-write
    std::atomic<std::uint64_t> zero_filled{0};// file-system blocks zero-filled instead (past the old end)
};

// What a job was stopped by, beyond the storage and socket errors (errc values in `error`):
// the body was shorter than declared (peer closed: errc::peer_gone), or the decoder refused it
// (body_decoder::refusal(): errc::protocol_error for malformed framing, errc::full when too large).
struct callbacks {
    // One per storage write as it completes: its file offset and bytes written, or its error.
    std::function<void(std::uint64_t offset, result<std::uint64_t> bytes)> on_write;
    // After each receive landed (the load-and-play frontier moved). Optional.
    std::function<void()> on_progress;
    // Once: the body's byte count, or the first error; every write has completed by then.
    std::function<void(result<std::uint64_t> total)> on_done;
};

class job {
public:
    // Starts receiving (and consumes the prefix). Errors (nothing started, no callback runs):
    // invalid_argument (no file, no socket or a closed descriptor, a framed body into the middle
    // of a file, load-and-play not at offset 0), unsupported (the provider has no extent op),
    // no_buffers.
    [[nodiscard]] static result<std::unique_ptr<job>> start(io::event_loop& loop, cache::file_cache& cache,
                                                            const source& from, const target& to,
                                                            const options& opts, callbacks done,
                                                            counters* stats);
    job(const job&) = delete;
    job& operator=(const job&) = delete;
    ~job();

    // Prefix bytes the body used (the rest belong to whatever follows the body on the socket).
    [[nodiscard]] std::size_t prefix_used() const;
    // Bytes received past the end of a framed body (the next request's first bytes); valid
    // after on_done.
    [[nodiscard]] std::span<const std::byte> leftover() const;
    // The size the file must be truncated to when the last block was written padded past it
    // (max(old_size, offset + body)); the caller does it (fs::file::truncate_and_sync).
    [[nodiscard]] std::uint64_t final_size() const;
    // Body bytes received so far (the prefix's included; chunk framing not): a caller's minimum
    // rate is measured on it.
    [[nodiscard]] std::uint64_t received() const;
    // The load-and-play file (null without options::load_and_play).
    [[nodiscard]] std::shared_ptr<cache::cached_file> view() const;
    // After a successful on_done: the caller made the file durable and published it, so the
    // load-and-play file is complete (its readers end cleanly); or it failed to, and they get
    // `why`. Without either, destroying the job fails the file (readers get writer_failed).
    // Unlike the rest, these two may be called from any thread (once the job is finished nothing
    // else touches its writer): the daemon calls them from its publisher thread.
    void publish_succeeded();
    void publish_failed(error why);
    // Stops the job: receiving is cancelled and on_done reports `why` once writes in flight are
    // done. Idempotent; nothing happens after on_done.
    void cancel(error why);

private:
    struct DATAPUMP_INTERNAL impl;
    explicit job(std::unique_ptr<impl> state);
    std::unique_ptr<impl> impl_;
};

}  // namespace datapump::ingest
DATAPUMP_API_END
