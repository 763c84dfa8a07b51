// File: src/rt/pool.hpp
//
// One connection's buffers (seed 001's locked buffers): `count` slots of `slot_size` bytes (the
// buffer size rounded up to pages) in one memfd, mapped once, pre-faulted and mlock'ed where
// permitted. Every buffer is in exactly one state:
//
//   free ──acquire──> in the pipeline ──finish──> free
//                          │ keep (a stage holds it past its upcall)
//                          v
//                     held (a loan_record with a deadline); back to free when the pipeline has
//                     finished with it and the last held_buffer is dropped, or when reclaimed
//
// Reclaim (the seed's "convert locked memory into swappable memory"): an overdue held buffer's
// bytes are copied to a fresh anonymous mapping, made read-only and moved with mremap(FIXED) over
// the holder's address, so the holder's pointer and bytes do not change while the memfd pages
// behind the slot come back to the pool at a new address. The holder's mapping is freed with the
// last handle.
//
// Thread-safety: acquire/address/finish/keep/reclaim_overdue are called by the VP that runs the
// connection; loan records are dropped on any thread. One mutex guards the slot table (the hand-off
// between a stage and the next does not touch the pool).
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/rt/clock.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace datapump::rt::detail {

class pool;

struct loan_record {
    std::shared_ptr<pool> owner;
    unsigned slot = 0;
    std::byte* address = nullptr;
    std::size_t length = 0;
    std::uint64_t sequence = 0;
    time_point deadline{};
    // Set by reclaim (under the pool's mutex) before the record's address holds the copy;
    // acquire pairs with that release in reclaimed() readers.
    std::atomic<bool> reclaimed{false};

    loan_record() = default;
    loan_record(const loan_record&) = delete;
    loan_record& operator=(const loan_record&) = delete;
    ~loan_record();
};

struct pool_options {
    std::size_t buffer_size = 0;
    std::size_t count = 0;
    bool lock_memory = true;
};

class pool : public std::enable_shared_from_this<pool> {
public:
    struct slot_ref {
        unsigned index;
        std::byte* address;
    };

    // Errors: invalid_argument (0 size or count), no_buffers (memfd or mmap refused; sys set).
    [[nodiscard]] static result<std::shared_ptr<pool>> create(const pool_options& options);

    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;
    ~pool();

    [[nodiscard]] std::size_t buffer_size() const { return buffer_size_; }
    [[nodiscard]] std::size_t slot_size() const { return slot_size_; }
    [[nodiscard]] std::size_t count() const { return count_; }
    [[nodiscard]] std::size_t bytes() const { return slot_size_ * count_; }
    // False when mlock was refused (or not asked for).
    [[nodiscard]] bool locked() const { return locked_; }
    [[nodiscard]] int memfd() const { return memfd_; }

    // Another process's pool (its memfd, received over the ipc channel): the same slots, mapped
    // here read-write. Its buffers belong to the other side: they arrive with take() and, when
    // this side is done with one (the chain finished and no handle keeps it, or it was
    // reclaimed), `give_back(index)` is called instead of freeing it (under the pool's mutex: it
    // must not call back into the pool). Errors: invalid_argument (sizes that do not fit the
    // memfd, not whole pages), no_buffers (mmap refused).
    [[nodiscard]] static result<std::shared_ptr<pool>> adopt(int memfd, std::size_t buffer_size,
                                                             std::size_t slot_size, std::size_t count,
                                                             bool lock_memory,
                                                             std::function<void(unsigned)> give_back);
    // An adopted pool's buffer arrives: now in the pipeline. nullopt when the index is out of
    // range or the buffer is already here (a peer submitting it twice).
    [[nodiscard]] std::optional<slot_ref> take(unsigned index);

    // Called (under the pool's mutex: it must not call back into the pool) each time a buffer
    // becomes free, for a producer waiting for one (the receiving end of a TCP link).
    void set_on_free(std::function<void()> fn);

    // The first buffer, for measuring handlers at connect, before the pool is in use (no VP runs
    // the connection yet). Never afterwards.
    [[nodiscard]] std::span<std::byte> calibration_buffer() const { return {base_, buffer_size_}; }

    // A free buffer, now in the pipeline; nullopt when all are in use or held.
    [[nodiscard]] std::optional<slot_ref> acquire();
    // The pipeline is done with the buffer.
    void finish(unsigned slot);
    // A stage keeps the buffer past its upcall. A second keep of the same buffer shares the loan.
    [[nodiscard]] std::shared_ptr<loan_record> keep(unsigned slot, std::size_t length, std::uint64_t sequence,
                                                    time_point deadline);
    // The earliest deadline of a held buffer the pipeline has finished with (time_point::max()
    // when none).
    [[nodiscard]] time_point next_loan_deadline();
    // Reclaims every held buffer past its deadline that the pipeline has finished with. Returns
    // how many were reclaimed.
    unsigned reclaim_overdue(time_point now);

    [[nodiscard]] std::size_t free_count();

private:
    friend struct loan_record;
    struct slot {
        std::byte* address = nullptr;
        bool in_pipeline = false;
        std::weak_ptr<loan_record> loan;
        // Live loan records of this slot, counted here: the weak_ptr expires before the last
        // record's destructor has given the buffer back, so it cannot say whether that is done.
        unsigned loans = 0;
        time_point deadline{};
    };

    pool() = default;
    void loan_ended(unsigned slot);      // from ~loan_record, not reclaimed
    void freed(unsigned slot);           // mutex held: to the free list, or given back
    bool reclaim(unsigned index, loan_record& record);  // mutex held

    std::size_t buffer_size_ = 0;
    std::size_t slot_size_ = 0;
    std::size_t count_ = 0;
    bool locked_ = false;
    bool lock_memory_ = false;
    int memfd_ = -1;
    std::byte* base_ = nullptr;
    std::function<void(unsigned)> give_back_;  // adopted pools only
    std::function<void()> on_free_;            // guarded by mutex_

    std::mutex mutex_;
    std::vector<slot> slots_;          // guarded by mutex_
    std::vector<unsigned> free_;       // guarded by mutex_
};

}  // namespace datapump::rt::detail
