#include "datapump/cache/file_cache.hpp"

#include <algorithm>

namespace datapump::cache {

reader::reader(file_cache& cache, std::shared_ptr<cached_file> file) : cache_(&cache), file_(std::move(file)) {
    plan_readahead();
}

reader::~reader() {
    if (cache_ != nullptr && file_) {
        release_readahead();
    }
}

void reader::plan_readahead() {
    if (pattern_.mode == play_mode::pause) {
        return;
    }
    const std::size_t bs = cache_->block_size();
    const std::uint64_t current = position_ / bs;
    const std::uint64_t end_block = (file_->size() + bs - 1) / bs;
    const std::uint32_t window = cache_->config().readahead_blocks;
    const std::uint32_t speed = std::max<std::uint32_t>(1, pattern_.speed);
    std::uint64_t next = std::max(planned_until_, current);
    if (speed == 1) {
        // Top up only when half the window is used, with one note for the whole run: the
        // prefetcher reads a run of at least window/2 blocks with that many in flight.
        const std::uint64_t target = std::min(current + window, std::max(end_block, current));
        const bool low = next < target && (next - current) * 2 <= window;
        if (low) {
            (void)cache_->post_will_need(*file_, next, static_cast<std::uint32_t>(target - next));
            planned_until_ = target;
        }
        return;
    }
    // Fast-forward reads sparsely: only the blocks the reader will land on.
    const std::uint64_t target = current + std::uint64_t{window} * speed;
    // Align `next` to the reader's stride so the posted blocks are the ones it will read.
    if (next > current) {
        next = current + ((next - current + speed - 1) / speed) * speed;
    }
    for (; next < target; next += speed) {
        (void)cache_->post_will_need(*file_, next, 1);
    }
    planned_until_ = std::max(planned_until_, next);
}

void reader::release_readahead() {
    const std::size_t bs = cache_->block_size();
    const std::uint64_t current = position_ / bs;
    if (planned_until_ > current + 1) {
        (void)cache_->post_done_with(*file_, current + 1, static_cast<std::uint32_t>(planned_until_ - current - 1));
    }
    planned_until_ = current + 1;
}

result<std::vector<read_loan>> reader::next(std::size_t max_bytes) {
    if (pattern_.mode == play_mode::pause) {
        return fail(errc::would_block, "reader: paused");
    }
    const std::size_t bs = cache_->block_size();
    const std::uint32_t speed = std::max<std::uint32_t>(1, pattern_.speed);
    std::uint64_t want = max_bytes;
    if (speed > 1) {
        // Fast-forward delivers whole blocks, one per stride: never read across into the next.
        want = std::min<std::uint64_t>(want, bs - position_ % bs);
    }
    auto loans = cache_->loan_read(*file_, position_, want);
    if (!loans) {
        return loans;
    }
    std::uint64_t got = 0;
    for (const auto& l : *loans) {
        got += l.size();
    }
    const std::uint64_t before_block = position_ / bs;
    position_ += got;
    if (speed > 1 && got > 0 && position_ % bs == 0) {
        position_ = std::min(file_->size(), position_ + (speed - 1) * bs);
    }
    const std::uint64_t after_block = position_ / bs;
    if (after_block > before_block) {
        // Behind us: hint the prefetcher that these may go first (other readers re-reference).
        (void)cache_->post_done_with(*file_, before_block, static_cast<std::uint32_t>(std::min<std::uint64_t>(
                                                                 after_block - before_block, 1U << 20)));
    }
    plan_readahead();
    return loans;
}

result<void> reader::seek(std::uint64_t offset) {
    if (file_->status() != file_status::writing && offset > file_->size()) {
        return fail(errc::out_of_range, "reader: seek past the end of the file");
    }
    release_readahead();
    position_ = offset;
    planned_until_ = offset / cache_->block_size();
    plan_readahead();
    return {};
}

void reader::set_pattern(access_pattern pattern) {
    if (pattern.speed == 0) {
        pattern.speed = 1;
    }
    const bool pausing = pattern.mode == play_mode::pause && pattern_.mode != play_mode::pause;
    const bool restride = pattern.speed != pattern_.speed;
    if (pausing || restride) {
        release_readahead();
    }
    pattern_ = pattern;
    plan_readahead();
}

}  // namespace datapump::cache
