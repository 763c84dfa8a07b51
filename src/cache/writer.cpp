#include "datapump/base/check.hpp"
#include "datapump/cache/file_cache.hpp"

#include <algorithm>
#include <utility>

namespace datapump::cache {

std::unique_ptr<writer> file_cache::create_writer(std::shared_ptr<block_source> source,
                                                  std::shared_ptr<block_sink> sink) {
    const std::uint64_t id = impl_next_id();
    auto file = std::make_shared<cached_file>(id, std::move(source), 0, file_status::writing);
    register_file(file);
    return std::unique_ptr<writer>(new writer(*this, std::move(file), std::move(sink)));
}

std::unique_ptr<writer> file_cache::create_ingest_writer(std::shared_ptr<block_source> source, std::uint64_t start,
                                                         bool readable) {
    DP_CHECK(!readable || start == 0);
    const std::uint64_t id = impl_next_id();
    auto file = std::make_shared<cached_file>(id, std::move(source), start, file_status::writing);
    if (readable) {
        register_file(file);
    }
    return std::unique_ptr<writer>(new writer(*this, std::move(file), nullptr));
}

writer::writer(file_cache& cache, std::shared_ptr<cached_file> file, std::shared_ptr<block_sink> sink)
    : cache_(&cache), file_(std::move(file)), sink_(std::move(sink)) {}

writer::~writer() {
    if (!done_) {
        fail(error{errc::writer_failed, 0, "load-and-play: writer dropped before finish"});
    }
}

result<write_loan> writer::loan_write(std::size_t max_bytes) {
    if (done_) {
        return datapump::fail(errc::closed, "write loan: the writer has finished or failed");
    }
    if (loan_out_) {
        return datapump::fail(errc::invalid_argument, "write loan: one loan at a time per writer");
    }
    if (sealed_) {
        return datapump::fail(errc::invalid_argument, "write loan: take the sealed block first");
    }
    const std::size_t bs = cache_->block_size();
    const std::uint64_t committed = file_->size();
    if (current_.empty()) {
        auto got = cache_->buffers().lock_or_claim(key{file_->id(), committed / bs});
        if (!got) {
            return std::unexpected(got.error());
        }
        // A new file id has no cached blocks: the first writer of a block always fills it.
        auto* ticket = std::get_if<fill_ticket>(&*got);
        DP_CHECK(ticket != nullptr);
        // Published with 0 valid bytes: readers may pin it now and see the frontier grow.
        current_ = std::move(*ticket).publish(0);
    }
    const auto in_block = static_cast<std::size_t>(committed % bs);
    auto space = current_.owner()->data(current_.index()).subspan(in_block);
    space = space.first(std::min(space.size(), max_bytes));
    loan_out_ = true;
    cache_->counters().write_loan_taken();
    return write_loan(this, space, committed);
}

result<void> writer::commit(std::size_t n) {
    DP_CHECK(loan_out_);
    loan_out_ = false;
    cache_->counters().write_loan_returned();
    if (n == 0) {
        return {};
    }
    auto& d = current_.owner()->desc(current_.index());
    const std::uint32_t valid = d.valid.load(std::memory_order_relaxed) + static_cast<std::uint32_t>(n);
    // SYNC POINT: the bytes written into the loan happen-before this release; readers acquire the
    // valid count (buffer_ref::bytes) or the size (cached_file::size) before touching them.
    d.valid.store(valid, std::memory_order_release);
    const std::uint64_t size = file_->size() + n;
    file_->size_.store(size, std::memory_order_release);
    file_->announce();
    // Full when the frontier reaches the block's end. Not `valid == block_size`: an ingest writer
    // may start in the middle of its first block, which then holds fewer committed bytes.
    if (size % cache_->block_size() == 0) {
        if (sink_ == nullptr) {
            const std::uint64_t offset = size - cache_->block_size();
            sealed_ = sealed_block{std::move(current_), offset};
            return {};
        }
        return flush_current();
    }
    return {};
}

std::optional<writer::sealed_block> writer::take_sealed() { return std::exchange(sealed_, std::nullopt); }

std::optional<writer::sealed_block> writer::take_tail() {
    DP_CHECK(!loan_out_);
    if (current_.empty()) {
        return std::nullopt;
    }
    // The current block holds the frontier (it starts there when nothing was committed in it).
    const std::size_t bs = cache_->block_size();
    return sealed_block{std::move(current_), file_->size() / bs * bs};
}

std::span<std::byte> writer::current_buffer() const {
    DP_CHECK(!current_.empty());
    return current_.owner()->data(current_.index());
}

void writer::complete() {
    DP_CHECK(sink_ == nullptr && !loan_out_);
    if (done_) {
        return;
    }
    done_ = true;
    current_.reset();
    sealed_.reset();
    file_->status_.store(file_status::complete, std::memory_order_release);
    file_->announce();
}

result<void> writer::flush_current() {
    if (current_.empty()) {
        return {};
    }
    const std::size_t bs = cache_->block_size();
    const auto bytes = current_.bytes();
    const std::uint64_t offset = ((file_->size() - 1) / bs) * bs;
    auto written = sink_->write_block(offset, bytes, current_.index());
    if (!written) {
        fail(written.error());
        return written;
    }
    cache_->counters().add_disk_write(bytes.size());
    // The block is on storage: unpin it; it stays cached until evicted, then reads come from disk.
    current_.reset();
    return {};
}

result<void> writer::finish() {
    if (done_) {
        return datapump::fail(errc::closed, "load-and-play: finish after finish or fail");
    }
    if (sink_ == nullptr) {
        return datapump::fail(errc::invalid_argument, "load-and-play: finish() of an ingest writer (use complete())");
    }
    if (loan_out_) {
        return datapump::fail(errc::invalid_argument, "load-and-play: finish with a write loan still out");
    }
    if (auto flushed = flush_current(); !flushed) {
        return flushed;
    }
    if (auto finished = sink_->finish(file_->size()); !finished) {
        fail(finished.error());
        return finished;
    }
    done_ = true;
    file_->status_.store(file_status::complete, std::memory_order_release);
    file_->announce();
    return {};
}

void writer::fail(error why) {
    if (done_) {
        return;
    }
    done_ = true;
    current_.reset();
    sealed_.reset();
    file_->failure_code_.store(why.code, std::memory_order_relaxed);
    file_->failure_sys_.store(why.sys, std::memory_order_relaxed);
    // Release pairs with the readers' acquire of status: the failure fields are visible.
    file_->status_.store(file_status::failed, std::memory_order_release);
    file_->announce();
}

}  // namespace datapump::cache
