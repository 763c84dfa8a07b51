// File: src/rt/vp.hpp
//
// A virtual processor (seed 001's VP): one thread running one scheduler. It asks the kernel for
// real-time priority (kernel_priority, stepping down when refused and saying so once), pins
// itself to its CPU, and waits for the next instant by sleeping on a futex (CLOCK_MONOTONIC,
// absolute) until spin_window before it, then spinning on the clock: the sleep costs nothing, the
// spin takes the kernel's wake-up error out of the upcall's start.
//
// Commands (add or remove a connection) come from other threads through a mutex-guarded inbox
// and a doorbell (the futex word): the VP takes them between steps, so the scheduler stays
// single-threaded.
//
// Thread-safety: add/remove/info from any thread; the rest is the VP thread's.
#pragma once

#include "scheduler.hpp"

#include "datapump/rt/system.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace datapump::rt::detail {

struct vp_options {
    unsigned index = 0;
    int cpu = -1;  // -1: not pinned
    kernel_priority priority = kernel_priority::none;
    int fifo_priority = 50;
    duration spin_window{0};
    duration max_spin_window{0};
    std::string name;
};

// What the kernel gave: the first of deadline/fifo/nice/none that was granted, and why the ones
// before it were refused.
struct priority_outcome {
    kernel_priority granted = kernel_priority::none;
    std::string note;
    int cpu = -1;
};

// Applies `options` to the calling thread (pin, then the priority ladder). Logs once.
priority_outcome apply_kernel_priority(const vp_options& options);

class vp {
public:
    // Threaded when `time.is_steady()`; otherwise the scheduler is driven by the caller
    // (run_until) and add/remove apply at once.
    vp(const clock& time, const vp_options& options);
    vp(const vp&) = delete;
    vp& operator=(const vp&) = delete;
    ~vp();

    void add(std::shared_ptr<connection_state> c);
    // Returns once the VP no longer runs c's upcalls.
    void remove(const connection_state* c);
    // Any thread: see scheduler::resume, arrive, end_of_stream. `refused` runs (on the VP) when
    // the arrival finds c gone, to give the buffer back.
    void resume(std::shared_ptr<connection_state> c, const chunk_done& done);
    void arrive(std::shared_ptr<connection_state> c, const job& j, std::function<void()> refused);
    void end_of_stream(std::shared_ptr<connection_state> c);
    [[nodiscard]] priority_outcome outcome() const;
    [[nodiscard]] unsigned index() const { return options_.index; }
    // The spin window in force and the wake-up lateness estimate behind it (monitoring: relaxed).
    [[nodiscard]] duration spin_window() const { return duration(spin_ns_.load(std::memory_order_relaxed)); }
    [[nodiscard]] duration wake_error() const { return duration(wake_error_ns_.load(std::memory_order_relaxed)); }

    // Manual clock only (the caller's thread is the VP).
    [[nodiscard]] scheduler& driven() { return scheduler_; }

private:
    struct command {
        enum class kind : std::uint8_t { add, remove, resume, arrive, end };
        kind what = kind::add;
        std::shared_ptr<connection_state> c;
        const connection_state* removed = nullptr;
        std::shared_ptr<std::atomic<bool>> done;  // remove: set when applied
        chunk_done chunk{};                       // resume; arrive: chunk.j
        std::function<void()> refused;            // arrive
    };
    void apply(command& cmd);
    void queue(command cmd);
    void main();
    void take_commands();
    void wait_until(time_point t, std::uint32_t seen);
    void ring();

    const clock& clock_;
    vp_options options_;
    scheduler scheduler_;
    bool threaded_ = false;

    mutable std::mutex mutex_;
    std::condition_variable done_cv_;
    std::vector<command> inbox_;   // guarded by mutex_
    priority_outcome outcome_;     // guarded by mutex_
    bool started_ = false;         // guarded by mutex_
    // The doorbell: bumped (release) after a command is queued or stop is set; the VP sleeps on it
    // with FUTEX_WAIT_BITSET and re-reads the inbox when it changed (acquire).
    std::atomic<std::uint32_t> bell_{0};
    std::atomic<bool> stop_{false};
    // Written by the VP thread only (relaxed: monitoring reads accept a stale value).
    std::atomic<std::int64_t> wake_error_ns_{0};  // decaying maximum of how late sleeps ended
    std::atomic<std::int64_t> spin_ns_{0};        // the window in force
    std::int64_t gap_ns_ = 0;                     // moving average of the gaps waited (VP thread)
    void adapt_spin(std::int64_t late_ns, std::int64_t gap_ns);
    std::thread thread_;
};

}  // namespace datapump::rt::detail
