// File: datapump/io/ring_pool.hpp
//
// A fixed set of rings for the slow path, which has several threads (fallback workers, the
// prefetcher, callers that may block) while a ring is single-threaded. A thread borrows a ring
// for one batch and gives it back; all rings registered the same arena, so any of them can run
// fixed reads into any cache buffer.
//
//   ring_pool ──owns──> ring[0..n)      free list: indices of rings not lent out (mutex)
//   lease     ──borrows──> one ring     returned to the free list when dropped
//
// Registration is tried once at creation; if it fails, no ring uses fixed buffers (one log line
// says so and why) and callers read with plain IORING_OP_READ into the same arena buffers.
//
// Ownership: the pool owns its rings; the arena must outlive the pool; every lease must be
// dropped before the pool.
// Thread-safety: borrow() may be called from any thread; a lease is used by one thread.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/buffer/arena.hpp"
#include "datapump/io/ring.hpp"

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::io {

struct ring_pool_config {
    unsigned rings = 2;                       // fixed number of rings (slow-path threads that may run at once)
    unsigned entries = 32;                    // SQ entries of each ring (>= the read depth)
    const buffer::arena* arena = nullptr;     // registered with every ring when set
    bool register_buffers = true;             // false forces plain reads (tests, diagnosis)
};

class ring_pool;

class ring_lease {
public:
    ring_lease(ring_lease&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)), index_(other.index_) {}
    ring_lease& operator=(ring_lease&&) = delete;
    ring_lease(const ring_lease&) = delete;
    ring_lease& operator=(const ring_lease&) = delete;
    ~ring_lease();

    [[nodiscard]] ring& get() const;
    ring* operator->() const { return &get(); }

private:
    friend class ring_pool;
    ring_lease(ring_pool* pool, std::size_t index) : pool_(pool), index_(index) {}
    ring_pool* pool_;
    std::size_t index_;
};

class ring_pool {
public:
    // Creates config.rings rings and registers the arena with each. Errors: those of
    // ring::create (the caller falls back to preadv), invalid_argument (0 rings). A failed
    // registration is not an error: fixed_buffers() says false and the reason is logged.
    [[nodiscard]] static result<std::unique_ptr<ring_pool>> create(const ring_pool_config& config);

    ring_pool(const ring_pool&) = delete;
    ring_pool& operator=(const ring_pool&) = delete;
    ~ring_pool();

    // Blocks until a ring is free and lends it. Slow path only.
    [[nodiscard]] ring_lease borrow();

    [[nodiscard]] bool fixed_buffers() const { return fixed_; }
    // Why registration failed (when fixed_buffers() is false and an arena was given).
    [[nodiscard]] const std::optional<error>& registration_error() const { return registration_error_; }
    [[nodiscard]] std::size_t size() const { return rings_.size(); }

private:
    friend class ring_lease;
    explicit ring_pool(std::vector<std::unique_ptr<ring>> rings, bool fixed, std::optional<error> why);
    void give_back(std::size_t index);

    std::vector<std::unique_ptr<ring>> rings_;  // never resized after creation
    const bool fixed_;
    const std::optional<error> registration_error_;
    std::mutex mutex_;
    std::condition_variable freed_;             // signalled by give_back; waited on by borrow
    std::vector<std::size_t> free_;             // guarded by mutex_
};

}  // namespace datapump::io
DATAPUMP_API_END
