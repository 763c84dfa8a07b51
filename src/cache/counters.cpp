#include "datapump/cache/counters.hpp"

namespace datapump::cache {

counters_snapshot counters::snapshot() const {
    constexpr auto r = std::memory_order_relaxed;
    return counters_snapshot{
        .hits = hits_.load(r),
        .misses = misses_.load(r),
        .collisions = collisions_.load(r),
        .fallbacks = fallbacks_.load(r),
        .disk_reads = disk_reads_.load(r),
        .disk_read_bytes = disk_read_bytes_.load(r),
        .disk_writes = disk_writes_.load(r),
        .disk_write_bytes = disk_write_bytes_.load(r),
        .evictions = evictions_.load(r),
        .waits = waits_.load(r),
        .no_buffers = no_buffers_.load(r),
        .prefetch_posted = prefetch_posted_.load(r),
        .prefetch_dropped = prefetch_dropped_.load(r),
        .prefetch_reads = prefetch_reads_.load(r),
        .loans_out = loans_out_.load(r),
        .write_loans_out = write_loans_out_.load(r),
    };
}

}  // namespace datapump::cache
