#include "datapump/cache/counters.hpp"

#include <bit>

namespace datapump::cache {

namespace {

// Process-wide thread slots: bit i set = slot i taken by a live thread. A slot is the same index
// in every `counters` object, so each shard has at most one writing thread.
std::atomic<std::uint32_t> slots_taken{0};
static_assert(counters::thread_shards == 32, "slots_taken is a 32-bit mask");

struct thread_slot {
    std::uint32_t index = counters::thread_shards;  // = overflow until a slot is won
    thread_slot() {
        std::uint32_t taken = slots_taken.load(std::memory_order_relaxed);
        while (taken != ~std::uint32_t{0}) {
            const auto free_bit = static_cast<std::uint32_t>(std::countr_one(taken));
            // Acquire pairs with the release in ~thread_slot(): the slot's previous owner's
            // plain stores to its shards happen-before ours, so we continue from its values.
            if (slots_taken.compare_exchange_weak(taken, taken | (1U << free_bit), std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
                index = free_bit;
                return;
            }
        }
    }
    ~thread_slot() {
        if (index < counters::thread_shards) {
            slots_taken.fetch_and(~(1U << index), std::memory_order_release);
        }
    }
    thread_slot(const thread_slot&) = delete;
    thread_slot& operator=(const thread_slot&) = delete;
};

std::uint32_t my_slot() {
    thread_local const thread_slot slot;
    return slot.index;
}

}  // namespace

void counters::add(id which, std::uint64_t n) noexcept {
    const std::uint32_t s = my_slot();
    auto& cell = shards_[s].v[static_cast<std::size_t>(which)];
    if (s < thread_shards) {
        // Single writer (this thread owns slot s): no locked instruction needed. Relaxed: the
        // counter orders nothing; snapshot() readers accept a slightly stale value.
        cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    } else {
        cell.fetch_add(n, std::memory_order_relaxed);  // shared overflow shard
    }
}

counters_snapshot counters::snapshot() const {
    std::array<std::uint64_t, fields> sum{};
    for (const auto& sh : shards_) {
        for (std::size_t i = 0; i < fields; ++i) {
            sum[i] += sh.v[i].load(std::memory_order_relaxed);
        }
    }
    auto at = [&](id which) { return sum[static_cast<std::size_t>(which)]; };
    return counters_snapshot{
        .hits = at(id::hits),
        .misses = at(id::misses),
        .collisions = at(id::collisions),
        .fallbacks = at(id::fallbacks),
        .disk_reads = at(id::disk_reads),
        .disk_read_bytes = at(id::disk_read_bytes),
        .disk_writes = at(id::disk_writes),
        .disk_write_bytes = at(id::disk_write_bytes),
        .evictions = at(id::evictions),
        .waits = at(id::waits),
        .no_buffers = at(id::no_buffers),
        .prefetch_posted = at(id::prefetch_posted),
        .prefetch_dropped = at(id::prefetch_dropped),
        .prefetch_reads = at(id::prefetch_reads),
        .loans_out = at(id::loans_out),
        .write_loans_out = at(id::write_loans_out),
    };
}

}  // namespace datapump::cache
