// File: datapump/buffer/arena.hpp
//
// The buffer arena: one memfd, cut into `count` buffers of `buffer_size` bytes, mapped read-write
// once and pre-faulted at creation, never grown. Each buffer has a descriptor, kept apart from the
// data so that scanning descriptors never touches buffer pages:
//
//   memfd   [ buf 0 | buf 1 | ... | buf n-1 ]   buffer_size each, page aligned (O_DIRECT-safe)
//   descs   [ d0 ][ d1 ] ... [ dn-1 ]          one cache line each
//
//   descriptor: state word (atomic u64) = generation:32 | state:8 | pins:24
//               key (file, block), valid bytes, chain link, referenced bit
//
// The state word is changed only by compare-and-swap (or by its exclusive owner, see below).
// States and who may move a buffer between them:
//
//   free --claim (CAS, the claimer)--> filling --publish (owner)--> valid
//   valid --pin/unpin (CAS, anyone)--> valid
//   valid, 0 pins --reclaim (CAS, the evictor)--> reclaiming --release (owner)--> free
//   filling --abandon (owner)--> free
//
// `filling` and `reclaiming` are exclusive: the one thread that won the CAS owns the buffer and is
// the only one that writes its key, data and valid count. A `valid` buffer's bytes below its
// valid count never change while it is pinned; a load-and-play writer appends above the count and
// publishes each step with a release store (see cache/loans.hpp).
//
// Thread-safety: every member function may be called from any thread unless it says otherwise.
#pragma once

#include "datapump/base/cacheline.hpp"
#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/base/unique_fd.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::buffer {

enum class state : std::uint8_t { free = 0, filling = 1, valid = 2, reclaiming = 3 };

// The packed state word. Plain value helpers; the atomic lives in the descriptor.
struct state_word {
    static constexpr std::uint64_t pin_bits = 24;
    static constexpr std::uint64_t pin_mask = (std::uint64_t{1} << pin_bits) - 1;
    static constexpr std::uint64_t max_pins = pin_mask;

    [[nodiscard]] static constexpr std::uint64_t make(std::uint32_t gen, state s, std::uint32_t pins) {
        return (std::uint64_t{gen} << 32) | (std::uint64_t{static_cast<std::uint8_t>(s)} << pin_bits) |
               (pins & pin_mask);
    }
    [[nodiscard]] static constexpr std::uint32_t pins(std::uint64_t w) {
        return static_cast<std::uint32_t>(w & pin_mask);
    }
    [[nodiscard]] static constexpr state get_state(std::uint64_t w) {
        return static_cast<state>((w >> pin_bits) & 0xff);
    }
    [[nodiscard]] static constexpr std::uint32_t generation(std::uint64_t w) {
        return static_cast<std::uint32_t>(w >> 32);
    }
};

inline constexpr std::uint32_t no_index = 0xffffffffU;

struct alignas(cacheline_size) descriptor {
    std::atomic<std::uint64_t> word{state_word::make(0, state::free, 0)};
    // Key. Written only by the exclusive owner (filling/reclaiming); read by lock-free lookups,
    // which re-check it after pinning (the pin's acquire pairs with the owner's release publish).
    std::atomic<std::uint64_t> file{0};
    std::atomic<std::uint64_t> block{0};
    // Bytes of the buffer that hold data. Release-stored by the owner or the load-and-play
    // writer; acquire-loaded by readers before they touch the bytes.
    std::atomic<std::uint32_t> valid{0};
    // Next descriptor in the hash chain (no_index ends it). See cache/buffer_cache.hpp.
    std::atomic<std::uint32_t> next{no_index};
    // CLOCK reference bit: set on every hit, cleared by the sweeping hand. Relaxed on both sides:
    // a lost update only changes which unpinned buffer is evicted first, never correctness.
    std::atomic<std::uint8_t> referenced{0};
};
static_assert(sizeof(descriptor) == cacheline_size);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

struct arena_config {
    std::size_t buffer_size = std::size_t{256} * 1024;  // bytes; a multiple of 4096
    std::size_t buffer_count = 1024;
    bool prefault = true;                  // touch every page now, not on the data path
    // One memfd per buffer instead of one for the arena (same contiguous mapping), so that a
    // buffer can be shared with another process without sharing the others (the loan server:
    // docs/ipc.md, "What a loan client can read"). A buffer whose memfd was handed out
    // (mark_exported) gets a fresh, zeroed memfd when it is next claimed for new data, and the
    // old one is emptied, so a process holding it never sees later contents. Costs one
    // descriptor per buffer and, per reuse of an exported buffer, a memfd_create + mmap + page
    // faults. Such an arena must not be registered with io_uring (fixed buffers pin the pages a
    // fresh memfd replaces).
    bool memfd_per_buffer = false;
    // Anonymous memory advised for transparent huge pages (MADV_HUGEPAGE) instead of a memfd:
    // fd() is -1, nothing can map the arena elsewhere. Where the kernel gives 2 MiB pages, an
    // O_DIRECT read pins a few large pages instead of 64 small ones per 256 KiB, and the sends
    // copying out of the arena miss the TLB less (docs/benchmarks.md, "Cold files from the
    // arena": 0.6x the CPU of a cold O_DIRECT read here). Where it does not (THP off, or memory
    // too fragmented), the same memory in small pages: huge_page_bytes() says which. Not with
    // memfd_per_buffer (ignored there).
    bool huge_pages = false;
};

