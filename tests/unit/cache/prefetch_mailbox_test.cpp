#include "datapump/cache/internal/prefetch_mailbox.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace datapump::cache {
namespace {

TEST(prefetch_mailbox, fifo_order_capacity_and_one_consumer) {
    prefetch_mailbox box(4);
    auto consumer = box.take_consumer();
    ASSERT_TRUE(consumer.has_value());
    EXPECT_FALSE(box.take_consumer().has_value());
    for (std::uint64_t i = 0; i < 4; ++i) {
        EXPECT_TRUE(box.try_post({note_kind::will_need, 1, 7, i}));
    }
    EXPECT_FALSE(box.try_post({note_kind::will_need, 1, 7, 99}));  // full
    for (std::uint64_t i = 0; i < 4; ++i) {
        auto n = consumer->try_pop();
        ASSERT_TRUE(n.has_value());
        EXPECT_EQ(n->first_block, i);
    }
    EXPECT_FALSE(consumer->try_pop().has_value());
    EXPECT_TRUE(box.try_post({note_kind::done_with, 2, 8, 5}));  // the ring wraps
    auto n = consumer->try_pop();
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(n->kind, note_kind::done_with);
    EXPECT_EQ(n->count, 2U);
}

TEST(prefetch_mailbox, many_posters_one_sleeping_consumer_lose_nothing) {
    prefetch_mailbox box(64);
    constexpr int posters = 4;
    constexpr std::uint64_t per_poster = 20000;
    std::vector<std::uint64_t> seen(posters, 0);
    std::thread consumer_thread([&, c = *box.take_consumer()]() mutable {
        std::uint64_t total = 0;
        while (total < posters * per_poster) {
            while (auto n = c.try_pop()) {
                // Per poster, notes arrive in the order posted.
                EXPECT_EQ(n->first_block, seen[n->file]);
                seen[n->file] = n->first_block + 1;
                ++total;
            }
            if (total < posters * per_poster) {
                c.wait();
            }
        }
    });
    std::vector<std::thread> ts;
    for (int p = 0; p < posters; ++p) {
        ts.emplace_back([&, p] {
            for (std::uint64_t i = 0; i < per_poster; ++i) {
                while (!box.try_post({note_kind::will_need, 1, static_cast<std::uint64_t>(p), i})) {
                    std::this_thread::yield();
                }
            }
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    consumer_thread.join();
    for (int p = 0; p < posters; ++p) {
        EXPECT_EQ(seen[static_cast<std::size_t>(p)], per_poster);
    }
}

TEST(prefetch_mailbox, shut_down_wakes_the_consumer) {
    prefetch_mailbox box(8);
    std::atomic<int> wakes{0};
    std::thread t([&wakes, c = *box.take_consumer()]() mutable {
        while (c.wait()) {
            wakes.fetch_add(1);
        }
    });
    box.shut_down();
    t.join();  // a lost wake hangs here and the ctest timeout fails the test
    EXPECT_EQ(wakes.load(), 0);  // no note was posted: the only wake was the shutdown
}

}  // namespace
}  // namespace datapump::cache
