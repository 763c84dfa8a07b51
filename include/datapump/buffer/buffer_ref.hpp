// File: datapump/buffer/buffer_ref.hpp
//
// Handles to arena buffers. Both are move-only and give back what they hold when dropped.
//
//   buffer_ref  one pin on a valid buffer: its bytes below the valid count stay put and the buffer
//               is never evicted while the handle lives. Read-only view. `share()` takes another
//               pin explicitly; there is no copy constructor.
//   fill_ref    exclusive ownership of a buffer in state `filling`: the only handle through which
//               the bytes may be written. `publish(n)` consumes it and returns a buffer_ref with n
//               valid bytes; dropping it unpublished returns the buffer to the free state (and
//               whoever owns the hash entry must have unlinked it first: see cache::buffer_cache).
//
// Thread-safety: a handle is used by one thread at a time; different handles to the same buffer
// may live on different threads.
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/buffer/arena.hpp"

#include <cstdint>
#include <span>
#include <utility>

DATAPUMP_API_BEGIN

namespace datapump::buffer {

class buffer_ref {
public:
    buffer_ref() = default;
    // Adopts one pin the caller already took on `index` (arena::try_pin or publish).
    buffer_ref(arena* owner, std::uint32_t index) : arena_(owner), index_(index) {}
    buffer_ref(buffer_ref&& other) noexcept
        : arena_(std::exchange(other.arena_, nullptr)), index_(other.index_) {}
    buffer_ref& operator=(buffer_ref&& other) noexcept {
        if (this != &other) {
            reset();
            arena_ = std::exchange(other.arena_, nullptr);
            index_ = other.index_;
        }
        return *this;
    }
    buffer_ref(const buffer_ref&) = delete;
    buffer_ref& operator=(const buffer_ref&) = delete;
    ~buffer_ref() { reset(); }

    [[nodiscard]] bool empty() const { return arena_ == nullptr; }
    [[nodiscard]] std::uint32_t index() const { return index_; }
    [[nodiscard]] arena* owner() const { return arena_; }

    // Bytes that hold data now (acquire: pairs with the release store of the valid count).
    [[nodiscard]] std::span<const std::byte> bytes() const {
        const auto n = arena_->desc(index_).valid.load(std::memory_order_acquire);
        return arena_->data(index_).first(n);
    }
    [[nodiscard]] std::uint32_t valid() const {
        return arena_->desc(index_).valid.load(std::memory_order_acquire);
    }

    // Another pin on the same buffer. Cannot fail while this handle holds one (the buffer stays
    // valid), unless the pin count is saturated, which is an internal error.
    [[nodiscard]] buffer_ref share() const;

    // Drops the pin now.
    void reset() {
        if (arena_ != nullptr) {
            arena_->unpin(index_);
            arena_ = nullptr;
        }
    }

private:
    arena* arena_ = nullptr;
    std::uint32_t index_ = no_index;
};

class fill_ref {
public:
    fill_ref() = default;
    // Adopts a buffer the caller claimed (try_claim_free / reuse_reclaimed).
    fill_ref(arena* owner, std::uint32_t index) : arena_(owner), index_(index) {}
    fill_ref(fill_ref&& other) noexcept : arena_(std::exchange(other.arena_, nullptr)), index_(other.index_) {}
    fill_ref& operator=(fill_ref&& other) noexcept {
        if (this != &other) {
            reset();
            arena_ = std::exchange(other.arena_, nullptr);
            index_ = other.index_;
        }
        return *this;
    }
    fill_ref(const fill_ref&) = delete;
    fill_ref& operator=(const fill_ref&) = delete;
    ~fill_ref() { reset(); }

    [[nodiscard]] bool empty() const { return arena_ == nullptr; }
    [[nodiscard]] std::uint32_t index() const { return index_; }
    [[nodiscard]] arena* owner() const { return arena_; }
    [[nodiscard]] std::span<std::byte> data() const { return arena_->data(index_); }

    // Makes `valid_bytes` of the buffer visible and the buffer pinnable; returns the filler's pin
    // as a buffer_ref. Consumes the handle.
    [[nodiscard]] buffer_ref publish(std::uint32_t valid_bytes) &&;

    // Gives the buffer back to the free state without publishing it.
    void reset();

private:
    arena* arena_ = nullptr;
    std::uint32_t index_ = no_index;
};

}  // namespace datapump::buffer
DATAPUMP_API_END
