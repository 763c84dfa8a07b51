#include "datapump/cache/buffer_cache.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace datapump::cache {
namespace {

std::unique_ptr<buffer_cache> make(std::size_t count = 4) {
    auto c = buffer_cache::create({.buffer_size = 4096, .buffer_count = count});
    EXPECT_TRUE(c.has_value());
    return std::move(*c);
}

buffer::buffer_ref fill_block(buffer_cache& c, key k, std::byte value) {
    auto got = c.lock_or_claim(k);
    EXPECT_TRUE(got.has_value());
    auto* t = std::get_if<fill_ticket>(&*got);
    EXPECT_NE(t, nullptr);
    t->data()[0] = value;
    return std::move(*t).publish(4096);
}

TEST(buffer_cache, miss_then_fill_then_hit) {
    auto c = make();
    auto miss = c->try_lock({1, 0});
    ASSERT_FALSE(miss);
    EXPECT_EQ(miss.error().code, errc::would_block);
    {
        auto ref = fill_block(*c, {1, 0}, std::byte{7});
    }
    auto hit = c->try_lock({1, 0});
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->bytes()[0], std::byte{7});
    EXPECT_FALSE(c->try_lock({1, 1}));  // neighbour block
    EXPECT_FALSE(c->try_lock({2, 0}));  // same block of another file
    const auto s = c->counters().snapshot();
    EXPECT_EQ(s.hits, 1U);
    // try_lock(1,0) before the fill, lock_or_claim's own fast attempt, then (1,1) and (2,0).
    EXPECT_EQ(s.misses, 4U);
}

TEST(buffer_cache, lock_or_claim_returns_the_cached_buffer) {
    auto c = make();
    { auto ref = fill_block(*c, {1, 5}, std::byte{1}); }
    auto got = c->lock_or_claim({1, 5});
    ASSERT_TRUE(got);
    EXPECT_TRUE(std::holds_alternative<buffer::buffer_ref>(*got));
}

TEST(buffer_cache, filling_block_is_busy_for_the_fast_path_and_abandon_frees_it) {
    auto c = make();
    auto got = c->lock_or_claim({3, 3});
    ASSERT_TRUE(got);
    auto ticket = std::get<fill_ticket>(std::move(*got));
    auto busy = c->try_lock({3, 3});
    ASSERT_FALSE(busy);
    EXPECT_EQ(c->counters().snapshot().collisions, 1U);
    ticket.abandon();
    EXPECT_FALSE(c->try_lock({3, 3}));
    EXPECT_EQ(c->pinned_buffers(), 0U);
    // The abandoned buffer is reusable: all four buffers can be filled.
    std::vector<buffer::buffer_ref> refs;
    for (std::uint64_t b = 0; b < 4; ++b) {
        refs.push_back(fill_block(*c, {9, b}, std::byte{0}));
    }
    EXPECT_EQ(c->pinned_buffers(), 4U);
}

TEST(buffer_cache, pinned_buffers_are_never_evicted) {
    auto c = make(2);
    auto a = fill_block(*c, {1, 0}, std::byte{1});
    auto b = fill_block(*c, {1, 1}, std::byte{2});
    auto none = c->lock_or_claim({1, 2});
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, errc::no_buffers);
    EXPECT_EQ(c->counters().snapshot().no_buffers, 1U);
    b.reset();
    auto third = c->lock_or_claim({1, 2});
    ASSERT_TRUE(third);
    EXPECT_TRUE(std::holds_alternative<fill_ticket>(*third));
    EXPECT_EQ(c->counters().snapshot().evictions, 1U);
    // The pinned block survived and still holds its bytes.
    auto still = c->try_lock({1, 0});
    ASSERT_TRUE(still);
    EXPECT_EQ(still->bytes()[0], std::byte{1});
    EXPECT_FALSE(c->try_lock({1, 1}));  // the evicted one
}

TEST(buffer_cache, clock_gives_referenced_buffers_a_second_chance_and_release_hint_removes_it) {
    auto c = make(3);
    for (std::uint64_t b = 0; b < 3; ++b) {
        auto r = fill_block(*c, {1, b}, std::byte{0});
    }
    // All three are referenced. Hint block 1 as done: it goes first.
    c->release_hint({1, 1});
    { auto r = fill_block(*c, {1, 3}, std::byte{0}); }
    EXPECT_FALSE(c->try_lock({1, 1}));
    EXPECT_TRUE(c->try_lock({1, 0}));
    EXPECT_TRUE(c->try_lock({1, 2}));
}

TEST(buffer_cache, claim_if_absent_skips_present_and_busy_blocks_without_waiting) {
    auto c = make(4);
    auto busy = c->lock_or_claim({5, 0});  // being filled by "another reader"
    ASSERT_TRUE(busy);
    { auto r = fill_block(*c, {5, 1}, std::byte{1}); }  // cached
    auto a = c->claim_if_absent({5, 0});
    ASSERT_TRUE(a);
    EXPECT_FALSE(a->has_value());  // returns at once although the fill is still running
    auto b = c->claim_if_absent({5, 1});
    ASSERT_TRUE(b);
    EXPECT_FALSE(b->has_value());
    auto fresh = c->claim_if_absent({5, 2});
    ASSERT_TRUE(fresh);
    ASSERT_TRUE(fresh->has_value());
    EXPECT_EQ((*fresh)->key(), (key{5, 2}));
}

TEST(buffer_cache, concurrent_lookups_of_one_missing_block_cause_one_fill) {
    auto c = make(8);
    constexpr int threads = 6;
    std::atomic<int> fills{0};
    std::atomic<int> ready{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&] {
            ready.fetch_add(1);
            while (ready.load() < threads) {
            }
            auto got = c->lock_or_claim({4, 4});
            ASSERT_TRUE(got);
            if (auto* ticket = std::get_if<fill_ticket>(&*got)) {
                fills.fetch_add(1);
                std::this_thread::sleep_for(std::chrono::milliseconds(20));  // others must wait
                ticket->data()[0] = std::byte{99};
                auto ref = std::move(*ticket).publish(4096);
                EXPECT_EQ(ref.bytes()[0], std::byte{99});
            } else {
                EXPECT_EQ(std::get<buffer::buffer_ref>(*got).bytes()[0], std::byte{99});
            }
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    EXPECT_EQ(fills.load(), 1);
    EXPECT_EQ(c->pinned_buffers(), 0U);
}

}  // namespace
}  // namespace datapump::cache
