// Tests for io::ring_pool: registration all-or-none with its fallback, and lending rings to
// more threads than there are rings.
#include "datapump/io/ring_pool.hpp"

#include "unit/fs/test_support.hpp"

#include <fcntl.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

namespace datapump::io {
namespace {

constexpr std::size_t buf_size = 16 * 1024;

TEST(ring_pool, zero_rings_is_invalid) {
    auto p = ring_pool::create({.rings = 0});
    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error().code, errc::invalid_argument);
}

TEST(ring_pool, registers_the_arena_with_every_ring) {
    auto a = std::move(*buffer::arena::create({.buffer_size = buf_size, .buffer_count = 4}));
    auto p = ring_pool::create({.rings = 3, .entries = 8, .arena = a.get()});
    ASSERT_TRUE(p.has_value()) << describe(p.error());
    EXPECT_TRUE((*p)->fixed_buffers());
    EXPECT_FALSE((*p)->registration_error().has_value());
    EXPECT_EQ((*p)->size(), 3U);
    auto l1 = (*p)->borrow();
    auto l2 = (*p)->borrow();
    auto l3 = (*p)->borrow();
    EXPECT_TRUE(l1->has_fixed_buffers());
    EXPECT_TRUE(l2->has_fixed_buffers());
    EXPECT_TRUE(l3->has_fixed_buffers());
    EXPECT_NE(&l1.get(), &l2.get());
    EXPECT_NE(&l2.get(), &l3.get());
}

TEST(ring_pool, configuration_can_force_the_plain_read_fallback) {
    auto a = std::move(*buffer::arena::create({.buffer_size = buf_size, .buffer_count = 4}));
    auto p = std::move(*ring_pool::create({.rings = 1, .arena = a.get(), .register_buffers = false}));
    EXPECT_FALSE(p->fixed_buffers());
    ASSERT_TRUE(p->registration_error().has_value());
    EXPECT_EQ(p->registration_error()->code, errc::unsupported);
    EXPECT_FALSE(p->borrow()->has_fixed_buffers());
}

TEST(ring_pool, registration_failure_falls_back_for_every_ring) {
    auto big = std::move(*buffer::arena::create({.buffer_size = 4096, .buffer_count = 16385, .prefault = false}));
    auto p = std::move(*ring_pool::create({.rings = 2, .arena = big.get()}));
    EXPECT_FALSE(p->fixed_buffers());
    ASSERT_TRUE(p->registration_error().has_value());
    EXPECT_EQ(p->registration_error()->code, errc::unsupported);
}

TEST(ring_pool, more_threads_than_rings_all_get_correct_bytes) {
    test::temp_dir dir;
    constexpr std::uint32_t blocks = 8;
    const auto content = test::pattern(blocks * buf_size, 11);
    test::write_file(dir.file("f"), content);
    auto a = std::move(*buffer::arena::create({.buffer_size = buf_size, .buffer_count = blocks}));
    auto p = std::move(*ring_pool::create({.rings = 2, .entries = 4, .arena = a.get()}));
    unique_fd fd(::open(dir.file("f").c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());

    // Four threads, two rings: each thread owns two arena buffers and reads its two blocks
    // into them 50 times, borrowing a ring for every batch.
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (std::uint32_t t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 50; ++round) {
                std::vector<read_op> ops;
                for (std::uint32_t k = 0; k < 2; ++k) {
                    const std::uint32_t b = t * 2 + k;
                    std::memset(a->data(b).data(), 0, buf_size);
                    ops.push_back({fd.get(), b * buf_size, a->data(b), b});
                }
                auto lease = p->borrow();
                auto results = lease->read_batch(ops);
                for (std::uint32_t k = 0; k < 2; ++k) {
                    const std::uint32_t b = t * 2 + k;
                    if (!results[k] || *results[k] != buf_size ||
                        std::memcmp(a->data(b).data(), content.data() + b * buf_size, buf_size) != 0) {
                        failures.fetch_add(1, std::memory_order_relaxed);
                    }
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace datapump::io
