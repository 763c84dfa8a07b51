#include "datapump/buffer/arena.hpp"

#include "datapump/base/check.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>

namespace datapump::buffer {

namespace {
constexpr std::size_t page = 4096;
// The size of a transparent huge page on x86-64 and arm64 with 4 KiB pages (hpage_pmd_size).
constexpr std::size_t huge_page = std::size_t{2} << 20;

// A sealed (no shrink, no grow) memfd of `bytes`.
result<unique_fd> make_memfd(const char* name, std::size_t bytes) {
    unique_fd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) {
        return fail_errno("arena: memfd_create");
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
        return fail_errno("arena: ftruncate");
    }
    // The size never changes: seal it so nobody holding the fd can shrink it under a mapping.
    (void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    return fd;
}

// MAP_POPULATE maps the pages; writing one byte per page also makes the host back them (this VM
// returns untouched memory to its host, and first writes are slow and noisy).
void touch(std::byte* base, std::size_t bytes) {
    auto* p = reinterpret_cast<volatile std::byte*>(base);
    for (std::size_t off = 0; off < bytes; off += page) {
        p[off] = std::byte{0};
    }
}

constexpr const char* buffer_memfd_name = "datapump-arena-buffer";
}  // namespace

result<std::unique_ptr<arena>> arena::create(const arena_config& config) {
    if (config.buffer_size == 0 || config.buffer_size % page != 0) {
        return fail(errc::invalid_argument, "arena: buffer size must be a non-zero multiple of 4096");
    }
    if (config.buffer_count == 0 || config.buffer_count >= no_index) {
        return fail(errc::invalid_argument, "arena: buffer count must be between 1 and 2^32-2");
    }
    if (config.buffer_size > std::numeric_limits<std::uint32_t>::max()) {
        return fail(errc::invalid_argument, "arena: buffer size must fit in 32 bits");
    }
    const std::size_t bytes = config.buffer_size * config.buffer_count;
    if (config.memfd_per_buffer) {
        return create_per_buffer(config);
    }
    if (config.huge_pages) {
        return create_anonymous(config);
    }
    unique_fd fd(::memfd_create("datapump-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) {
        return fail_errno("arena: memfd_create");
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
        return fail_errno("arena: ftruncate");
    }
    // The size never changes: seal it so nobody holding the fd can shrink it under a mapping.
    (void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    const int flags = MAP_SHARED | (config.prefault ? MAP_POPULATE : 0);
    void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, fd.get(), 0);
    if (base == MAP_FAILED) {
        return fail_errno("arena: mmap");
    }
    if (config.prefault) {
        touch(static_cast<std::byte*>(base), bytes);
    }
    return std::unique_ptr<arena>(new arena(std::move(fd), static_cast<std::byte*>(base),
                                            config.buffer_size,
                                            static_cast<std::uint32_t>(config.buffer_count)));
}

arena::arena(unique_fd fd, std::byte* base, std::size_t buffer_size, std::uint32_t count)
    : fd_(std::move(fd)),
      base_(base),
      mapped_(buffer_size * count),
      buffer_size_(buffer_size),
      count_(count),
      descs_(std::make_unique<descriptor[]>(count)) {}

result<std::unique_ptr<arena>> arena::create_per_buffer(const arena_config& config) {
    const std::size_t bytes = config.buffer_size * config.buffer_count;
    // One reservation keeps the buffers contiguous (data(), index_of() and the cache rely on it);
    // each buffer's memfd is then mapped over its slot.
    void* reserved = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserved == MAP_FAILED) {
        return fail_errno("arena: reserving the address range");
    }
    auto* base = static_cast<std::byte*>(reserved);
    std::unique_ptr<arena> a(new arena(unique_fd(), base, config.buffer_size,
                                       static_cast<std::uint32_t>(config.buffer_count)));
    a->backing_ = std::make_unique<backing[]>(config.buffer_count);
    const int flags = MAP_SHARED | MAP_FIXED | (config.prefault ? MAP_POPULATE : 0);
    for (std::size_t i = 0; i < config.buffer_count; ++i) {
        auto fd = make_memfd(buffer_memfd_name, config.buffer_size);
        if (!fd) {
            return std::unexpected(fd.error());  // ~arena unmaps and closes what was made
        }
        std::byte* at = base + i * config.buffer_size;
        if (::mmap(at, config.buffer_size, PROT_READ | PROT_WRITE, flags, fd->get(), 0) == MAP_FAILED) {
            return fail_errno("arena: mmap of a buffer's memfd");
        }
        a->backing_[i].fd.store(fd->release(), std::memory_order_relaxed);
    }
    if (config.prefault) {
        touch(base, bytes);
    }
    return a;
}

// Anonymous memory on a huge-page boundary, rounded up to whole huge pages (a 2 MiB page backs
// only an aligned 2 MiB range of a mapping), advised for transparent huge pages. Over-mapped by
// one huge page, then the unaligned head and the tail are given back.
result<std::unique_ptr<arena>> arena::create_anonymous(const arena_config& config) {
    const std::size_t bytes = config.buffer_size * config.buffer_count;
    const std::size_t mapped = (bytes + huge_page - 1) / huge_page * huge_page;
    void* reserved = ::mmap(nullptr, mapped + huge_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (reserved == MAP_FAILED) {
        return fail_errno("arena: mmap");
    }
    auto* const start = static_cast<std::byte*>(reserved);
    const std::size_t head = (huge_page - reinterpret_cast<std::uintptr_t>(reserved) % huge_page) % huge_page;
    if (head > 0) {
        ::munmap(start, head);
    }
    std::byte* const base = start + head;
    ::munmap(base + mapped, huge_page - head);  // the tail: never empty (head < huge_page)
    // EINVAL where the kernel has no transparent huge pages: the arena keeps small pages.
    (void)::madvise(base, mapped, MADV_HUGEPAGE);
    // A child made by fork() gets no copy of the arena (nor copy-on-write pins of its pages).
    (void)::madvise(base, mapped, MADV_DONTFORK);
    std::unique_ptr<arena> a(new arena(unique_fd(), base, config.buffer_size,
                                       static_cast<std::uint32_t>(config.buffer_count)));
    a->mapped_ = mapped;
    if (config.prefault) {
        touch(base, mapped);
    }
    return a;
}

std::size_t arena::huge_page_bytes() const {
    std::ifstream in("/proc/self/smaps");  // unreadable: empty, 0 bytes
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto begin = reinterpret_cast<std::uintptr_t>(base_);
    // smaps counts whole mappings: the arena's is rounded up to huge pages (and the kernel may
    // have merged it with a neighbour), so the figure is capped at the arena's size.
    return std::min(huge_bytes_in_smaps(text, begin, begin + bytes()), bytes());
}

namespace {
// "<hex>-<hex>": a mapping's header line's first word, as [lo, hi); false for any other line.
bool parse_range(std::string_view word, std::uintptr_t& lo, std::uintptr_t& hi) {
    const std::size_t dash = word.find('-');
    if (dash == std::string_view::npos || dash == 0 || dash + 1 >= word.size()) {
        return false;
    }
    const char* end = word.data() + word.size();
    const auto a = std::from_chars(word.data(), word.data() + dash, lo, 16);
    const auto b = std::from_chars(word.data() + dash + 1, end, hi, 16);
    return a.ec == std::errc{} && a.ptr == word.data() + dash && b.ec == std::errc{} && b.ptr == end;
}

// "Key:   N kB" -> N * 1024 when the line's key is `key`; 0 otherwise.
std::size_t kib_field(std::string_view line, std::string_view key) {
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != ':') {
        return 0;
    }
    std::string_view rest = line.substr(key.size() + 1);
    rest.remove_prefix(std::min(rest.find_first_not_of(' '), rest.size()));
    std::size_t kib = 0;
    const auto r = std::from_chars(rest.data(), rest.data() + rest.size(), kib);
    return r.ec == std::errc{} ? kib * 1024 : 0;
}
}  // namespace

std::size_t huge_bytes_in_smaps(std::string_view smaps, std::uintptr_t begin, std::uintptr_t end) {
    std::size_t total = 0;
    bool inside = false;
    while (!smaps.empty()) {
        const std::size_t eol = smaps.find('\n');
        const std::string_view line = smaps.substr(0, eol);
        smaps.remove_prefix(eol == std::string_view::npos ? smaps.size() : eol + 1);
        std::uintptr_t lo = 0;
        std::uintptr_t hi = 0;
        if (parse_range(line.substr(0, line.find(' ')), lo, hi)) {
            inside = lo < end && begin < hi;
            continue;
        }
        if (inside) {
            total += kib_field(line, "AnonHugePages") + kib_field(line, "ShmemPmdMapped");
        }
    }
    return total;
}

arena::~arena() {
    ::munmap(base_, mapped_);
    if (backing_ != nullptr) {
        for (std::uint32_t i = 0; i < count_; ++i) {
            const int fd = backing_[i].fd.load(std::memory_order_relaxed);
            if (fd >= 0) {
                ::close(fd);
            }
        }
    }
}

int arena::buffer_fd(std::uint32_t index) const {
    return backing_ != nullptr ? backing_[index].fd.load(std::memory_order_relaxed) : -1;
}

std::uint32_t arena::buffer_epoch(std::uint32_t index) const {
    return backing_ != nullptr ? backing_[index].epoch.load(std::memory_order_relaxed) : 0;
}

void arena::mark_exported(std::uint32_t index) {
    if (backing_ != nullptr) {
        backing_[index].exported.store(true, std::memory_order_relaxed);
    }
}

bool arena::renew_if_exported(std::uint32_t index) {
    if (backing_ == nullptr) {
        return true;
    }
    backing& b = backing_[index];
    if (!b.exported.load(std::memory_order_relaxed)) {
        return true;
    }
    auto fresh = make_memfd(buffer_memfd_name, buffer_size_);
    if (!fresh) {
        return false;
    }
    // Mapped aside first, then moved over the slot: mremap replaces the old mapping atomically,
    // or fails and leaves it whole (a failed MAP_FIXED could leave a hole in the arena).
    void* aside = ::mmap(nullptr, buffer_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fresh->get(), 0);
    if (aside == MAP_FAILED) {
        return false;
    }
    std::byte* slot = base_ + static_cast<std::size_t>(index) * buffer_size_;
    if (::mremap(aside, buffer_size_, buffer_size_, MREMAP_MAYMOVE | MREMAP_FIXED, slot) == MAP_FAILED) {
        ::munmap(aside, buffer_size_);
        return false;
    }
    touch(slot, buffer_size_);
    const int old = b.fd.exchange(fresh->release(), std::memory_order_relaxed);
    // Empty the old memfd: whoever still holds it reads zeros from now on, and its pages go back
    // to the system instead of living as long as a client keeps the descriptor. (Private copies
    // a client made of its reclaimed leases are its own anonymous pages: untouched.)
    (void)::fallocate(old, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(buffer_size_));
    ::close(old);
    b.epoch.fetch_add(1, std::memory_order_relaxed);
    b.exported.store(false, std::memory_order_relaxed);
    return true;
}

std::uint32_t arena::index_of(const void* p) const {
    const auto* b = static_cast<const std::byte*>(p);
    if (b < base_ || b >= base_ + bytes()) {
        return no_index;
    }
    return static_cast<std::uint32_t>(static_cast<std::size_t>(b - base_) / buffer_size_);
}

bool arena::try_pin(std::uint32_t index) {
    auto& w = descs_[index].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    for (;;) {
        if (state_word::get_state(cur) != state::valid || state_word::pins(cur) == state_word::max_pins) {
            return false;
        }
        // SYNC POINT: acquire pairs with the release in publish(): once pinned, the key, valid
        // count and bytes the owner wrote before publishing are visible. Failure order relaxed:
        // a failed CAS only reloads the word to decide again.
        if (w.compare_exchange_weak(cur, cur + 1, std::memory_order_acquire, std::memory_order_relaxed)) {
            return true;
        }
    }
}

void arena::unpin(std::uint32_t index) {
    // SYNC POINT: release pairs with the acquire CAS in try_reclaim(): the reader's last use of
    // the bytes happens-before the evictor reuses the buffer.
    const std::uint64_t before = descs_[index].word.fetch_sub(1, std::memory_order_release);
    DP_CHECK(state_word::pins(before) > 0);
}

bool arena::try_claim_free(std::uint32_t index) {
    auto& w = descs_[index].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    if (state_word::get_state(cur) != state::free) {
        return false;
    }
    const std::uint64_t next = state_word::make(state_word::generation(cur) + 1, state::filling, 1);
    // Acquire pairs with release_to_free(): the previous owner's writes are done.
    return w.compare_exchange_strong(cur, next, std::memory_order_acquire, std::memory_order_relaxed);
}

bool arena::try_reclaim(std::uint32_t index) {
    auto& w = descs_[index].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    if (state_word::get_state(cur) != state::valid || state_word::pins(cur) != 0) {
        return false;
    }
    const std::uint64_t next = state_word::make(state_word::generation(cur), state::reclaiming, 0);
    // Acquire pairs with unpin()'s release: every reader is done with the bytes.
    return w.compare_exchange_strong(cur, next, std::memory_order_acquire, std::memory_order_relaxed);
}

void arena::reuse_reclaimed(std::uint32_t index) {
    auto& w = descs_[index].word;
    const std::uint64_t cur = w.load(std::memory_order_relaxed);
    DP_CHECK(state_word::get_state(cur) == state::reclaiming);
    // Only the owner writes a reclaiming word: a plain store is enough, relaxed because nothing
    // is published by it (the buffer is still exclusively ours, now as a filler).
    w.store(state_word::make(state_word::generation(cur) + 1, state::filling, 1), std::memory_order_relaxed);
}

void arena::publish(std::uint32_t index, std::uint32_t pins) {
    auto& w = descs_[index].word;
    const std::uint64_t cur = w.load(std::memory_order_relaxed);
    DP_CHECK(state_word::get_state(cur) == state::filling);
    // SYNC POINT: release pairs with try_pin()'s acquire and with waiters' acquire loads: the key,
    // valid count and data written while filling are visible to whoever sees `valid`.
    w.store(state_word::make(state_word::generation(cur), state::valid, pins), std::memory_order_release);
    w.notify_all();
}

void arena::release_to_free(std::uint32_t index) {
    auto& w = descs_[index].word;
    const std::uint64_t cur = w.load(std::memory_order_relaxed);
    const state s = state_word::get_state(cur);
    DP_CHECK(s == state::filling || s == state::reclaiming);
    descs_[index].valid.store(0, std::memory_order_relaxed);
    // Release pairs with try_claim_free()'s acquire.
    w.store(state_word::make(state_word::generation(cur), state::free, 0), std::memory_order_release);
    w.notify_all();
}

void arena::wait_change(std::uint32_t index, std::uint64_t seen) const {
    descs_[index].word.wait(seen, std::memory_order_acquire);
}

}  // namespace datapump::buffer
