#include "datapump/buffer/arena.hpp"
#include "datapump/buffer/buffer_ref.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace datapump::buffer {
namespace {

std::unique_ptr<arena> make(std::size_t size = 8192, std::size_t count = 4) {
    auto a = arena::create({.buffer_size = size, .buffer_count = count});
    EXPECT_TRUE(a.has_value());
    return std::move(*a);
}

// The VmFlags line of the mapping of this process that holds `p` ("" when none).
std::string vm_flags_of(const void* p) {
    std::ifstream in("/proc/self/smaps");
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        std::uintptr_t lo = 0;
        std::uintptr_t hi = 0;
        if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
            inside = lo <= at && at < hi;
        } else if (inside && line.starts_with("VmFlags:")) {
            return line;
        }
    }
    return "";
}

TEST(arena, rejects_unaligned_sizes_and_empty_arenas) {
    EXPECT_EQ(arena::create({.buffer_size = 1000, .buffer_count = 4}).error().code, errc::invalid_argument);
    EXPECT_EQ(arena::create({.buffer_size = 0, .buffer_count = 4}).error().code, errc::invalid_argument);
    EXPECT_EQ(arena::create({.buffer_size = 4096, .buffer_count = 0}).error().code, errc::invalid_argument);
}

TEST(arena, memfd_is_sized_and_buffers_are_page_aligned) {
    auto a = make(8192, 5);
    struct stat st {};
    ASSERT_EQ(::fstat(a->fd(), &st), 0);
    EXPECT_EQ(static_cast<std::size_t>(st.st_size), 8192U * 5);
    for (std::uint32_t i = 0; i < a->count(); ++i) {
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a->data(i).data()) % 4096, 0U);
        EXPECT_EQ(a->index_of(a->data(i).data() + 100), i);
    }
    EXPECT_EQ(a->index_of(&st), no_index);
}

TEST(arena, memfd_per_buffer_gives_each_buffer_its_own_memfd_behind_one_contiguous_range) {
    auto a = arena::create({.buffer_size = 8192, .buffer_count = 3, .memfd_per_buffer = true}).value();
    EXPECT_TRUE(a->memfd_per_buffer());
    EXPECT_EQ(a->fd(), -1);
    for (std::uint32_t i = 0; i < a->count(); ++i) {
        std::memset(a->data(i).data(), 'a' + static_cast<int>(i), 8192);
    }
    for (std::uint32_t i = 0; i < a->count(); ++i) {
        struct stat st {};
        ASSERT_EQ(::fstat(a->buffer_fd(i), &st), 0);
        EXPECT_EQ(st.st_size, 8192);
        char c = 0;
        ASSERT_EQ(::pread(a->buffer_fd(i), &c, 1, 8191), 1);
        EXPECT_EQ(c, 'a' + static_cast<int>(i));  // the memfd holds exactly this buffer's bytes
    }
}

TEST(arena, an_exported_buffer_gets_a_fresh_memfd_when_claimed_and_the_old_one_is_emptied) {
    auto a = arena::create({.buffer_size = 8192, .buffer_count = 2, .memfd_per_buffer = true}).value();
    ASSERT_TRUE(a->try_claim_free(0));
    std::memset(a->data(0).data(), 'x', 8192);
    a->publish(0, 1);
    const std::uint32_t epoch = a->buffer_epoch(0);
    const int held = ::dup(a->buffer_fd(0));  // what a client would hold
    a->mark_exported(0);
    a->unpin(0);
    // Not exported: a claim keeps the memfd.
    ASSERT_TRUE(a->try_claim_free(1));
    const int fd1 = a->buffer_fd(1);
    EXPECT_TRUE(a->renew_if_exported(1));
    EXPECT_EQ(a->buffer_fd(1), fd1);
    // Exported: reclaimed and reused, it gets a fresh zeroed memfd; the held one reads zeros.
    ASSERT_TRUE(a->try_reclaim(0));
    a->reuse_reclaimed(0);
    ASSERT_TRUE(a->renew_if_exported(0));
    EXPECT_NE(a->buffer_epoch(0), epoch);
    EXPECT_EQ(static_cast<char>(a->data(0)[100]), 0);
    std::memset(a->data(0).data(), 'y', 8192);
    char c = 0;
    ASSERT_EQ(::pread(a->buffer_fd(0), &c, 1, 5), 1);
    EXPECT_EQ(c, 'y');
    ASSERT_EQ(::pread(held, &c, 1, 5), 1);
    EXPECT_EQ(c, 0) << "the old memfd must neither keep the old bytes nor see the new ones";
    // A second renew without a new export keeps it.
    const std::uint32_t fresh = a->buffer_epoch(0);
    EXPECT_TRUE(a->renew_if_exported(0));
    EXPECT_EQ(a->buffer_epoch(0), fresh);
    ::close(held);
}

