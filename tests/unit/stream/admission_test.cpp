#include "datapump/stream/admission.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace {

using datapump::stream::admission;
using datapump::stream::reservation;

TEST(admission, refuses_the_stream_that_would_exceed_capacity) {
    admission a(10'000'000);
    auto first = a.reserve(6'000'000);
    ASSERT_TRUE(first);
    auto second = a.reserve(5'000'000);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().capacity, 10'000'000U);
    EXPECT_EQ(second.error().reserved, 6'000'000U);
    EXPECT_EQ(second.error().asked, 5'000'000U);
    EXPECT_NE(second.error().text().find("capacity 10000000 B/s"), std::string::npos);
    EXPECT_EQ(a.refusals(), 1U);
    auto third = a.reserve(4'000'000);
    ASSERT_TRUE(third);
    EXPECT_EQ(a.reserved(), 10'000'000U);
}

TEST(admission, a_released_reservation_frees_its_rate) {
    admission a(1000);
    {
        auto r = a.reserve(1000);
        ASSERT_TRUE(r);
        EXPECT_FALSE(a.reserve(1));
        reservation moved = std::move(*r);
        EXPECT_EQ(a.reserved(), 1000U);
    }
    EXPECT_EQ(a.reserved(), 0U);
    EXPECT_TRUE(a.reserve(1000));
}

TEST(admission, unpaced_streams_reserve_nothing_and_are_always_admitted) {
    admission a(1);
    auto full = a.reserve(1);
    ASSERT_TRUE(full);
    auto best_effort = a.reserve(0);
    ASSERT_TRUE(best_effort);
    EXPECT_EQ(best_effort->rate(), 0U);
    EXPECT_EQ(a.refusals(), 0U);
}

TEST(admission, no_capacity_means_no_limit) {
    admission a(0);
    auto r = a.reserve(~std::uint64_t{0} / 2);
    EXPECT_TRUE(r);
}

TEST(admission, concurrent_reservations_never_overbook) {
    admission a(1000);
    std::vector<std::thread> threads;
    std::atomic<int> admitted{0};
    std::vector<reservation> kept[4];
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 1000; ++i) {
                if (auto r = a.reserve(1)) {
                    admitted.fetch_add(1);
                    kept[t].push_back(std::move(*r));
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(admitted.load(), 1000);
    EXPECT_EQ(a.reserved(), 1000U);
    EXPECT_EQ(a.refusals(), 3000U);
}

}  // namespace

// conf: a reload's capacity applies to the reservations made after it; those held stay.
TEST(admission, a_new_capacity_applies_to_new_reservations_and_keeps_those_held) {
    admission a(10'000'000);
    auto held = a.reserve(8'000'000);
    ASSERT_TRUE(held);
    a.set_capacity(5'000'000);
    EXPECT_EQ(a.capacity(), 5'000'000U);
    EXPECT_EQ(a.reserved(), 8'000'000U);  // not taken back
    EXPECT_FALSE(a.reserve(1));
    held->release();
    EXPECT_TRUE(a.reserve(5'000'000));
    a.set_capacity(0);  // no limit
    EXPECT_TRUE(a.reserve(100'000'000));
}
