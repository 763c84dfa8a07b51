#include "datapump/cache/buffer_cache.hpp"

#include "datapump/base/check.hpp"

#include <bit>
#include <thread>

namespace datapump::cache {

using buffer::no_index;
using buffer::state;
using buffer::state_word;

namespace {

// A walk longer than this was led astray by concurrent recycling (or the table is pathological):
// report a miss and let the slow path, which walks under the lock, decide.
constexpr std::uint32_t max_walk = 64;

std::uint64_t mix(std::uint64_t x) {
    // splitmix64 finaliser: cheap and spreads sequential block numbers over the buckets.
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

}  // namespace

// ---- fill_ticket -------------------------------------------------------------------------

fill_ticket::fill_ticket(fill_ticket&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)), buf_(std::move(other.buf_)), key_(other.key_) {}

fill_ticket& fill_ticket::operator=(fill_ticket&& other) noexcept {
    if (this != &other) {
        abandon();
        cache_ = std::exchange(other.cache_, nullptr);
        buf_ = std::move(other.buf_);
        key_ = other.key_;
    }
    return *this;
}

buffer::buffer_ref fill_ticket::publish(std::uint32_t valid_bytes) && {
    DP_CHECK(!buf_.empty());
    cache_ = nullptr;
    return std::move(buf_).publish(valid_bytes);
}

void fill_ticket::abandon() {
    if (buf_.empty()) {
        return;
    }
    // Unlink before freeing: a free buffer must never sit in a chain, or a later claim would
    // link it into a second one.
    cache_->unlink(buf_.index());
    buf_.reset();
    cache_ = nullptr;
}

// ---- buffer_cache ------------------------------------------------------------------------

result<std::unique_ptr<buffer_cache>> buffer_cache::create(const cache_config& config) {
    auto a = buffer::arena::create({.buffer_size = config.buffer_size,
                                    .buffer_count = config.buffer_count,
                                    .prefault = config.prefault,
                                    .memfd_per_buffer = config.memfd_per_buffer,
                                    .huge_pages = config.huge_pages});
    if (!a) {
        return std::unexpected(a.error());
    }
    return std::unique_ptr<buffer_cache>(new buffer_cache(std::move(*a)));
}

buffer_cache::buffer_cache(std::unique_ptr<buffer::arena> a) : arena_(std::move(a)) {
    // Two buckets per buffer keeps chains short (load factor <= 0.5).
    const auto buckets = std::bit_ceil(std::uint64_t{arena_->count()} * 2);
    bucket_mask_ = static_cast<std::uint32_t>(buckets - 1);
    buckets_ = std::make_unique<std::atomic<std::uint32_t>[]>(buckets);
    for (std::uint64_t i = 0; i < buckets; ++i) {
        buckets_[i].store(no_index, std::memory_order_relaxed);
    }
    stripes_ = std::make_unique<padded_mutex[]>(stripe_count);
}

buffer_cache::~buffer_cache() = default;

std::uint32_t buffer_cache::bucket_of(key k) const {
    return static_cast<std::uint32_t>(mix(k.file * 0x9e3779b97f4a7c15ULL ^ k.block)) & bucket_mask_;
}

result<buffer::buffer_ref> buffer_cache::try_lock(key k) noexcept {
    const std::uint32_t b = bucket_of(k);
    // SYNC POINT: acquire pairs with link_locked()'s release store of the head: the linked
    // descriptor's key and next link are visible.
    std::uint32_t idx = buckets_[b].load(std::memory_order_acquire);
    for (std::uint32_t steps = 0; idx != no_index && steps < max_walk; ++steps) {
        auto& d = arena_->desc(idx);
        // Relaxed key reads are only a filter; the key is re-checked after the pin below.
        if (d.file.load(std::memory_order_relaxed) == k.file && d.block.load(std::memory_order_relaxed) == k.block) {
            if (!arena_->try_pin(idx)) {
                counters_.add_collision();  // filling or being reclaimed: the slow path waits
                return fail(errc::would_block, "cache lookup: block busy");
            }
            // The pin's acquire makes the owner's key writes visible: is it still our block?
            if (d.file.load(std::memory_order_relaxed) != k.file || d.block.load(std::memory_order_relaxed) != k.block) {
                arena_->unpin(idx);
                counters_.add_collision();
                return fail(errc::would_block, "cache lookup: buffer recycled");
            }
            d.referenced.store(1, std::memory_order_relaxed);
            counters_.add_hit();
            return buffer::buffer_ref(arena_.get(), idx);
        }
        // Acquire pairs with the release stores of links in link_locked/unlink_locked.
        idx = d.next.load(std::memory_order_acquire);
    }
    counters_.add_miss();
    return fail(errc::would_block, "cache lookup: not cached");
}

std::uint32_t buffer_cache::find_locked(std::uint32_t bucket, key k) const {
    std::uint32_t idx = buckets_[bucket].load(std::memory_order_relaxed);
    while (idx != no_index) {
        const auto& d = arena_->desc(idx);
        if (d.file.load(std::memory_order_relaxed) == k.file && d.block.load(std::memory_order_relaxed) == k.block) {
            return idx;
        }
        idx = d.next.load(std::memory_order_relaxed);
    }
    return no_index;
}

void buffer_cache::link_locked(std::uint32_t bucket, std::uint32_t index) {
    auto& d = arena_->desc(index);
    d.next.store(buckets_[bucket].load(std::memory_order_relaxed), std::memory_order_relaxed);
    // SYNC POINT: release pairs with try_lock()'s acquire of the head: key and next first.
    buckets_[bucket].store(index, std::memory_order_release);
}

void buffer_cache::unlink_locked(std::uint32_t bucket, std::uint32_t index) {
    std::atomic<std::uint32_t>* link = &buckets_[bucket];
    std::uint32_t idx = link->load(std::memory_order_relaxed);
    while (idx != no_index) {
        auto& d = arena_->desc(idx);
        if (idx == index) {
            // Release: a walker that reads the new link also sees what the successor holds.
            // `d.next` itself is left as is, so a walker standing on `d` continues into a chain.
            link->store(d.next.load(std::memory_order_relaxed), std::memory_order_release);
            return;
        }
        link = &d.next;
        idx = d.next.load(std::memory_order_relaxed);
    }
}

void buffer_cache::unlink(std::uint32_t index) {
    auto& d = arena_->desc(index);
    const key k{d.file.load(std::memory_order_relaxed), d.block.load(std::memory_order_relaxed)};
    const std::uint32_t b = bucket_of(k);
    const std::lock_guard lock(stripe(b));
    unlink_locked(b, index);
}

std::uint32_t buffer_cache::allocate() {
    const std::uint32_t n = arena_->count();
    // Three sweeps: the first may only clear reference bits, the second finds what they freed;
    // the third covers buffers unpinned while we swept.
    const std::uint64_t limit = std::uint64_t{n} * 3;
    for (std::uint64_t step = 0; step < limit; ++step) {
        // Relaxed: the hand only spreads sweepers over the descriptors; ownership is decided by
        // the CAS on each state word.
        const auto i = static_cast<std::uint32_t>(hand_.fetch_add(1, std::memory_order_relaxed) % n);
        auto& d = arena_->desc(i);
        const std::uint64_t w = d.word.load(std::memory_order_relaxed);
        const state s = state_word::get_state(w);
        if (s == state::free) {
            if (arena_->try_claim_free(i)) {
                if (!arena_->renew_if_exported(i)) {
                    arena_->release_to_free(i);  // no fresh memfd now: try another buffer
                    continue;
                }
                return i;
            }
            continue;
        }
        if (s != state::valid || state_word::pins(w) != 0) {
            continue;
        }
        if (d.referenced.exchange(0, std::memory_order_relaxed) != 0) {
            continue;  // second chance
        }
        if (!arena_->try_reclaim(i)) {
            continue;
        }
        unlink(i);
        counters_.add_eviction();
        arena_->reuse_reclaimed(i);
        // A buffer another process saw (memfd_per_buffer) gets a fresh memfd before new data.
        if (!arena_->renew_if_exported(i)) {
            arena_->release_to_free(i);
            continue;
        }
        return i;
    }
    counters_.add_no_buffers();
    return no_index;
}

result<buffer_cache::lock_or_fill> buffer_cache::lock_or_claim(key k) {
    for (;;) {
        if (auto hit = try_lock(k)) {
            return lock_or_fill{std::move(*hit)};
        }
        const std::uint32_t b = bucket_of(k);
        std::uint64_t seen = 0;
        std::uint32_t busy = no_index;
        {
            const std::lock_guard lock(stripe(b));
            const std::uint32_t idx = find_locked(b, k);
            if (idx != no_index) {
                if (arena_->try_pin(idx)) {
                    arena_->desc(idx).referenced.store(1, std::memory_order_relaxed);
                    return lock_or_fill{buffer::buffer_ref(arena_.get(), idx)};
                }
                busy = idx;
                seen = arena_->desc(idx).word.load(std::memory_order_acquire);
            }
        }
        if (busy != no_index) {
            if (state_word::get_state(seen) == state::filling) {
                // Another thread is reading this block: wait for its publish or abandon.
                counters_.add_wait();
                arena_->wait_change(busy, seen);
            } else {
                std::this_thread::yield();  // reclaiming: the evictor unlinks it in a moment
            }
            continue;
        }
        auto claimed = claim_new(k);
        if (!claimed) {
            return std::unexpected(claimed.error());
        }
        if (auto& ticket = *claimed; ticket.has_value()) {
            return lock_or_fill{std::move(*ticket)};
        }
        // Lost the race to another filler: go round again (and most likely wait for it).
    }
}

result<std::optional<fill_ticket>> buffer_cache::claim_new(key k) {
    const std::uint32_t idx = allocate();
    if (idx == no_index) {
        return fail(errc::no_buffers, "cache: no unpinned buffer to read into");
    }
    auto& d = arena_->desc(idx);
    // We own the buffer exclusively (filling, unlinked): relaxed key writes, published by the
    // release store of the link.
    d.file.store(k.file, std::memory_order_relaxed);
    d.block.store(k.block, std::memory_order_relaxed);
    d.valid.store(0, std::memory_order_relaxed);
    d.referenced.store(1, std::memory_order_relaxed);
    const std::uint32_t b = bucket_of(k);
    const std::lock_guard lock(stripe(b));
    if (find_locked(b, k) != no_index) {
        arena_->release_to_free(idx);
        return std::optional<fill_ticket>{};
    }
    link_locked(b, idx);
    return std::optional<fill_ticket>{fill_ticket(this, buffer::fill_ref(arena_.get(), idx), k)};
}

result<std::optional<fill_ticket>> buffer_cache::claim_if_absent(key k) {
    const std::uint32_t b = bucket_of(k);
    {
        const std::lock_guard lock(stripe(b));
        if (find_locked(b, k) != no_index) {
            return std::optional<fill_ticket>{};
        }
    }
    return claim_new(k);
}

void buffer_cache::release_hint(key k) noexcept {
    const std::uint32_t b = bucket_of(k);
    std::uint32_t idx = buckets_[b].load(std::memory_order_acquire);
    for (std::uint32_t steps = 0; idx != no_index && steps < max_walk; ++steps) {
        auto& d = arena_->desc(idx);
        if (d.file.load(std::memory_order_relaxed) == k.file && d.block.load(std::memory_order_relaxed) == k.block) {
            // Benign race: if the buffer was recycled meanwhile we clear another block's bit,
            // which only changes eviction order.
            d.referenced.store(0, std::memory_order_relaxed);
            return;
        }
        idx = d.next.load(std::memory_order_acquire);
    }
}

std::uint32_t buffer_cache::pinned_buffers() const {
    std::uint32_t pinned = 0;
    for (std::uint32_t i = 0; i < arena_->count(); ++i) {
        const std::uint64_t w = arena_->desc(i).word.load(std::memory_order_relaxed);
        if (state_word::pins(w) != 0) {
            ++pinned;
        }
    }
    return pinned;
}

}  // namespace datapump::cache
