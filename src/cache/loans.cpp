#include "datapump/cache/loans.hpp"

#include "datapump/base/check.hpp"
#include "datapump/cache/file_cache.hpp"

namespace datapump::cache {

read_loan::read_loan(buffer::buffer_ref ref, std::uint32_t begin, std::uint32_t length, std::uint64_t file_offset,
                     counters* owner)
    : ref_(std::move(ref)), begin_(begin), length_(length), file_offset_(file_offset), counters_(owner) {
    if (counters_ != nullptr) {
        counters_->loan_taken();
    }
}

read_loan& read_loan::operator=(read_loan&& other) noexcept {
    if (this != &other) {
        give_back();
        ref_ = std::move(other.ref_);
        begin_ = other.begin_;
        length_ = other.length_;
        file_offset_ = other.file_offset_;
        counters_ = std::exchange(other.counters_, nullptr);
    }
    return *this;
}

void read_loan::give_back() {
    if (!ref_.empty()) {
        ref_.reset();
        if (counters_ != nullptr) {
            counters_->loan_returned();
        }
    }
    counters_ = nullptr;
}

write_loan::write_loan(writer* w, std::span<std::byte> space, std::uint64_t file_offset)
    : writer_(w), space_(space), file_offset_(file_offset) {}

write_loan::write_loan(write_loan&& other) noexcept
    : writer_(std::exchange(other.writer_, nullptr)), space_(other.space_), file_offset_(other.file_offset_) {}

write_loan& write_loan::operator=(write_loan&& other) noexcept {
    if (this != &other) {
        release();
        writer_ = std::exchange(other.writer_, nullptr);
        space_ = other.space_;
        file_offset_ = other.file_offset_;
    }
    return *this;
}

write_loan::~write_loan() { release(); }

void write_loan::release() {
    if (writer_ != nullptr) {
        // Dropped uncommitted: nothing was published, the space is lent again by the next loan.
        // Committing nothing cannot fail.
        (void)std::exchange(writer_, nullptr)->commit(0);
    }
}

result<void> write_loan::commit(std::size_t n) && {
    DP_CHECK(writer_ != nullptr);
    if (n > space_.size()) {
        return fail(errc::invalid_argument, "write loan: commit larger than the loaned space");
    }
    return std::exchange(writer_, nullptr)->commit(n);
}

}  // namespace datapump::cache
