// Paced streams on rt: the credit bucket alone (grants, allowance, the waiting mark), the piece a
// rate and burst give, and rt_pacing on a manual clock (deterministic: every upcall happens inside
// run_until) — the ticks' credit and wake-ups, admission by density, release, the summed misses.
// One test on the machine's clock checks the threaded path end to end (wide bounds).
#include "datapump/stream/rt_pacing.hpp"

#include "manual_rt.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace {

using namespace std::chrono_literals;
using datapump::errc;
using datapump::stream::credit;
using datapump::stream::rt_pacing;
using datapump::stream::rt_pacing_config;
using datapump::stream::rt_piece;
using datapump::stream::rt_stream;
namespace rt = datapump::rt;
using datapump::test::manual_system;

TEST(credit, starts_full_and_grants_what_it_has) {
    credit c(1000, 1000);
    EXPECT_EQ(c.available(), 1000U);
    EXPECT_EQ(c.allowance(300), 300U);
    c.consume(300);
    EXPECT_EQ(c.allowance(5000), 700U);  // a part of what is wanted: what the bucket holds
    c.consume(700);
    EXPECT_EQ(c.available(), 0U);
    EXPECT_FALSE(c.waiting());
}

TEST(credit, an_empty_bucket_marks_the_owner_waiting_and_one_grant_wakes_it) {
    credit c(1000, 1000);
    c.consume(c.allowance(1000));
    EXPECT_FALSE(c.grant());  // nobody waits: no wake-up
    c.consume(c.allowance(1000));
    EXPECT_EQ(c.allowance(10), 0U);
    EXPECT_TRUE(c.waiting());
    EXPECT_TRUE(c.grant());   // the owner waited: wake it
    EXPECT_FALSE(c.waiting());
    EXPECT_FALSE(c.grant());  // one wake-up per wait
    EXPECT_EQ(c.allowance(10), 10U);
}

TEST(credit, grants_never_fill_past_the_depth) {
    credit c(1000, 2500);
    c.consume(c.allowance(2500));
    for (int i = 0; i < 10; ++i) {
        c.grant();
    }
    EXPECT_EQ(c.available(), 2500U);
    EXPECT_EQ(c.allowance(1), 1U);
    EXPECT_EQ(c.allowance(0), 0U);  // nothing wanted: nothing granted, not waiting
    EXPECT_FALSE(c.waiting());
}

TEST(credit, a_grant_racing_the_owner_s_last_look_is_never_lost) {
    // The owner waits (allowance 0), a granter on another thread grants; the owner must either see
    // the credit or be woken. 2000 rounds of the race, each bounded.
    credit c(1, 1);
    std::mutex mutex;
    std::condition_variable cv;
    bool woken = false;
    for (int round = 0; round < 2000; ++round) {
        c.consume(c.allowance(1));
        std::thread granter([&] {
            if (c.grant()) {
                const std::lock_guard lock(mutex);
                woken = true;
                cv.notify_all();
            }
        });
        bool ok = true;
        if (c.allowance(1) == 0) {
            std::unique_lock lock(mutex);
            ok = cv.wait_for(lock, 5s, [&] { return woken; });
        }
        granter.join();
        ASSERT_TRUE(ok) << "round " << round << ": the owner waited and no grant woke it";
        woken = false;
        ASSERT_EQ(c.allowance(1), 1U);
    }
}

