// File: datapump/cache/counters.hpp
//
// One counter per path the cache takes, readable by later parts (metrics) at any time. Every
// increment is relaxed: counters order nothing, and a reader of a snapshot accepts that fields
// were read at slightly different instants.
#pragma once

#include <atomic>
#include <cstdint>

namespace datapump::cache {

struct counters_snapshot {
    std::uint64_t hits = 0;             // fast-path lookups that pinned a cached buffer
    std::uint64_t misses = 0;           // lookups that found nothing (went to the slow path)
    std::uint64_t collisions = 0;       // lookups that found the block busy (filling, reclaiming)
    std::uint64_t fallbacks = 0;        // requests completed on the slow path (worker or caller)
    std::uint64_t disk_reads = 0;       // blocks read from a provider into the cache
    std::uint64_t disk_read_bytes = 0;  // bytes read from a provider into the cache
    std::uint64_t disk_writes = 0;      // blocks written through loan_write to a provider
    std::uint64_t disk_write_bytes = 0;
    std::uint64_t evictions = 0;        // valid buffers taken back for other blocks
    std::uint64_t waits = 0;            // times a thread slept: on another's fill or a writer
    std::uint64_t no_buffers = 0;       // allocations that found every buffer pinned
    std::uint64_t prefetch_posted = 0;  // notes posted to the prefetch mailbox
    std::uint64_t prefetch_dropped = 0; // notes dropped because the mailbox was full
    std::uint64_t prefetch_reads = 0;   // blocks the prefetcher read ahead
    std::uint64_t loans_out = 0;        // read loans currently held (gauge)
    std::uint64_t write_loans_out = 0;  // write loans currently held (gauge)
};

class counters {
public:
    void add_hit() { hits_.fetch_add(1, std::memory_order_relaxed); }
    void add_miss() { misses_.fetch_add(1, std::memory_order_relaxed); }
    void add_collision() { collisions_.fetch_add(1, std::memory_order_relaxed); }
    void add_fallback() { fallbacks_.fetch_add(1, std::memory_order_relaxed); }
    void add_disk_read(std::uint64_t bytes) {
        disk_reads_.fetch_add(1, std::memory_order_relaxed);
        disk_read_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    }
    void add_disk_write(std::uint64_t bytes) {
        disk_writes_.fetch_add(1, std::memory_order_relaxed);
        disk_write_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    }
    void add_eviction() { evictions_.fetch_add(1, std::memory_order_relaxed); }
    void add_wait() { waits_.fetch_add(1, std::memory_order_relaxed); }
    void add_no_buffers() { no_buffers_.fetch_add(1, std::memory_order_relaxed); }
    void add_prefetch_posted() { prefetch_posted_.fetch_add(1, std::memory_order_relaxed); }
    void add_prefetch_dropped() { prefetch_dropped_.fetch_add(1, std::memory_order_relaxed); }
    void add_prefetch_read() { prefetch_reads_.fetch_add(1, std::memory_order_relaxed); }
    void loan_taken() { loans_out_.fetch_add(1, std::memory_order_relaxed); }
    void loan_returned() { loans_out_.fetch_sub(1, std::memory_order_relaxed); }
    void write_loan_taken() { write_loans_out_.fetch_add(1, std::memory_order_relaxed); }
    void write_loan_returned() { write_loans_out_.fetch_sub(1, std::memory_order_relaxed); }

    [[nodiscard]] counters_snapshot snapshot() const;

private:
    std::atomic<std::uint64_t> hits_{0};
    std::atomic<std::uint64_t> misses_{0};
    std::atomic<std::uint64_t> collisions_{0};
    std::atomic<std::uint64_t> fallbacks_{0};
    std::atomic<std::uint64_t> disk_reads_{0};
    std::atomic<std::uint64_t> disk_read_bytes_{0};
    std::atomic<std::uint64_t> disk_writes_{0};
    std::atomic<std::uint64_t> disk_write_bytes_{0};
    std::atomic<std::uint64_t> evictions_{0};
    std::atomic<std::uint64_t> waits_{0};
    std::atomic<std::uint64_t> no_buffers_{0};
    std::atomic<std::uint64_t> prefetch_posted_{0};
    std::atomic<std::uint64_t> prefetch_dropped_{0};
    std::atomic<std::uint64_t> prefetch_reads_{0};
    std::atomic<std::uint64_t> loans_out_{0};
    std::atomic<std::uint64_t> write_loans_out_{0};
};

}  // namespace datapump::cache
