// File: datapump/cache/loans.hpp
//
// Loans (seed 002's VOP_REQZCBUF / VOP_RETZCBUF): the cache lends its own buffers instead of
// copying out of them.
//
//   read_loan   a pinned cache buffer and the byte range of it the caller asked for. Read-only.
//               Dropping it returns the buffer (unpins); the bytes stay valid until then, even
//               if the file changes or shrinks on disk.
//   write_loan  empty space at the end of a load-and-play file's current block. The writer fills
//               data() and calls commit(n), which publishes n bytes to readers at once and
//               consumes the loan; a loan dropped uncommitted publishes nothing.
//
// Thread-safety: a loan is used by one thread at a time and may move between threads.
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/buffer/buffer_ref.hpp"
#include "datapump/cache/counters.hpp"

#include <cstdint>
#include <span>

DATAPUMP_API_BEGIN

namespace datapump::cache {

class writer;

class read_loan {
public:
    read_loan() = default;
    read_loan(buffer::buffer_ref ref, std::uint32_t begin, std::uint32_t length, std::uint64_t file_offset,
              counters* owner);
    read_loan(read_loan&&) noexcept = default;
    read_loan& operator=(read_loan&& other) noexcept;
    read_loan(const read_loan&) = delete;
    read_loan& operator=(const read_loan&) = delete;
    ~read_loan() { give_back(); }

    [[nodiscard]] bool empty() const { return ref_.empty(); }
    // The lent bytes: [file_offset(), file_offset() + size()) of the file.
    [[nodiscard]] std::span<const std::byte> bytes() const {
        return ref_.owner()->data(ref_.index()).subspan(begin_, length_);
    }
    [[nodiscard]] std::size_t size() const { return length_; }
    [[nodiscard]] std::uint64_t file_offset() const { return file_offset_; }
    // True when the loan holds the file byte at `pos`.
    [[nodiscard]] bool covers(std::uint64_t pos) const {
        return !empty() && pos >= file_offset_ && pos < file_offset_ + length_;
    }
    // Arena index of the buffer (an io_uring fixed-buffer index) and the bytes' offset in it.
    [[nodiscard]] std::uint32_t buffer_index() const { return ref_.index(); }
    [[nodiscard]] std::uint32_t offset_in_buffer() const { return begin_; }

    // Returns the buffer now (also done by the destructor). Idempotent.
    void give_back();

private:
    buffer::buffer_ref ref_;
    std::uint32_t begin_ = 0;
    std::uint32_t length_ = 0;
    std::uint64_t file_offset_ = 0;
    counters* counters_ = nullptr;
};

class write_loan {
public:
    write_loan() = default;
    write_loan(write_loan&& other) noexcept;
    write_loan& operator=(write_loan&& other) noexcept;
    write_loan(const write_loan&) = delete;
    write_loan& operator=(const write_loan&) = delete;
    ~write_loan();

    [[nodiscard]] bool empty() const { return writer_ == nullptr; }
    // Space to fill: it lies after every byte already committed, so no reader sees it yet.
    [[nodiscard]] std::span<std::byte> data() const { return space_; }
    [[nodiscard]] std::uint64_t file_offset() const { return file_offset_; }

    // Publishes the first `n` bytes of data() (n <= data().size()) to readers, wakes readers
    // waiting at the frontier, and writes the block to storage once it is full.
    // Errors: those of the block sink; the writer is then failed and readers are told.
    [[nodiscard]] result<void> commit(std::size_t n) &&;

private:
    friend class writer;
    write_loan(writer* w, std::span<std::byte> space, std::uint64_t file_offset);
    void release();  // gives the loan back uncommitted

    writer* writer_ = nullptr;
    std::span<std::byte> space_;
    std::uint64_t file_offset_ = 0;
};

}  // namespace datapump::cache
DATAPUMP_API_END
