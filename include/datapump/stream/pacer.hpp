// File: datapump/stream/pacer.hpp
//
// The pacing of one stream: a token bucket of `burst` bytes filled at `rate` bytes per second.
// A stream asks how much it may send now; when the answer is less than it wants, it sleeps on the
// event loop's timer until ready_at(). Rate 0 means unpaced: every request is granted at once.
//
// The bucket starts full, so a stream begins with one burst (a player's start-up buffer) and then
// settles at the rate. Time is passed in, never read here, so the arithmetic is testable.
//
// Thread-safety: none; a pacer belongs to the stream's loop thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace datapump::stream {

class pacer {
public:
    using clock = std::chrono::steady_clock;

    pacer() = default;
    // `burst` is clamped to at least 1 byte when paced.
    pacer(std::uint64_t rate, std::uint64_t burst, clock::time_point now);

    [[nodiscard]] bool paced() const { return rate_ != 0; }
    [[nodiscard]] std::uint64_t rate() const { return rate_; }
    [[nodiscard]] std::uint64_t burst() const { return burst_; }

    // How many of `want` bytes may go now: min(want, burst) once that many tokens are there, 0
    // before (never a partial piece); `want` when unpaced.
    [[nodiscard]] std::uint64_t allowance(clock::time_point now, std::uint64_t want);
    // Takes `n` bytes' tokens (n <= the last allowance).
    void consume(std::uint64_t n);
    // When min(want, burst) bytes' tokens will be there (now when unpaced or already there).
    [[nodiscard]] clock::time_point ready_at(clock::time_point now, std::uint64_t want);

private:
    void refill(clock::time_point now);

    std::uint64_t rate_ = 0;
    std::uint64_t burst_ = 0;
    double tokens_ = 0;
    clock::time_point last_{};
};

}  // namespace datapump::stream