TEST(rt_piece, the_burst_raised_to_a_thousand_ticks_a_second_and_lowered_to_an_hour) {
    EXPECT_EQ(rt_piece(2'000'000, 65536, 1000, 1), 65536U);      // 30.5 ticks/s
    EXPECT_EQ(rt_piece(4'000'000, 1'000'000, 1000, 1), 1'000'000U);
    EXPECT_EQ(rt_piece(100'000'000, 65536, 1000, 1), 100'000U);  // 1000 ticks/s, not 1526
    EXPECT_EQ(rt_piece(1'000'001, 1, 1000, 1), 1001U);           // rounded up: at most 1000 ticks/s
    EXPECT_EQ(rt_piece(10, 1'000'000, 1000, 1), 36'000U);        // one tick an hour at the least
    EXPECT_EQ(rt_piece(1, 0, 1000, 1), 1U);
}

TEST(rt_piece, a_tiny_burst_is_raised_to_the_minimum_piece_so_ticks_stay_few) {
    const datapump::stream::rt_pacing_config defaults;
    const auto piece = [&](std::uint64_t rate, std::uint64_t burst) {
        return rt_piece(rate, burst, defaults.max_ticks_per_second, defaults.min_piece);
    };
    // ?burst=1 at 1 MB/s: 64 KiB pieces, 15 ticks a second (was 1000).
    EXPECT_EQ(piece(1'000'000, 1), 65536U);
    // At 5 MB/s the 50-ticks floor wins: 100 kB pieces, 50 ticks a second.
    EXPECT_EQ(piece(5'000'000, 1), 100'000U);
    EXPECT_LE(5'000'000 / piece(5'000'000, 1), defaults.max_ticks_per_second);
    // At 1 GB/s: 20 MB pieces, still 50 ticks a second.
    EXPECT_EQ(piece(1'000'000'000, 1), 20'000'000U);
    // Below 64 KiB/s the floor is one second of the rate: one tick a second, not one a minute.
    EXPECT_EQ(piece(10'000, 1), 10'000U);
    // A burst above the floor is the stream's own.
    EXPECT_EQ(piece(1'000'000, 262'144), 262'144U);
    EXPECT_EQ(piece(1, 0), 1U);
}


TEST(rt_pacing, each_instant_after_the_first_grants_one_piece_and_wakes_a_waiting_stream) {
    manual_system m;
    rt_pacing pacing(*m.sys);
    int wakes = 0;
    // 1 MB/s in pieces of 100 kB: 10 ticks a second, one every 100 ms.
    auto s = pacing.admit(7, 1'000'000, 100'000, [&wakes] { ++wakes; });
    ASSERT_TRUE(s.has_value()) << s.error().reason;
    EXPECT_EQ(s->piece(), 100'000U);
    EXPECT_EQ(s->period(), 100ms);
    EXPECT_EQ(pacing.connections(), 1U);
    const rt::time_point t0 = m.clock.now();

    // The start-up burst: one piece at once; instant 0 (at t0) adds nothing to it.
    EXPECT_EQ(s->allowance(1'000'000), 100'000U);
    s->consume(100'000);
    m.sys->run_until(t0 + 50ms);
    EXPECT_EQ(s->allowance(1'000'000), 0U);  // waiting now
    EXPECT_EQ(wakes, 0);

    // Instant 1 (t0 + 100 ms): one piece, and the waiting stream is woken once.
    m.sys->run_until(t0 + 100ms);
    EXPECT_EQ(wakes, 1);
    EXPECT_EQ(s->allowance(1'000'000), 100'000U);
    s->consume(60'000);

    // Not waiting: instants grant (capped at one piece) without waking anyone.
    m.sys->run_until(t0 + 350ms);
    EXPECT_EQ(wakes, 1);
    EXPECT_EQ(s->available(), 100'000U);

    // Over a second of sends at the credit's pace: the rate is the promised one.
    std::uint64_t sent = 0;
    for (int ms = 351; ms <= 1350; ++ms) {
        m.sys->run_until(t0 + std::chrono::milliseconds(ms));
        const std::uint64_t n = s->allowance(1 << 20);
        s->consume(n);
        sent += n;
    }
    EXPECT_EQ(sent, 1'100'000U);  // the 100 kB held at 350 ms, then instants 4..13
    const auto stats = s->stats();
    EXPECT_EQ(stats.released, 14U);
    EXPECT_EQ(stats.misses(), 0U);
    EXPECT_EQ(pacing.deadline_misses(), 0U);
}

TEST(rt_pacing, release_ends_the_connection_and_frees_the_port_name) {
    manual_system m;
    rt_pacing pacing(*m.sys);
    int wakes = 0;
    auto s = pacing.admit(1, 1'000'000, 100'000, [&wakes] { ++wakes; });
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(m.sys->vp(0).connections, 1U);
    s->consume(s->allowance(100'000));
    EXPECT_EQ(s->allowance(1), 0U);  // waiting
    s->release();
    EXPECT_FALSE(*s);
    EXPECT_EQ(s->allowance(123), 123U);  // released: unpaced
    EXPECT_EQ(pacing.connections(), 0U);
    EXPECT_EQ(m.sys->vp(0).connections, 0U);
    m.sys->run_until(m.clock.now() + 1s);
    EXPECT_EQ(wakes, 0);  // no upcall after release
    // The same id may be admitted again (its port name is free), and a moved-from handle is empty.
    auto again = pacing.admit(1, 1'000'000, 100'000, [] {});
    ASSERT_TRUE(again.has_value()) << again.error().reason;
    rt_stream moved = std::move(*again);
    EXPECT_FALSE(*again);
    EXPECT_TRUE(moved);
    EXPECT_EQ(pacing.connections(), 1U);
    moved = rt_stream{};
    EXPECT_EQ(pacing.connections(), 0U);
}

TEST(rt_pacing, a_stream_that_does_not_fit_the_density_limit_is_refused_with_rt_s_reason) {
    // 20 us per tick at 2 MB/s in 64 KiB pieces (30.5 ticks/s): density 0.00061 each. A limit of
    // 0.001 takes one such stream, not two.
    manual_system m(0.001);
    rt_pacing pacing(*m.sys);
    auto first = pacing.admit(1, 2'000'000, 65536, [] {});
    ASSERT_TRUE(first.has_value()) << first.error().reason;
    auto second = pacing.admit(2, 2'000'000, 65536, [] {});
    ASSERT_FALSE(second.has_value());
    EXPECT_EQ(second.error().code, errc::full);
    EXPECT_NE(second.error().reason.find("density"), std::string::npos) << second.error().reason;
    EXPECT_EQ(pacing.refusals(), 1U);
    EXPECT_EQ(pacing.connections(), 1U);
    first->release();
    auto after = pacing.admit(2, 2'000'000, 65536, [] {});
    EXPECT_TRUE(after.has_value()) << "the released stream's density was not given back";
    // A name already taken (the same live id) is refused too, as is an unpaced stream.
    auto twin = pacing.admit(2, 1000, 65536, [] {});
    ASSERT_FALSE(twin.has_value());
    EXPECT_EQ(twin.error().code, errc::busy);
    EXPECT_FALSE(pacing.admit(9, 0, 65536, [] {}).has_value());
    EXPECT_EQ(pacing.refusals(), 3U);
}

TEST(rt_pacing, deadline_misses_of_live_and_released_streams_are_summed) {
    manual_system m;
    rt_pacing pacing(*m.sys);
    // The wake-up of this stream "takes" 250 ms of the manual clock: the upcall ends after its
    // deadline (one period: 100 ms), a miss each time the stream was waiting.
    auto s = pacing.admit(5, 1'000'000, 100'000, [&m] { m.clock.advance(250ms); });
    ASSERT_TRUE(s.has_value());
    const rt::time_point t0 = m.clock.now();
    s->consume(s->allowance(100'000));
    EXPECT_EQ(s->allowance(1), 0U);
    m.sys->run_until(t0 + 100ms);  // instant 1 wakes the stream: late
    EXPECT_EQ(s->stats().late, 1U);
    EXPECT_EQ(pacing.deadline_misses(), 1U);
    EXPECT_EQ(pacing.overruns(), 1U);  // 250 ms against a 20 us budget
    s->release();
    EXPECT_EQ(pacing.deadline_misses(), 1U);  // kept after release
    EXPECT_EQ(pacing.overruns(), 1U);
}

TEST(rt_pacing, on_the_machine_s_clock_a_vp_wakes_the_stream_at_about_the_rate) {
    rt::system_config config;
    config.vps = 1;
    config.engine = false;
    config.priority = rt::kernel_priority::none;
    config.pin = false;
    config.spin_window = rt::duration(0);
    auto made = rt::system::create(config);
    ASSERT_TRUE(made.has_value());
    // Small pieces on purpose (the daemon's floor would make them 64 KiB): many ticks to take.
    rt_pacing pacing(**made, {.max_ticks_per_second = 1000, .min_piece = 1});
    std::mutex mutex;
    std::condition_variable cv;
    int wakes = 0;
    // 1 MB/s in 10 kB pieces: 100 ticks a second. Take 30 pieces as they come (about 0.3 s).
    auto s = pacing.admit(1, 1'000'000, 10'000, [&] {
        const std::lock_guard lock(mutex);
        ++wakes;
        cv.notify_all();
    });
    ASSERT_TRUE(s.has_value()) << s.error().reason;
    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t sent = 0;
    while (sent < 300'000) {
        ASSERT_LT(std::chrono::steady_clock::now() - t0, 10s) << "the credit stopped coming after " << sent;
        const std::uint64_t n = s->allowance(300'000 - sent);
        if (n == 0) {
            std::unique_lock lock(mutex);
            const int seen = wakes;
            // Credit may have come between allowance and here: the wake-up then already counted.
            cv.wait_for(lock, 2s, [&] { return wakes != seen || s->available() > 0; });
            continue;
        }
        s->consume(n);
        sent += n;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // 290 kB after the start-up piece at 1 MB/s: 0.29 s; wide bounds for a loaded machine.
    EXPECT_GT(seconds, 0.29 * 0.7);
    EXPECT_LT(seconds, 0.29 * 3);
    EXPECT_GE(wakes, 1);
    s->release();
    EXPECT_EQ(pacing.connections(), 0U);
}

}  // namespace
