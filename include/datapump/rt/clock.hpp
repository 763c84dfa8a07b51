// File: datapump/rt/clock.hpp
//
// The scheduler's time. Injected so tests can drive it: `steady` reads CLOCK_MONOTONIC;
// `manual_clock` only moves when the test (or a handler simulating its own execution time)
// advances it. A system built on a manual clock has no threads of its own: the test calls
// system::run_until() and every upcall happens inside that call, in a fixed order.
//
// Thread-safety: now() may be called from any thread. manual_clock::advance/set from the thread
// driving the system (which is also the thread running the upcalls).
#pragma once

#include "datapump/base/export.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

DATAPUMP_API_BEGIN

namespace datapump::rt {

using time_point = std::chrono::steady_clock::time_point;

class clock {
public:
    virtual ~clock() = default;
    [[nodiscard]] virtual time_point now() const = 0;
    // True when the clock is the machine's (the system may sleep on CLOCK_MONOTONIC until one of
    // its instants); false for a clock that only a test moves.
    [[nodiscard]] virtual bool is_steady() const = 0;

protected:
    clock() = default;
    clock(const clock&) = default;
    clock& operator=(const clock&) = default;
};

class steady_clock final : public clock {
public:
    [[nodiscard]] time_point now() const override { return std::chrono::steady_clock::now(); }
    [[nodiscard]] bool is_steady() const override { return true; }
};

// The process-wide steady clock (systems use it unless given another).
[[nodiscard]] const clock& machine_clock();

class manual_clock final : public clock {
public:
    // Starts at an arbitrary fixed instant (1 s after the steady clock's epoch) so that
    // runs are identical.
    manual_clock() = default;

    [[nodiscard]] time_point now() const override {
        // relaxed: the manual clock is only moved by the thread that runs the upcalls; other
        // threads (a test's checks after run_until returns) are ordered by that return.
        return time_point(std::chrono::nanoseconds(ns_.load(std::memory_order_relaxed)));
    }
    [[nodiscard]] bool is_steady() const override { return false; }

    void advance(std::chrono::nanoseconds by) { ns_.fetch_add(by.count(), std::memory_order_relaxed); }
    // Never moves backwards: a set to an earlier instant is ignored.
    void set(time_point t) {
        std::int64_t want = t.time_since_epoch().count();
        std::int64_t cur = ns_.load(std::memory_order_relaxed);
        while (want > cur && !ns_.compare_exchange_weak(cur, want, std::memory_order_relaxed)) {
        }
    }

private:
    std::atomic<std::int64_t> ns_{1'000'000'000};
};

}  // namespace datapump::rt
DATAPUMP_API_END
