#include "datapump/stream/admission.hpp"

#include <fmt/format.h>

#include <utility>

namespace datapump::stream {

reservation::reservation(reservation&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), rate_(std::exchange(other.rate_, 0)) {}

reservation& reservation::operator=(reservation&& other) noexcept {
    if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        rate_ = std::exchange(other.rate_, 0);
    }
    return *this;
}

void reservation::release() {
    if (owner_ != nullptr && rate_ != 0) {
        owner_->reserved_.fetch_sub(rate_, std::memory_order_relaxed);
    }
    owner_ = nullptr;
    rate_ = 0;
}

std::string refusal::text() const {
    return fmt::format("capacity {} B/s, reserved {} B/s, asked {} B/s: the stream would exceed the capacity",
                       capacity, reserved, asked);
}

std::expected<reservation, refusal> admission::reserve(std::uint64_t rate, bool count_refusal) {
    if (rate == 0) {
        return reservation{};
    }
    std::uint64_t now = reserved_.load(std::memory_order_relaxed);
    const std::uint64_t capacity = capacity_.load(std::memory_order_relaxed);
    while (true) {
        if (capacity != 0 && (rate > capacity || now > capacity - rate)) {
            if (count_refusal) {
                refusals_.fetch_add(1, std::memory_order_relaxed);
            }
            return std::unexpected(refusal{capacity, now, rate});
        }
        if (reserved_.compare_exchange_weak(now, now + rate, std::memory_order_relaxed)) {
            return reservation{this, rate};
        }
    }
}

}  // namespace datapump::stream