TEST(arena, state_machine) {
    auto a = make();
    EXPECT_FALSE(a->try_pin(0));  // free buffers cannot be pinned
    ASSERT_TRUE(a->try_claim_free(0));
    EXPECT_FALSE(a->try_claim_free(0));  // exclusive
    EXPECT_FALSE(a->try_pin(0));         // filling cannot be pinned
    const auto gen = state_word::generation(a->desc(0).word.load());
    fill_ref f(a.get(), 0);
    f.data()[0] = std::byte{42};
    buffer_ref r = std::move(f).publish(1);
    EXPECT_TRUE(f.empty());
    EXPECT_EQ(r.bytes().size(), 1U);
    EXPECT_EQ(r.bytes()[0], std::byte{42});
    EXPECT_FALSE(a->try_reclaim(0));  // pinned
    {
        buffer_ref second = r.share();
        EXPECT_EQ(state_word::pins(a->desc(0).word.load()), 2U);
    }
    r.reset();
    EXPECT_EQ(state_word::pins(a->desc(0).word.load()), 0U);
    ASSERT_TRUE(a->try_reclaim(0));
    EXPECT_FALSE(a->try_pin(0));
    a->reuse_reclaimed(0);
    EXPECT_EQ(state_word::generation(a->desc(0).word.load()), gen + 1);
    fill_ref again(a.get(), 0);
    again.reset();  // abandoned: back to free
    EXPECT_EQ(state_word::get_state(a->desc(0).word.load()), state::free);
    EXPECT_EQ(a->desc(0).valid.load(), 0U);
}

TEST(arena, dropped_fill_ref_frees_the_buffer) {
    auto a = make();
    ASSERT_TRUE(a->try_claim_free(1));
    { fill_ref f(a.get(), 1); }
    EXPECT_EQ(state_word::get_state(a->desc(1).word.load()), state::free);
    EXPECT_TRUE(a->try_claim_free(1));
}


TEST(arena, huge_pages_gives_anonymous_memory_on_a_huge_page_boundary_without_a_memfd) {
    // 3 MiB: not a whole number of huge pages (the mapping is rounded up, the arena is not).
    auto a = arena::create({.buffer_size = 256 * 1024, .buffer_count = 12, .huge_pages = true}).value();
    EXPECT_EQ(a->fd(), -1);
    EXPECT_FALSE(a->memfd_per_buffer());
    EXPECT_EQ(a->bytes(), std::size_t{3} << 20);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a->base()) % (std::size_t{2} << 20), 0U);
    for (std::uint32_t i = 0; i < a->count(); ++i) {
        const auto d = a->data(i);
        std::memset(d.data(), static_cast<int>(i + 1), d.size());
        EXPECT_EQ(a->index_of(d.data() + d.size() - 1), i);
    }
    for (std::uint32_t i = 0; i < a->count(); ++i) {
        const auto d = a->data(i);
        EXPECT_EQ(d.front(), static_cast<std::byte>(i + 1));
        EXPECT_EQ(d.back(), static_cast<std::byte>(i + 1));
    }
    // Whatever pages the kernel gave (THP may be off, memory fragmented), the mapping carries the
    // advice: huge pages (hg) and not copied into a child (dc).
    const std::string flags = vm_flags_of(a->base());
    EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
    EXPECT_NE(flags.find(" dc"), std::string::npos) << flags;
    // The buffers work as a memfd arena's do.
    ASSERT_TRUE(a->try_claim_free(3));
    a->publish(3, 1);
    EXPECT_TRUE(a->try_pin(3));
}

TEST(arena, huge_pages_is_ignored_with_memfd_per_buffer) {
    auto a = arena::create({.buffer_size = 8192, .buffer_count = 2, .memfd_per_buffer = true, .huge_pages = true})
                 .value();
    EXPECT_TRUE(a->memfd_per_buffer());
    EXPECT_GE(a->buffer_fd(0), 0);
}

TEST(arena, huge_bytes_in_smaps_sums_the_huge_pages_of_the_mappings_that_overlap_the_range) {
    const std::string_view smaps =
        "7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \n"
        "Size:               4096 kB\n"
        "AnonHugePages:      2048 kB\n"
        "ShmemPmdMapped:        0 kB\n"
        "VmFlags: rd wr mr mw me ac hg\n"
        "7f0000400000-7f0000600000 rw-s 00000000 00:01 1234   /memfd:datapump-arena (deleted)\n"
        "AnonHugePages:         0 kB\n"
        "ShmemPmdMapped:     2048 kB\n"
        "7f1000000000-7f1000200000 rw-p 00000000 00:00 0 \n"
        "AnonHugePages:      2048 kB\n";
    // Both of the first two mappings overlap; the third does not.
    EXPECT_EQ(huge_bytes_in_smaps(smaps, 0x7f0000200000, 0x7f0000500000), std::size_t{4096} * 1024);
    EXPECT_EQ(huge_bytes_in_smaps(smaps, 0x7f0000000000, 0x7f0000400000), std::size_t{2048} * 1024);
    EXPECT_EQ(huge_bytes_in_smaps(smaps, 0x7f1000000000, 0x7f1000001000), std::size_t{2048} * 1024);
    EXPECT_EQ(huge_bytes_in_smaps(smaps, 0x7e0000000000, 0x7e0000001000), 0U);
    EXPECT_EQ(huge_bytes_in_smaps("", 0, ~std::uintptr_t{0}), 0U);
    EXPECT_EQ(huge_bytes_in_smaps("garbage\nAnonHugePages: 4 kB\n", 0, ~std::uintptr_t{0}), 0U);
}

}  // namespace
}  // namespace datapump::buffer