class arena {
public:
    // Creates the memfd, sizes it, maps it and (by default) pre-faults it.
    // Errors: invalid_argument (size not a multiple of 4096, zero count, more than 2^32-1
    // buffers), no_buffers (memfd/mmap failed for lack of memory), io_error otherwise.
    [[nodiscard]] static result<std::unique_ptr<arena>> create(const arena_config& config);

    arena(const arena&) = delete;
    arena& operator=(const arena&) = delete;
    ~arena();

    [[nodiscard]] std::size_t buffer_size() const { return buffer_size_; }
    [[nodiscard]] std::uint32_t count() const { return count_; }
    [[nodiscard]] std::size_t bytes() const { return buffer_size_ * count_; }
    // The memfd, for mapping elsewhere (read-only by clients) or registering with io_uring; -1
    // with memfd_per_buffer or huge_pages.
    [[nodiscard]] int fd() const { return fd_.get(); }
    // Bytes of the arena the kernel backs with huge pages now (from /proc/self/smaps, whose
    // figures are per mapping: at most bytes(); 0 when it cannot be read). Reads a file of the
    // size of the process's mappings: not for a hot path.
    [[nodiscard]] std::size_t huge_page_bytes() const;

    // --- memfd_per_buffer (see arena_config) -------------------------------------------------

    [[nodiscard]] bool memfd_per_buffer() const { return backing_ != nullptr; }
    // The memfd holding buffer `index` now (-1 without memfd_per_buffer). Only while the caller
    // holds a pin on the buffer: a claim may replace it.
    [[nodiscard]] int buffer_fd(std::uint32_t index) const;
    // Which memfd that is: changes each time the buffer gets a fresh one. Same rule as buffer_fd.
    [[nodiscard]] std::uint32_t buffer_epoch(std::uint32_t index) const;
    // The buffer's memfd went to another process (the caller holds a pin): its next claim gives
    // the buffer a fresh memfd.
    void mark_exported(std::uint32_t index);
    // Called by the claimer of a buffer (filling, just claimed, before any data is written): a
    // buffer marked exported gets a fresh zeroed memfd at the same address and the old memfd is
    // emptied (its pages freed: a holder reads zeros). True when the buffer may be filled; false
    // when a fresh memfd could not be made (the caller releases the buffer and picks another).
    // A no-op (true) without memfd_per_buffer.
    [[nodiscard]] bool renew_if_exported(std::uint32_t index);
    [[nodiscard]] std::byte* base() const { return base_; }

    [[nodiscard]] descriptor& desc(std::uint32_t index) { return descs_[index]; }
    [[nodiscard]] const descriptor& desc(std::uint32_t index) const { return descs_[index]; }
    [[nodiscard]] std::span<std::byte> data(std::uint32_t index) const {
        return {base_ + static_cast<std::size_t>(index) * buffer_size_, buffer_size_};
    }
    // Index of the buffer holding `p`, or no_index when `p` is outside the arena.
    [[nodiscard]] std::uint32_t index_of(const void* p) const;

    // --- state transitions (see the diagram above) -------------------------------------------

    // Takes one pin on a valid buffer. Never blocks: fails when the buffer is not valid or the pin
    // count is saturated.
    [[nodiscard]] bool try_pin(std::uint32_t index);
    void unpin(std::uint32_t index);
    // free -> filling under a new generation, one pin held by the claimer. Fails when not free.
    [[nodiscard]] bool try_claim_free(std::uint32_t index);
    // valid with no pins -> reclaiming. Fails fast when pinned or not valid.
    [[nodiscard]] bool try_reclaim(std::uint32_t index);
    // reclaiming -> filling under a new generation, one pin held (the evictor reuses it at once).
    void reuse_reclaimed(std::uint32_t index);
    // filling -> valid with `pins` pins held by the caller; wakes threads waiting on the word.
    void publish(std::uint32_t index, std::uint32_t pins);
    // filling or reclaiming -> free; wakes waiters.
    void release_to_free(std::uint32_t index);
    // Blocks while the buffer's state word equals `seen` (futex-backed atomic wait).
    void wait_change(std::uint32_t index, std::uint64_t seen) const;

private:
    arena(unique_fd fd, std::byte* base, std::size_t buffer_size, std::uint32_t count);
    static result<std::unique_ptr<arena>> create_per_buffer(const arena_config& config);
    static result<std::unique_ptr<arena>> create_anonymous(const arena_config& config);

    // Per buffer with memfd_per_buffer. fd and epoch change only while the buffer is owned
    // (filling, before publish: the publish/pin pair orders them for pinners); exported is set by
    // pinners and read by the claimer (unpin/reclaim order it). Relaxed atomics for all three.
    struct backing {
        std::atomic<int> fd{-1};
        std::atomic<std::uint32_t> epoch{1};
        std::atomic<bool> exported{false};
    };

    unique_fd fd_;
    std::unique_ptr<backing[]> backing_;
    std::byte* base_;
    std::size_t mapped_ = 0;  // bytes mapped at base_ (bytes(), or more: huge_pages rounds up)
    std::size_t buffer_size_;
    std::uint32_t count_;
    std::unique_ptr<descriptor[]> descs_;
};

// The AnonHugePages and ShmemPmdMapped bytes of the mappings of `smaps` (the text of
// /proc/<pid>/smaps) that overlap [begin, end). Exposed for its test.
[[nodiscard]] std::size_t huge_bytes_in_smaps(std::string_view smaps, std::uintptr_t begin, std::uintptr_t end);

}  // namespace datapump::buffer
DATAPUMP_API_END
