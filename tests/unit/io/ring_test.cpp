// Tests for io::ring and the kernel feature probe: fixed and plain reads byte-exact, the depth
// limit, and every way registration can fail leaving the ring usable.
#include "datapump/io/ring.hpp"

#include "unit/fs/test_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

namespace datapump::io {
namespace {

using test::pattern;
using test::temp_dir;

constexpr std::size_t buf_size = 64 * 1024;

std::unique_ptr<buffer::arena> make_arena(std::size_t count, std::size_t size = buf_size, bool prefault = true) {
    auto a = buffer::arena::create({.buffer_size = size, .buffer_count = count, .prefault = prefault});
    EXPECT_TRUE(a.has_value());
    return std::move(*a);
}

unique_fd open_file(const std::string& path, int flags = O_RDONLY) {
    unique_fd fd(::open(path.c_str(), flags | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << path << ": " << std::strerror(errno);
    return fd;
}

TEST(kernel_features, probe_finds_what_this_kernel_has) {
    const kernel_features& f = detect_features();
    // The development and CI kernel (6.x) has all of them; a regression in the probe shows here.
    EXPECT_TRUE(f.io_uring);
    EXPECT_TRUE(f.read_fixed);
    EXPECT_TRUE(f.read);
    EXPECT_TRUE(f.write_fixed);
    EXPECT_TRUE(f.write);
    EXPECT_TRUE(f.send_zc);
    EXPECT_TRUE(f.splice);
    // Same object every time: probed once.
    EXPECT_EQ(&f, &detect_features());
    log_features_once(f);
    log_features_once(kernel_features{});  // second call is silent: must not crash or re-log
}

TEST(ring, create_rejects_zero_entries) {
    auto r = ring::create(0);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::invalid_argument);
}

TEST(ring, create_rounds_entries_up) {
    auto r = ring::create(6);
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_GE((*r)->entries(), 6U);
    EXPECT_FALSE((*r)->has_fixed_buffers());
}

TEST(ring, fixed_reads_are_byte_exact_with_several_in_flight) {
    temp_dir dir;
    const std::size_t size = 5 * buf_size + 1234;
    const auto content = pattern(size, 7);
    test::write_file(dir.file("f"), content);
    auto a = make_arena(8);
    auto r = std::move(*ring::create(16));
    ASSERT_TRUE(r->register_buffers(*a).has_value());
    EXPECT_TRUE(r->has_fixed_buffers());
    unique_fd fd = open_file(dir.file("f"), O_RDONLY | O_DIRECT);

    std::vector<read_op> ops;
    for (std::uint32_t b = 0; b < 7; ++b) {  // block 6 is past the end: reads 0 bytes
        // Buffers in reverse order: the fixed index really selects the buffer.
        const std::uint32_t index = 7 - b;
        ops.push_back({fd.get(), b * buf_size, a->data(index), index});
    }
    auto results = r->read_batch(ops, 2);
    ASSERT_EQ(results.size(), ops.size());
    for (std::uint32_t b = 0; b < 7; ++b) {
        ASSERT_TRUE(results[b].has_value()) << "block " << b << ": " << describe(results[b].error());
        const std::size_t begin = std::min<std::size_t>(b * buf_size, size);
        const std::size_t expect = std::min(buf_size, size - begin);
        ASSERT_EQ(*results[b], expect) << "block " << b;
        EXPECT_EQ(0, std::memcmp(a->data(7 - b).data(), content.data() + begin, expect)) << "block " << b;
    }
}

TEST(ring, plain_reads_work_without_registration) {
    temp_dir dir;
    const auto content = pattern(3 * buf_size, 3);
    test::write_file(dir.file("f"), content);
    auto a = make_arena(3);
    auto r = std::move(*ring::create(4));
    unique_fd fd = open_file(dir.file("f"));
    std::vector<read_op> ops;
    for (std::uint32_t b = 0; b < 3; ++b) {
        ops.push_back({fd.get(), b * buf_size, a->data(b)});
    }
    auto results = r->read_batch(ops, 64);  // depth clamped to the ring's entries
    for (std::uint32_t b = 0; b < 3; ++b) {
        ASSERT_TRUE(results[b].has_value());
        EXPECT_EQ(*results[b], buf_size);
        EXPECT_EQ(0, std::memcmp(a->data(b).data(), content.data() + b * buf_size, buf_size));
    }
}

TEST(ring, fixed_read_outside_its_buffer_is_rejected_before_submission) {
    auto a = make_arena(2);
    auto r = std::move(*ring::create(4));
    ASSERT_TRUE(r->register_buffers(*a).has_value());
    temp_dir dir;
    test::write_file(dir.file("f"), pattern(100));
    unique_fd fd = open_file(dir.file("f"));
    std::byte outside[16];
    std::vector<read_op> ops{{fd.get(), 0, std::span<std::byte>(outside), 0},
                             {fd.get(), 0, a->data(1), 0},   // buffer 1's memory, index 0
                             {fd.get(), 0, a->data(0), 5},   // no such index
                             {fd.get(), 0, a->data(0), 0}};  // fine
    auto results = r->read_batch(ops);
    for (int i = 0; i < 3; ++i) {
        ASSERT_FALSE(results[static_cast<std::size_t>(i)].has_value()) << i;
        EXPECT_EQ(results[static_cast<std::size_t>(i)].error().code, errc::invalid_argument) << i;
    }
    ASSERT_TRUE(results[3].has_value());
    EXPECT_EQ(*results[3], 100U);
}

TEST(ring, fixed_read_without_registration_is_rejected) {
    auto a = make_arena(1);
    auto r = std::move(*ring::create(4));
    std::vector<read_op> ops{{0, 0, a->data(0), 0}};
    auto results = r->read_batch(ops);
    ASSERT_FALSE(results[0].has_value());
    EXPECT_EQ(results[0].error().code, errc::invalid_argument);
}

TEST(ring, read_errors_carry_the_errno) {
    auto a = make_arena(1);
    auto r = std::move(*ring::create(4));
    std::vector<read_op> ops{{-1, 0, a->data(0)}};
    auto results = r->read_batch(ops);
    ASSERT_FALSE(results[0].has_value());
    EXPECT_EQ(results[0].error().sys, EBADF);
    EXPECT_EQ(results[0].error().code, errc::io_error);
}

TEST(ring, empty_batch_returns_nothing) {
    auto r = std::move(*ring::create(4));
    EXPECT_TRUE(r->read_batch({}).empty());
}

TEST(ring, registering_twice_is_busy) {
    auto a = make_arena(2);
    auto r = std::move(*ring::create(4));
    ASSERT_TRUE(r->register_buffers(*a).has_value());
    auto again = r->register_buffers(*a);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, errc::busy);
}

TEST(ring, too_many_buffers_fail_cleanly_and_plain_reads_still_work) {
    // 16385 one-page buffers: one more than io_uring can register. Not pre-faulted (64 MiB).
    auto big = make_arena(16385, 4096, false);
    auto r = std::move(*ring::create(4));
    auto reg = r->register_buffers(*big);
    ASSERT_FALSE(reg.has_value());
    EXPECT_EQ(reg.error().code, errc::unsupported);
    EXPECT_EQ(reg.error().sys, EINVAL);
    EXPECT_FALSE(r->has_fixed_buffers());

    temp_dir dir;
    const auto content = pattern(4096, 9);
    test::write_file(dir.file("f"), content);
    unique_fd fd = open_file(dir.file("f"));
    std::vector<read_op> ops{{fd.get(), 0, big->data(16384)}};
    auto results = r->read_batch(ops);
    ASSERT_TRUE(results[0].has_value());
    EXPECT_EQ(*results[0], 4096U);
    EXPECT_EQ(0, std::memcmp(big->data(16384).data(), content.data(), 4096));
}

}  // namespace
}  // namespace datapump::io
