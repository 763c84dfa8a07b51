#include "datapump/io/ring_pool.hpp"

#include "datapump/base/check.hpp"
#include "datapump/base/internal/log.hpp"

namespace datapump::io {

ring_lease::~ring_lease() {
    if (pool_ != nullptr) {
        pool_->give_back(index_);
    }
}

ring& ring_lease::get() const { return *pool_->rings_[index_]; }

ring_pool::ring_pool(std::vector<std::unique_ptr<ring>> rings, bool fixed, std::optional<error> why)
    : rings_(std::move(rings)), fixed_(fixed), registration_error_(why) {
    free_.reserve(rings_.size());
    for (std::size_t i = rings_.size(); i > 0; --i) {
        free_.push_back(i - 1);
    }
}

ring_pool::~ring_pool() {
    // A lease outliving its pool would touch a freed ring: an internal bug, caught here.
    std::lock_guard lock(mutex_);
    DP_CHECK(free_.size() == rings_.size());
}

result<std::unique_ptr<ring_pool>> ring_pool::create(const ring_pool_config& config) {
    if (config.rings == 0) {
        return fail(errc::invalid_argument, "ring pool: needs at least one ring");
    }
    log_features_once(detect_features());
    std::vector<std::unique_ptr<ring>> rings;
    rings.reserve(config.rings);
    for (unsigned i = 0; i < config.rings; ++i) {
        auto r = ring::create(config.entries);
        if (!r) {
            return std::unexpected(r.error());
        }
        rings.push_back(std::move(*r));
    }
    bool fixed = false;
    std::optional<error> why;
    if (config.arena != nullptr && !config.register_buffers) {
        why = error{errc::unsupported, 0, "ring pool: fixed buffers disabled by configuration"};
    } else if (config.arena != nullptr) {
        fixed = true;
        for (auto& r : rings) {
            auto reg = r->register_buffers(*config.arena);
            if (!reg) {
                // All or none: a pool whose rings disagree would need callers to know which ring
                // they borrowed. Rings that did register keep their buffers unused.
                fixed = false;
                why = reg.error();
                break;
            }
        }
    }
    if (why) {
        spdlog::warn("io: {}; reads use plain IORING_OP_READ into the same buffers", describe(*why, "the cache arena"));
    }
    return std::unique_ptr<ring_pool>(new ring_pool(std::move(rings), fixed, why));
}

ring_lease ring_pool::borrow() {
    std::unique_lock lock(mutex_);
    freed_.wait(lock, [this] { return !free_.empty(); });
    const std::size_t index = free_.back();
    free_.pop_back();
    return ring_lease(this, index);
}

void ring_pool::give_back(std::size_t index) {
    {
        std::lock_guard lock(mutex_);
        free_.push_back(index);
    }
    freed_.notify_one();
}

}  // namespace datapump::io
