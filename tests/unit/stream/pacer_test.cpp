#include "datapump/stream/pacer.hpp"

#include <gtest/gtest.h>

namespace {

using datapump::stream::pacer;
using namespace std::chrono_literals;

TEST(pacer, unpaced_grants_everything_at_once) {
    const auto t0 = pacer::clock::now();
    pacer p(0, 1000, t0);
    EXPECT_FALSE(p.paced());
    EXPECT_EQ(p.allowance(t0, 123456789), 123456789U);
    EXPECT_EQ(p.ready_at(t0, 1U << 30), t0);
}

TEST(pacer, starts_with_one_burst_then_waits) {
    const auto t0 = pacer::clock::time_point{} + 1h;
    pacer p(1'000'000, 100'000, t0);  // 1 MB/s, 100 kB bucket
    EXPECT_EQ(p.allowance(t0, 1'000'000), 100'000U);  // capped by the burst
    p.consume(100'000);
    EXPECT_EQ(p.allowance(t0, 50'000), 0U);
    // 50 kB of tokens take 50 ms at 1 MB/s.
    const auto ready = p.ready_at(t0, 50'000);
    EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(ready - t0).count(), 50);
    EXPECT_EQ(p.allowance(t0 + 50ms, 50'000), 50'000U);
}

TEST(pacer, long_run_rate_matches_the_promise) {
    const auto t0 = pacer::clock::time_point{} + 1h;
    pacer p(5'000'000, 262'144, t0);
    auto now = t0;
    std::uint64_t sent = 0;
    // Send 256 KiB pieces whenever allowed, for 10 simulated seconds.
    while (now < t0 + 10s) {
        const auto n = p.allowance(now, 262'144);
        if (n == 262'144) {
            p.consume(n);
            sent += n;
        } else {
            now = p.ready_at(now, 262'144);
        }
    }
    // 10 s at 5 MB/s plus the initial burst, within one piece.
    const double expected = 10 * 5'000'000.0 + 262'144;
    EXPECT_NEAR(static_cast<double>(sent), expected, 262'144.0);
}

TEST(pacer, never_grants_a_partial_piece) {
    const auto t0 = pacer::clock::time_point{} + 1h;
    pacer p(1'000'000, 100'000, t0);
    p.consume(p.allowance(t0, 100'000));
    // 99 ms in, 99 kB of tokens: not enough for the 100 kB piece, so nothing yet.
    EXPECT_EQ(p.allowance(t0 + 99ms, 100'000), 0U);
    EXPECT_EQ(p.allowance(t0 + 100ms, 100'000), 100'000U);
}

TEST(pacer, tokens_never_exceed_the_burst_after_idle) {
    const auto t0 = pacer::clock::time_point{} + 1h;
    pacer p(1'000, 500, t0);
    p.consume(p.allowance(t0, 500));
    EXPECT_EQ(p.allowance(t0 + 1h, 10'000), 500U);
}

}  // namespace
