// File: datapump/io/ring.hpp
//
// One io_uring, narrowed to what the slow path needs today: register the buffer arena as fixed
// buffers, and run a batch of file reads with several in flight. The event loop that comes later
// wraps the same ring behind a submit / reap / wait interface (Seastar's reactor_backend); nothing
// here assumes it.
//
//   ring  ──owns──> io_uring (SQ + CQ, liburing)
//         ──refers to──> buffer::arena (registered: fixed index i = arena buffer i)
//
// Ownership: a ring owns its io_uring; the arena it registered must outlive it.
// Thread-safety: a ring is single-threaded (io_uring's SQ and CQ have one producer and one
// consumer). Use it from one thread at a time; ring_pool lends rings to threads.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/buffer/arena.hpp"
#include "datapump/io/features.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::io {

inline constexpr std::uint32_t no_fixed_buffer = 0xffffffffU;
inline constexpr unsigned default_depth = 8;

// One read of a batch. A fixed read (fixed_index != no_fixed_buffer) needs `dst` to lie inside
// registered buffer `fixed_index`.
struct read_op {
    int fd = -1;
    std::uint64_t offset = 0;
    std::span<std::byte> dst;
    std::uint32_t fixed_index = no_fixed_buffer;
};

class ring {
public:
    // Sets up an io_uring with `entries` submission slots (rounded up to a power of two by the
    // kernel). Errors: unsupported (io_uring missing or disabled; sys = the errno), no_buffers
    // (ENOMEM), invalid_argument (entries 0).
    [[nodiscard]] static result<std::unique_ptr<ring>> create(unsigned entries);

    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;
    ~ring();

    [[nodiscard]] unsigned entries() const { return entries_; }
    [[nodiscard]] const kernel_features& features() const { return detect_features(); }

    // Registers every buffer of `a` as a fixed buffer, fixed index = arena index. Fails cleanly,
    // leaving the ring usable for plain reads:
    //   unsupported  more than 16384 buffers, READ_FIXED missing, or the kernel refused (sys)
    //   no_buffers   the kernel could not pin the memory (ENOMEM: RLIMIT_MEMLOCK for non-root)
    //   busy         buffers are already registered on this ring
    // The caller logs the fallback (ring_pool does, once).
    [[nodiscard]] result<void> register_buffers(const buffer::arena& a);
    [[nodiscard]] bool has_fixed_buffers() const { return registered_ != nullptr; }

    // Runs every read in `ops`, keeping at most `depth` in flight (clamped to entries()), and
    // waits for all of them. Returns one result per op, in order: the bytes the kernel read
    // (short at end of file, 0 past it) or the error (sys = the negative cqe result's errno).
    // A fixed read whose dst is not inside registered buffer fixed_index fails with
    // invalid_argument without being submitted. Blocks; slow path only.
    [[nodiscard]] std::vector<result<std::uint32_t>> read_batch(std::span<const read_op> ops,
                                                                unsigned depth = default_depth);

private:
    struct DATAPUMP_INTERNAL impl;
    ring(std::unique_ptr<impl> state, unsigned entries);
    [[nodiscard]] bool fits_fixed(const read_op& op) const;

    std::unique_ptr<impl> impl_;
    unsigned entries_;
    const buffer::arena* registered_ = nullptr;
};

}  // namespace datapump::io
DATAPUMP_API_END
