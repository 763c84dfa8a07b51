#include "datapump/buffer/buffer_ref.hpp"

#include "datapump/base/check.hpp"

namespace datapump::buffer {

buffer_ref buffer_ref::share() const {
    DP_CHECK(arena_ != nullptr);
    DP_CHECK(arena_->try_pin(index_));
    return {arena_, index_};
}

buffer_ref fill_ref::publish(std::uint32_t valid_bytes) && {
    DP_CHECK(arena_ != nullptr);
    DP_CHECK(valid_bytes <= arena_->buffer_size());
    // Relaxed: publish()'s release store of the state word orders this before any pin.
    arena_->desc(index_).valid.store(valid_bytes, std::memory_order_relaxed);
    arena_->publish(index_, 1);
    return {std::exchange(arena_, nullptr), index_};
}

void fill_ref::reset() {
    if (arena_ != nullptr) {
        arena_->release_to_free(index_);
        arena_ = nullptr;
    }
}

}  // namespace datapump::buffer
