// File: datapump/cache/counters.hpp
//
// One counter per path the cache takes, readable by later parts (metrics) at any time.
//
// The hit path must not pay for its own bookkeeping, so counters are sharded by thread:
//
//   shards_[0 .. thread_shards-1]  one per live thread (a slot taken on first use, given back
//                                  when the thread exits), each written by that thread only:
//                                  a relaxed load + store, no locked instruction
//   shards_[thread_shards]         shared overflow for threads beyond that: relaxed fetch_add
//
// snapshot() sums the shards with relaxed loads: a reader accepts that fields were read at
// slightly different instants. Gauges (loans out) are incremented on one thread and decremented
// on another; each shard may wrap below zero, and the sum modulo 2^64 is still right.
#pragma once

#include "datapump/base/cacheline.hpp"
#include "datapump/base/export.hpp"

#include <array>
#include <atomic>
#include <cstdint>

DATAPUMP_API_BEGIN

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
    enum class id : std::uint8_t {
        hits, misses, collisions, fallbacks, disk_reads, disk_read_bytes, disk_writes, disk_write_bytes,
        evictions, waits, no_buffers, prefetch_posted, prefetch_dropped, prefetch_reads, loans_out,
        write_loans_out, count_
    };

    void add(id which, std::uint64_t n = 1) noexcept;

    void add_hit() { add(id::hits); }
    void add_miss() { add(id::misses); }
    void add_collision() { add(id::collisions); }
    void add_fallback() { add(id::fallbacks); }
    void add_disk_read(std::uint64_t bytes) {
        add(id::disk_reads);
        add(id::disk_read_bytes, bytes);
    }
    void add_disk_write(std::uint64_t bytes) {
        add(id::disk_writes);
        add(id::disk_write_bytes, bytes);
    }
    void add_eviction() { add(id::evictions); }
    void add_wait() { add(id::waits); }
    void add_no_buffers() { add(id::no_buffers); }
    void add_prefetch_posted() { add(id::prefetch_posted); }
    void add_prefetch_dropped() { add(id::prefetch_dropped); }
    void add_prefetch_read() { add(id::prefetch_reads); }
    void loan_taken() { add(id::loans_out); }
    void loan_returned() { add(id::loans_out, ~std::uint64_t{0}); }  // -1 modulo 2^64
    void write_loan_taken() { add(id::write_loans_out); }
    void write_loan_returned() { add(id::write_loans_out, ~std::uint64_t{0}); }

    [[nodiscard]] counters_snapshot snapshot() const;

    static constexpr std::uint32_t thread_shards = 32;

private:
    static constexpr std::size_t fields = static_cast<std::size_t>(id::count_);
    struct alignas(cacheline_size) shard {
        std::array<std::atomic<std::uint64_t>, fields> v{};
    };
    std::array<shard, thread_shards + 1> shards_{};
};

}  // namespace datapump::cache
DATAPUMP_API_END
