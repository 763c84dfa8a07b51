#include "datapump/buffer/arena.hpp"

#include "datapump/base/check.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstring>
#include <limits>

namespace datapump::buffer {

namespace {
constexpr std::size_t page = 4096;
}

result<std::unique_ptr<arena>> arena::create(const arena_config& config) {
    if (config.buffer_size == 0 || config.buffer_size % page != 0) {
        return fail(errc::invalid_argument, "arena: buffer size must be a non-zero multiple of 4096");
    }
    if (config.buffer_count == 0 || config.buffer_count >= no_index) {
        return fail(errc::invalid_argument, "arena: buffer count must be between 1 and 2^32-2");
    }
    if (config.buffer_size > std::numeric_limits<std::uint32_t>::max()) {
        return fail(errc::invalid_argument, "arena: buffer size must fit in 32 bits");
    }
    const std::size_t bytes = config.buffer_size * config.buffer_count;
    unique_fd fd(::memfd_create("datapump-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) {
        return fail_errno("arena: memfd_create");
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
        return fail_errno("arena: ftruncate");
    }
    // The size never changes: seal it so nobody holding the fd can shrink it under a mapping.
    (void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    const int flags = MAP_SHARED | (config.prefault ? MAP_POPULATE : 0);
    void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, fd.get(), 0);
    if (base == MAP_FAILED) {
        return fail_errno("arena: mmap");
    }
    if (config.prefault) {
        // MAP_POPULATE maps the pages; writing one byte per page also makes the host back them
        // (this VM returns untouched memory to its host, and first writes are slow and noisy).
        auto* bytes_ptr = static_cast<volatile std::byte*>(base);
        for (std::size_t off = 0; off < bytes; off += page) {
            bytes_ptr[off] = std::byte{0};
        }
    }
    return std::unique_ptr<arena>(new arena(std::move(fd), static_cast<std::byte*>(base),
                                            config.buffer_size,
                                            static_cast<std::uint32_t>(config.buffer_count)));
}

arena::arena(unique_fd fd, std::byte* base, std::size_t buffer_size, std::uint32_t count)
    : fd_(std::move(fd)),
      base_(base),
      buffer_size_(buffer_size),
      count_(count),
      descs_(std::make_unique<descriptor[]>(count)) {}

arena::~arena() { ::munmap(base_, bytes()); }

std::uint32_t arena::index_of(const void* p) const {
    const auto* b = static_cast<const std::byte*>(p);
    if (b < base_ || b >= base_ + bytes()) {
        return no_index;
    }
    return static_cast<std::uint32_t>(static_cast<std::size_t>(b - base_) / buffer_size_);
}

bool arena::try_pin(std::uint32_t index) {
    auto& w = descs_[index].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    for (;;) {
        if (state_word::get_state(cur) != state::valid || state_word::pins(cur) == state_word::max_pins) {
            return false;
        }
        // SYNC POINT: acquire pairs with the release in publish(): once pinned, the key, valid
        // count and bytes the owner wrote before publishing are visible. Failure order relaxed:
        // a failed CAS only reloads the word to decide again.
        if (w.compare_exchange_weak(cur, cur + 1, std::memory_order_acquire, std::memory_order_relaxed)) {
            return true;
        }
    }
}

void arena::unpin(std::uint32_t index) {
    // SYNC POINT: release pairs with the acquire CAS in try_reclaim(): the reader's last use of
    // the bytes happens-before the evictor reuses the buffer.
    const std::uint64_t before = descs_[index].word.fetch_sub(1, std::memory_order_release);
    DP_CHECK(state_word::pins(before) > 0);
}

bool arena::try_claim_free(std::uint32_t index) {
    auto& w = descs_[index].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    if (state_word::get_state(cur) != state::free) {
        return false;
    }
    const std::uint64_t next = state_word::make(state_word::generation(cur) + 1, state::filling, 1);
    // Acquire pairs with release_to_free(): the previous owner's writes are done.
    return w.compare_exchange_strong(cur, next, std::memory_order_acquire, std::memory_order_relaxed);
}

bool arena::try_reclaim(std::uint32_t index) {
    auto& w = descs_[index].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    if (state_word::get_state(cur) != state::valid || state_word::pins(cur) != 0) {
        return false;
    }
    const std::uint64_t next = state_word::make(state_word::generation(cur), state::reclaiming, 0);
    // Acquire pairs with unpin()'s release: every reader is done with the bytes.
    return w.compare_exchange_strong(cur, next, std::memory_order_acquire, std::memory_order_relaxed);
}

void arena::reuse_reclaimed(std::uint32_t index) {
    auto& w = descs_[index].word;
    const std::uint64_t cur = w.load(std::memory_order_relaxed);
    DP_CHECK(state_word::get_state(cur) == state::reclaiming);
    // Only the owner writes a reclaiming word: a plain store is enough, relaxed because nothing
    // is published by it (the buffer is still exclusively ours, now as a filler).
    w.store(state_word::make(state_word::generation(cur) + 1, state::filling, 1), std::memory_order_relaxed);
}

void arena::publish(std::uint32_t index, std::uint32_t pins) {
    auto& w = descs_[index].word;
    const std::uint64_t cur = w.load(std::memory_order_relaxed);
    DP_CHECK(state_word::get_state(cur) == state::filling);
    // SYNC POINT: release pairs with try_pin()'s acquire and with waiters' acquire loads: the key,
    // valid count and data written while filling are visible to whoever sees `valid`.
    w.store(state_word::make(state_word::generation(cur), state::valid, pins), std::memory_order_release);
    w.notify_all();
}

void arena::release_to_free(std::uint32_t index) {
    auto& w = descs_[index].word;
    const std::uint64_t cur = w.load(std::memory_order_relaxed);
    const state s = state_word::get_state(cur);
    DP_CHECK(s == state::filling || s == state::reclaiming);
    descs_[index].valid.store(0, std::memory_order_relaxed);
    // Release pairs with try_claim_free()'s acquire.
    w.store(state_word::make(state_word::generation(cur), state::free, 0), std::memory_order_release);
    w.notify_all();
}

void arena::wait_change(std::uint32_t index, std::uint64_t seen) const {
    descs_[index].word.wait(seen, std::memory_order_acquire);
}

}  // namespace datapump::buffer
