// File: datapump/cache/buffer_cache.hpp
//
// The lookup table over the arena: which buffer holds block `b` of file `f`.
//
//   buckets  [ head ][ head ] ...      atomic u32 index of the first descriptor of each chain
//   chain    head -> d7 -> d2 -> end   singly linked through descriptor::next
//
// Readers walk chains without a lock (seed 000's "hash chain updated atomically"): every link is
// an atomic index into the descriptor array, which never moves or frees, so a walk always reads
// valid memory. A walk may run through a descriptor that is being recycled into another chain;
// it then finds nothing or a descriptor whose key it re-checks after pinning, and a step bound
// ends a walk that was led astray. Either way the lookup reports a miss and the caller takes the
// slow path. Writers (insert, unlink) hold a striped mutex, taken only on the slow path.
//
// A block being read from storage is in the table in state `filling`: a second reader of it
// waits for the first one's read instead of reading again (N readers, one disk read per block).
//
// Eviction is CLOCK over the descriptors: a hit sets the reference bit, the hand clears it and
// takes the first valid, unpinned, unreferenced buffer. Pinned buffers are never taken.
//
// Thread-safety: all member functions may be called from any thread. try_lock() is the fast
// path: it never blocks, never allocates and makes no system call. Everything else may block.
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/buffer/arena.hpp"
#include "datapump/buffer/buffer_ref.hpp"
#include "datapump/cache/counters.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <variant>

DATAPUMP_API_BEGIN

namespace datapump::cache {

struct key {
    std::uint64_t file = 0;   // cache file id: never reused, a changed file gets a new one
    std::uint64_t block = 0;
    friend bool operator==(const key&, const key&) = default;
};

class buffer_cache;

// Exclusive ownership of a buffer that is in the table in state `filling` under `key`. The owner
// fills data() and publishes; dropping the ticket unpublished unlinks the buffer and frees it, and
// wakes whoever waited for it (they retry, and one of them becomes the filler).
class fill_ticket {
public:
    fill_ticket() = default;
    fill_ticket(fill_ticket&& other) noexcept;
    fill_ticket& operator=(fill_ticket&& other) noexcept;
    fill_ticket(const fill_ticket&) = delete;
    fill_ticket& operator=(const fill_ticket&) = delete;
    ~fill_ticket() { abandon(); }

    [[nodiscard]] bool empty() const { return buf_.empty(); }
    [[nodiscard]] std::span<std::byte> data() const { return buf_.data(); }
    [[nodiscard]] std::uint32_t index() const { return buf_.index(); }
    [[nodiscard]] cache::key key() const { return key_; }

    // Publishes `valid_bytes` and returns the filler's pin. Consumes the ticket.
    [[nodiscard]] buffer::buffer_ref publish(std::uint32_t valid_bytes) &&;
    // Unlinks and frees the buffer now (also done by the destructor).
    void abandon();

private:
    friend class buffer_cache;
    fill_ticket(buffer_cache* owner, buffer::fill_ref buf, cache::key k)
        : cache_(owner), buf_(std::move(buf)), key_(k) {}

    buffer_cache* cache_ = nullptr;
    buffer::fill_ref buf_;
    cache::key key_{};
};

struct cache_config {
    std::size_t buffer_size = std::size_t{256} * 1024;  // = block size; multiple of 4096
    std::size_t buffer_count = 1024;
    bool prefault = true;
    bool memfd_per_buffer = false;  // buffer::arena_config::memfd_per_buffer (the loan server)
    bool huge_pages = false;        // buffer::arena_config::huge_pages
};

class buffer_cache {
public:
    // Errors: those of buffer::arena::create.
    [[nodiscard]] static result<std::unique_ptr<buffer_cache>> create(const cache_config& config);
    buffer_cache(const buffer_cache&) = delete;
    buffer_cache& operator=(const buffer_cache&) = delete;
    ~buffer_cache();

    [[nodiscard]] buffer::arena& arena() { return *arena_; }
    [[nodiscard]] std::size_t block_size() const { return arena_->buffer_size(); }
    [[nodiscard]] class counters& counters() { return counters_; }

    // Fast path: finds `k` and pins it. Never blocks, allocates or calls the kernel.
    // Errors: would_block when the block is not cached, is being filled or evicted, or the walk
    // gave up; the caller goes to the slow path (lock_or_claim), on a thread that may block.
    [[nodiscard]] result<buffer::buffer_ref> try_lock(key k) noexcept;

    // Slow path: a pinned buffer holding `k` (cached, or filled by another thread while this one
    // waited), or a fill ticket when the caller is the one to read it. May block.
    // Errors: no_buffers when every buffer is pinned.
    using lock_or_fill = std::variant<buffer::buffer_ref, fill_ticket>;
    [[nodiscard]] result<lock_or_fill> lock_or_claim(key k);

    // For read-ahead: a fill ticket when `k` is not in the table at all; nothing when it is
    // (cached, or being filled or evicted by someone else). Never waits for another thread's
    // fill; may block briefly on a stripe mutex. Errors: no_buffers.
    [[nodiscard]] result<std::optional<fill_ticket>> claim_if_absent(key k);

    // "Done with": the block becomes the first candidate for eviction once unpinned.
    void release_hint(key k) noexcept;

    // Number of buffers currently pinned (by loans, fills or writers). For tests and metrics.
    [[nodiscard]] std::uint32_t pinned_buffers() const;

private:
    friend class fill_ticket;
    explicit buffer_cache(std::unique_ptr<buffer::arena> a);

    [[nodiscard]] std::uint32_t bucket_of(key k) const;
    [[nodiscard]] std::mutex& stripe(std::uint32_t bucket) { return stripes_[bucket % stripe_count].m; }
    // Under the bucket's stripe: the index holding `k`, or no_index.
    [[nodiscard]] std::uint32_t find_locked(std::uint32_t bucket, key k) const;
    void link_locked(std::uint32_t bucket, std::uint32_t index);
    void unlink_locked(std::uint32_t bucket, std::uint32_t index);
    void unlink(std::uint32_t index);
    // Allocates a buffer for `k` and links it in state filling; nothing when another thread
    // linked `k` first. Errors: no_buffers.
    [[nodiscard]] result<std::optional<fill_ticket>> claim_new(key k);
    // A buffer in state filling, unlinked, exclusively the caller's; no_index when all pinned.
    [[nodiscard]] std::uint32_t allocate();

    static constexpr std::uint32_t stripe_count = 64;
    struct alignas(cacheline_size) padded_mutex {
        std::mutex m;
    };

    std::unique_ptr<buffer::arena> arena_;
    std::uint32_t bucket_mask_ = 0;
    std::unique_ptr<std::atomic<std::uint32_t>[]> buckets_;
    std::unique_ptr<padded_mutex[]> stripes_;
    alignas(cacheline_size) std::atomic<std::uint64_t> hand_{0};
    class counters counters_;
};

}  // namespace datapump::cache
DATAPUMP_API_END
