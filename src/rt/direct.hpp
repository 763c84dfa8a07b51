// File: src/rt/direct.hpp
//
// The engine side of a direct connection (seed 001's device-to-network connection inside the
// kernel): bytes move from `from` to `to` through a pipe with io_uring SPLICE operations on the
// system's engine loop, so they never enter the application (nor this process's memory: splice
// moves page references). The VP releases one chunk (buffer_size bytes) per period and posts it
// here (the bulletin board); chunks move strictly in order, one at a time; each finished chunk is
// handed back to the VP, which upcalls the sync handler with a null buffer and the byte count.
//
//   file ──SPLICE(off)──> pipe ──SPLICE──> socket      (file → socket)
//   socket ──SPLICE──> pipe ──SPLICE(off)──> file      (socket → file)
//
// Thread-safety: enqueue/stop are posted to the engine loop and run there; everything else is the
// engine thread's. The mover keeps itself alive while an operation is in flight.
#pragma once

#include "state.hpp"

#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/io/event_loop.hpp"
#include "datapump/rt/system.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

namespace datapump::rt::detail {

// The ends: rt::direct_endpoints (system.hpp): an offset of -1 is a stream (socket, pipe);
// length 0 moves until the source's end.
using direct_ends = direct_endpoints;

// What the engine hands back to the VP for one chunk.
struct chunk_done {
    job j;
    std::uint64_t moved = 0;
    bool end = false;   // the source ended (EOF or `length` reached) with this chunk
    error failure{};    // failure.code meaningful when failed
    bool failed = false;
};

class direct_mover final : public io::completion, public std::enable_shared_from_this<direct_mover> {
public:
    using done_fn = std::function<void(const chunk_done&)>;

    // Checks the descriptors and makes the pipe (sized to the chunk where the kernel allows).
    // Errors: invalid_argument (a bad descriptor or an end that cannot take part), no_buffers.
    [[nodiscard]] static result<std::shared_ptr<direct_mover>> create(io::event_loop& engine,
                                                                      const direct_ends& ends,
                                                                      std::size_t chunk, done_fn done);

    direct_mover(const direct_mover&) = delete;
    direct_mover& operator=(const direct_mover&) = delete;
    virtual ~direct_mover();

    // Any thread: posts the move of the next chunk for `j` to the engine.
    void enqueue(const job& j);
    // Any thread: cancels what is in flight; `then` runs on the engine once nothing is.
    void stop(std::function<void()> then);

    void complete(int result, std::uint32_t flags) override;

private:
    direct_mover(io::event_loop& engine, const direct_ends& ends, std::size_t chunk, done_fn done)
        : engine_(engine), ends_(ends), chunk_(chunk), done_(std::move(done)) {}
    void start_next();
    void issue();
    void finish_chunk(bool end, int err);

    io::event_loop& engine_;
    direct_ends ends_;
    std::size_t chunk_;
    done_fn done_;
    unique_fd pipe_r_;
    unique_fd pipe_w_;
    std::size_t pipe_size_ = 0;

    // Engine thread only.
    std::deque<job> queue_;
    bool busy_ = false;           // a chunk is being moved
    bool in_flight_ = false;      // an SQE names this completion
    bool filling_ = true;         // the op in flight: source -> pipe (true) or pipe -> sink
    bool stopping_ = false;
    bool polling_ = false;        // the op in flight is a poll for readiness
    bool ended_ = false;
    job current_{};
    std::uint64_t chunk_moved_ = 0;   // bytes of the current chunk that reached the sink
    std::uint64_t in_pipe_ = 0;
    std::uint64_t total_in_ = 0;      // bytes taken from the source
    std::uint64_t total_out_ = 0;     // bytes given to the sink
    std::function<void()> stopped_;
    std::shared_ptr<direct_mover> self_;  // held while in_flight_
};

}  // namespace datapump::rt::detail
