// File: datapump/stream/admission.hpp
//
// Admission control: the daemon promises each paced stream its rate, so it admits a new one only
// if the rates already promised plus the new one fit in the configured capacity. Unpaced (best
// effort) streams reserve nothing. A reservation is a move-only handle that gives its rate back
// when the stream ends.
//
// Thread-safety: every member may be called from any thread (one atomic, CAS).
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <atomic>
#include <cstdint>
#include <string>

DATAPUMP_API_BEGIN

namespace datapump::stream {

class admission;

class reservation {
public:
    reservation() = default;
    reservation(reservation&& other) noexcept;
    reservation& operator=(reservation&& other) noexcept;
    reservation(const reservation&) = delete;
    reservation& operator=(const reservation&) = delete;
    ~reservation() { release(); }

    [[nodiscard]] std::uint64_t rate() const { return rate_; }
    void release();

private:
    friend class admission;
    reservation(admission* owner, std::uint64_t rate) : owner_(owner), rate_(rate) {}
    admission* owner_ = nullptr;
    std::uint64_t rate_ = 0;
};

// Why a stream was refused, for the 503 body and the log.
struct refusal {
    std::uint64_t capacity;
    std::uint64_t reserved;
    std::uint64_t asked;
    [[nodiscard]] std::string text() const;
};

class admission {
public:
    // capacity 0: no limit (every stream is admitted, paced ones are still counted).
    explicit admission(std::uint64_t capacity) : capacity_(capacity) {}
    admission(const admission&) = delete;
    admission& operator=(const admission&) = delete;

    // Reserves `rate` bytes/s. Rate 0 (unpaced) always succeeds with an empty reservation.
    // Returns the refusal when capacity - reserved < rate; the refusal is counted unless
    // `count_refusal` is false (a stalled stream asking again for the rate it gave back).
    [[nodiscard]] std::expected<reservation, refusal> reserve(std::uint64_t rate, bool count_refusal = true);

    [[nodiscard]] std::uint64_t capacity() const { return capacity_.load(std::memory_order_relaxed); }
    // conf: a reload's new capacity, for the reservations made from now on. Those held stay (a
    // lower capacity refuses new streams until enough of them end). Any thread.
    void set_capacity(std::uint64_t capacity) { capacity_.store(capacity, std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t reserved() const { return reserved_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }

private:
    friend class reservation;
    std::atomic<std::uint64_t> capacity_;
    // The CAS in reserve() is the only read-modify-write that can refuse; relaxed suffices
    // because the counter guards no other memory.
    std::atomic<std::uint64_t> reserved_{0};
    std::atomic<std::uint64_t> refusals_{0};
};

}  // namespace datapump::stream
DATAPUMP_API_END
