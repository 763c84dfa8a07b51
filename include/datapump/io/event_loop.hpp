// File: datapump/io/event_loop.hpp
//
// One event-loop thread with its own io_uring: the engine's "interrupt level". Connections are
// owned by one loop and every operation on them completes on that loop's thread.
//
//   event_loop ──owns──> io_uring (SQ/CQ), an eventfd doorbell, a timer heap, a task queue
//              ──refers to──> buffer::arena (registered as fixed buffers, index = arena index)
//
// Operations complete into a `completion`: the SQE's user_data is the completion's address, and
// the loop calls complete(result, cqe_flags) for each CQE. A completion must stay alive until
// every operation that names it has delivered its last CQE (a multishot op: until a CQE without
// IORING_CQE_F_MORE; a SEND_ZC: until its notification CQE, flagged IORING_CQE_F_NOTIF). The loop
// never allocates per operation.
//
// Timers are intrusive: a `timer` lives in its owner, is armed with a deadline and fires once by
// calling its completion with result 0. Disarming (or destroying) removes it from the heap.
//
// Thread-safety: everything but post(), stop() and stats() must be called on the loop's thread
// (from inside a completion, a timer or a posted task). post() and stop() may be called from any
// thread. The completion path never blocks: io_uring_enter is the only system call the loop makes
// on its own behalf (plus an eventfd write in post()).
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/buffer/arena.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <span>
#include <vector>

DATAPUMP_API_BEGIN

struct io_uring_sqe;

namespace datapump::io {

// Receives the CQEs of the operations that name it.
class completion {
public:
    // `result` is the CQE's res (negative errno on failure); `flags` its flags (IORING_CQE_F_*).
    virtual void complete(int result, std::uint32_t flags) = 0;

protected:
    completion() = default;
    completion(const completion&) = default;
    completion& operator=(const completion&) = default;
    ~completion() = default;
};

using clock = std::chrono::steady_clock;

class event_loop;

// A one-shot timer owned by its user. Arm it with event_loop::arm(); it fires by calling
// `target->complete(0, 0)` on the loop thread. Destroying an armed timer disarms it.
class timer {
public:
    explicit timer(completion* target) : target_(target) {}
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;
    ~timer();

    [[nodiscard]] bool armed() const { return heap_index_ != not_armed; }
    [[nodiscard]] clock::time_point deadline() const { return deadline_; }

private:
    friend class event_loop;
    static constexpr std::size_t not_armed = ~std::size_t{0};
    completion* target_;
    event_loop* loop_ = nullptr;
    clock::time_point deadline_{};
    std::size_t heap_index_ = not_armed;
};

struct loop_config {
    unsigned entries = 1024;                // SQ size; the CQ is twice that
    const buffer::arena* arena = nullptr;   // registered as fixed buffers when set
    unsigned index = 0;                     // the loop's number, for logs and metrics
};

// Counters a loop keeps about itself. Written by the loop thread only (relaxed stores: readers
// take a monitoring snapshot and accept a value one update old).
struct loop_stats {
    std::atomic<std::uint64_t> busy_ns{0};    // time spent handling completions, timers and tasks
    std::atomic<std::uint64_t> wakeups{0};    // returns from io_uring_enter with work
};

class event_loop {
public:
    // Sets up the ring and the doorbell, and registers `config.arena` as fixed buffers when
    // given (a refusal is not an error: has_fixed_buffers() says false and the caller logs it).
    // Errors: unsupported (no io_uring; sys = errno), no_buffers (ENOMEM), io_error.
    [[nodiscard]] static result<std::unique_ptr<event_loop>> create(const loop_config& config);

    event_loop(const event_loop&) = delete;
    event_loop& operator=(const event_loop&) = delete;
    ~event_loop();

    [[nodiscard]] unsigned index() const { return index_; }
    [[nodiscard]] bool has_fixed_buffers() const { return fixed_buffers_; }
    // Why registration failed, when it did (empty otherwise).
    [[nodiscard]] const std::string& fixed_buffers_error() const { return fixed_error_; }
    [[nodiscard]] const loop_stats& stats() const { return stats_; }

    // Runs until stop(): waits for CQEs, the next timer or a posted task, and dispatches them.
    void run();
    // Any thread. run() returns after the current iteration.
    void stop();
    [[nodiscard]] bool stopping() const { return stop_.load(std::memory_order_acquire); }

