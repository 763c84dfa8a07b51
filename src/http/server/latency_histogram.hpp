// File: src/http/server/latency_histogram.hpp
//
// logs: a fixed-bucket histogram of durations for /metrics (request duration, time to first
// byte). observe() is a few relaxed atomic increments: the loops call it at a response's end, and
// /metrics reads a snapshot from any thread (the counts of one snapshot may straddle an
// observation; Prometheus tolerates that, as every client library does).
#pragma once

#include "datapump/http/views.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>

namespace datapump::http {

// Upper bounds in microseconds. Requests: small files and error pages in milliseconds, streams
// in minutes to an hour. First bytes: sub-millisecond from the page cache to seconds.
inline constexpr std::array<std::uint64_t, 14> request_duration_bounds_us{
    1'000, 5'000, 10'000, 50'000, 100'000, 500'000, 1'000'000, 5'000'000, 10'000'000, 30'000'000,
    60'000'000, 300'000'000, 900'000'000, 3'600'000'000};
inline constexpr std::array<std::uint64_t, 14> first_byte_bounds_us{
    100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000};

class latency_histogram {
public:
    static constexpr std::size_t max_buckets = 24;

    explicit latency_histogram(std::span<const std::uint64_t> bounds_us) : bounds_(bounds_us) {}

    void observe(std::chrono::microseconds took) {
        const auto us = static_cast<std::uint64_t>(took.count() < 0 ? 0 : took.count());
        std::size_t i = 0;
        while (i < bounds_.size() && us > bounds_[i]) {
            ++i;
        }
        counts_[i].fetch_add(1, std::memory_order_relaxed);
        sum_us_.fetch_add(us, std::memory_order_relaxed);
        count_.fetch_add(1, std::memory_order_relaxed);
    }

    [[nodiscard]] histogram_view view() const {
        histogram_view v;
        v.bounds_us.assign(bounds_.begin(), bounds_.end());
        for (std::size_t i = 0; i <= bounds_.size(); ++i) {
            v.counts.push_back(counts_[i].load(std::memory_order_relaxed));
        }
        v.sum_us = sum_us_.load(std::memory_order_relaxed);
        v.count = count_.load(std::memory_order_relaxed);
        return v;
    }

private:
    std::span<const std::uint64_t> bounds_;  // at most max_buckets - 1 of them
    std::array<std::atomic<std::uint64_t>, max_buckets> counts_{};
    std::atomic<std::uint64_t> sum_us_{0};
    std::atomic<std::uint64_t> count_{0};
};

// The process's resources now (/proc/self, getrusage, getrlimit): a few small reads, done when
// /metrics is asked for. Fields it cannot read stay 0. Defined in process_stats.cpp.
[[nodiscard]] process_view read_process_view();

}  // namespace datapump::http