    // Any thread. Runs `task` on the loop thread, in posting order, soon. May allocate (the
    // control path, not the data path).
    void post(std::function<void()> task);
    // Loop thread. Runs `target->complete(0, 0)` at the end of this iteration, without a system
    // call: the way a long transfer yields to the other connections of its loop.
    void defer(completion* target);

    // Loop thread. Timers.
    void arm(timer& t, clock::time_point deadline);
    void disarm(timer& t);

    // Loop thread. Operation builders: each takes an SQE (submitting the queue first if it is
    // full), fills it and tags it with `target`. Submission happens when the loop next waits.
    void accept_multishot(int listen_fd, completion* target);
    // `msg_flags` MSG_WAITALL: io_uring retries until the buffer is full, the peer closes or an
    // error comes (then the CQE carries the bytes received so far): one completion per buffer.
    void recv(int fd, std::span<std::byte> buffer, completion* target, int msg_flags = 0);
    void send(int fd, std::span<const std::byte> bytes, int msg_flags, completion* target);
    // Zero-copy send; with `fixed_index` != ~0U the bytes must lie in that registered buffer.
    // Two CQEs: the result (flags has IORING_CQE_F_MORE when a notification follows), then the
    // notification (IORING_CQE_F_NOTIF; result has zc_copied_bit set when the kernel copied).
    void send_zc(int fd, std::span<const std::byte> bytes, int msg_flags, std::uint32_t fixed_index,
                 completion* target);
    // Storage reads and writes at `offset`; with `fixed_index` != ~0U (and the arena registered)
    // READ_FIXED / WRITE_FIXED from that registered buffer, else plain READ / WRITE. Lengths are
    // at most 2 GiB - 1. The result is the byte count (short counts are the caller's to finish).
    void read(int fd, std::uint64_t offset, std::span<std::byte> buffer, std::uint32_t fixed_index,
              completion* target);
    void write(int fd, std::uint64_t offset, std::span<const std::byte> bytes, std::uint32_t fixed_index,
               completion* target);
    // A read from a stream that is not a socket (a pipe, a FIFO, a character device): plain READ
    // with offset -1 (no position: whatever the stream has next). At most 2 GiB - 1 bytes; short
    // counts are normal (a pipe hands out what it holds); 0 is the end of the stream.
    void read_stream(int fd, std::span<std::byte> buffer, completion* target);
    void poll_once(int fd, unsigned events, completion* target);
    void splice(int fd_in, std::int64_t off_in, int fd_out, std::int64_t off_out, unsigned length,
                unsigned splice_flags, completion* target);
    void fadvise(int fd, std::uint64_t offset, std::uint32_t length, int advice);  // no completion
    // Cancels every operation tagged `target` (each still delivers its CQE, usually -ECANCELED).
    void cancel(completion* target);
    // Loop thread. Submits queued SQEs now (the loop does it before it waits).
    void submit();

    // Bit of a SEND_ZC notification's result: the kernel copied the data (IORING_NOTIF_USAGE_ZC_COPIED).
    static constexpr std::uint32_t zc_copied_bit = 1U << 31;

private:
    struct DATAPUMP_INTERNAL impl;
    explicit event_loop(std::unique_ptr<impl> state, unsigned index);
    io_uring_sqe* next_sqe();
    void fire_timers(clock::time_point now);
    void run_tasks();
    void heap_up(std::size_t i);
    void heap_down(std::size_t i);
    void heap_remove(std::size_t i);

    std::unique_ptr<impl> impl_;
    unsigned index_;
    bool fixed_buffers_ = false;
    std::string fixed_error_;
    std::atomic<bool> stop_{false};
    loop_stats stats_;

    std::vector<timer*> heap_;             // loop thread only; min-heap on deadline
    std::vector<completion*> deferred_;    // loop thread only
    std::vector<completion*> running_;     // the deferred batch being run (swap target)

    std::mutex tasks_mutex_;
    std::vector<std::function<void()>> tasks_;  // guarded by tasks_mutex_
    std::vector<std::function<void()>> running_tasks_;  // loop thread only
};

}  // namespace datapump::io
DATAPUMP_API_END
