// The scheduler through the public API on a manual clock (no threads: every upcall happens inside
// system::run_until, in a fixed order): release instants, EDF order across connections, lateness
// (drop vs deliver_late), jitter misses, overruns, end of stream, starvation, admission through
// connect (codes, reasons, ports left free), measured budgets, disconnect and port close.
//
// A handler "takes time" by advancing the manual clock inside its upcall.
#include "rt_support.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace datapump::rt {
namespace {

using namespace std::chrono_literals;
using testing::budget_of;
using testing::connect_chain;
using testing::make_port;
using testing::make_qos;
using testing::make_system;
using testing::manual_config;

class RtScheduler : public ::testing::Test {
protected:
    // (Re)builds the system: `tweak` edits the config before.
    void start(unsigned vps, const std::function<void(system_config&)>& tweak = {}) {
        system_config config = manual_config(clock, vps);
        if (tweak) {
            tweak(config);
        }
        sys = make_system(config);
        ASSERT_NE(sys, nullptr);
        t0 = clock.now();
    }
    void SetUp() override { start(1); }

    // A handler that logs "<tag><sequence>.<stage>", then runs `also`.
    handler logger(const std::string& tag, std::function<void(upcall&)> also = {}) {
        return [this, tag, also](upcall& up) {
            log.push_back(tag + std::to_string(up.sequence()) + "." + std::to_string(up.stage()));
            if (also) {
                also(up);
            }
        };
    }
    // Runs `what` when the upcall is for buffer `k`.
    static std::function<void(upcall&)> on(std::uint64_t k, std::function<void(upcall&)> what) {
        return [k, what](upcall& up) {
            if (up.sequence() == k) {
                what(up);
            }
        };
    }
    std::function<void(upcall&)> takes(std::uint64_t k, duration d) {
        return on(k, [this, d](upcall&) { clock.advance(d); });
    }
    static std::function<void(upcall&)> ends_at(std::uint64_t k) {
        return on(k, [](upcall& up) { up.end_of_stream(); });
    }
    // The sequences `tag` saw, in order.
    std::vector<std::string> seen_by(const std::string& tag) const {
        std::vector<std::string> out;
        for (const std::string& e : log) {
            if (e.starts_with(tag)) {
                out.push_back(e.substr(tag.size()));
            }
        }
        return out;
    }

    manual_clock clock;
    std::unique_ptr<system> sys;
    time_point t0{};
    std::vector<std::string> log;
};

using strings = std::vector<std::string>;

TEST_F(RtScheduler, ManualClockSystemHasNoThreads) {
    EXPECT_EQ(sys->vps(), 1U);
    vp_info info = sys->vp(0);
    EXPECT_EQ(info.priority, kernel_priority::none);
    EXPECT_EQ(info.cpu, -1);
    EXPECT_EQ(info.connections, 0U);
    EXPECT_FALSE(sys->time().is_steady());
    // Nothing connected: run_until moves the clock to the instant and returns.
    sys->run_until(t0 + 5ms);
    EXPECT_EQ(clock.now(), t0 + 5ms);
}

TEST_F(RtScheduler, ReleasesAtTheIdealInstantsOfTheRate) {
    std::vector<time_point> ideals;
    std::vector<time_point> nows;
    std::vector<time_point> deadlines;
    std::vector<time_point> sink_ideals;
    auto src = make_port(*sys, "src", [&](upcall& up) {
        ideals.push_back(up.ideal());
        nows.push_back(clock.now());
        deadlines.push_back(up.deadline());
    });
    auto snk = make_port(*sys, "snk", [&](upcall& up) { sink_ideals.push_back(up.ideal()); });
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(1000));
    ASSERT_TRUE(c);
    EXPECT_EQ(c.period(), 1ms);
    EXPECT_EQ(c.delay(), 1ms);  // delay 0: one period
    EXPECT_EQ(c.budget(), 200us);
    EXPECT_DOUBLE_EQ(c.density(), 0.2);
    sys->run_until(t0 + 4500us);
    ASSERT_EQ(ideals.size(), 5U);
    for (std::size_t k = 0; k < ideals.size(); ++k) {
        EXPECT_EQ(ideals[k], t0 + k * 1ms) << "k=" << k;
        EXPECT_EQ(nows[k], ideals[k]) << "k=" << k;
        EXPECT_EQ(deadlines[k], ideals[k] + 1ms) << "k=" << k;
    }
    EXPECT_EQ(sink_ideals, ideals);
    EXPECT_EQ(clock.now(), t0 + 4500us);
    // An instant equal to `until` is run.
    sys->run_until(t0 + 5ms);
    EXPECT_EQ(ideals.size(), 6U);
    connection_stats s = c.stats();
    EXPECT_EQ(s.released, 6U);
    EXPECT_EQ(s.completed, 6U);
    EXPECT_EQ(s.misses(), 0U);
    EXPECT_EQ(s.max_start_error, 0ns);
    EXPECT_EQ(s.bytes, 6U * 4096U);
}

TEST_F(RtScheduler, IdealInstantsAreComputedFromTheSequenceWithoutDrift) {
    // 1/3 s is 333333333.33 ns: summing rounded periods would end 1 ns early at k = 3.
    std::vector<time_point> ideals;
    auto src = make_port(*sys, "src", [&](upcall& up) { ideals.push_back(up.ideal()); });
    auto snk = make_port(*sys, "snk", [](upcall&) {});
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(3));
    sys->run_until(t0 + 1s);
    ASSERT_EQ(ideals.size(), 4U);
    EXPECT_EQ(ideals[1], t0 + 333'333'333ns);
    EXPECT_EQ(ideals[2], t0 + 666'666'667ns);
    EXPECT_EQ(ideals[3], t0 + 1s);
}

TEST_F(RtScheduler, EarliestDeadlineFirstAcrossConnections) {
    // H (D 2 ms) takes 5 ms with buffer 0; meanwhile B's buffer 1 (released at 4 ms, deadline 8)
    // becomes due and must pass A's buffer 0 (released at 0, deadline 10). A and E tie on the
    // deadline: the lower connection id (A, connected first) goes first.
    auto h0 = make_port(*sys, "h0", logger("H", takes(0, 5ms)));
    auto h1 = make_port(*sys, "h1", logger("H"));
    auto a0 = make_port(*sys, "a0", logger("A"));
    auto a1 = make_port(*sys, "a1", logger("A"));
    auto b0 = make_port(*sys, "b0", logger("B"));
    auto b1 = make_port(*sys, "b1", logger("B"));
    auto e0 = make_port(*sys, "e0", logger("E"));
    auto e1 = make_port(*sys, "e1", logger("E"));
    auto a = connect_chain(*sys, {"a0", "a1"}, make_qos(100, 10ms));
    auto e = connect_chain(*sys, {"e0", "e1"}, make_qos(100, 10ms));
    auto b = connect_chain(*sys, {"b0", "b1"}, make_qos(250, 4ms));
    auto h = connect_chain(*sys, {"h0", "h1"}, make_qos(100, 2ms));
    ASSERT_TRUE(a && e && b && h);
    EXPECT_EQ(sys->vp(0).connections, 4U);
    sys->run_until(t0 + 9ms);
    EXPECT_EQ(log, (strings{"H0.0", "H0.1", "B0.0", "B0.1", "B1.0", "B1.1", "A0.0", "A0.1", "E0.0", "E0.1", "B2.0",
                            "B2.1"}));
    EXPECT_EQ(h.stats().overruns, 1U);
    EXPECT_EQ(b.stats().late, 1U);  // B0: deadline 4 ms, done at 5 ms
    EXPECT_EQ(b.stats().max_start_error, 5ms);
    EXPECT_EQ(a.stats().late, 0U);
    // The next round: H1 and A1, E1 at 10 ms (H first: deadline 12 < 20), B3 at 12 ms.
    log.clear();
    sys->run_until(t0 + 12ms);
    EXPECT_EQ(log, (strings{"H1.0", "H1.1", "A1.0", "A1.1", "E1.0", "E1.1", "B3.0", "B3.1"}));
}

TEST_F(RtScheduler, AReleaseDueDuringAStageRunsBeforeTheNextStageWhenMoreUrgent) {
    // src/rt/scheduler.hpp: "a job runs one stage; the next stage of the same buffer follows at
    // once unless a more urgent job is waiting (then it goes back to the queue, keeping its
    // deadline)". L's first stage overruns from 0 to 12 ms; S's buffer 1 fell due meanwhile (at
    // 10 ms, deadline 12 ms), more urgent than L's next stage (deadline 20 ms): nothing preempts
    // L's upcall, but S goes before L's stage 1.
    auto s0 = make_port(*sys, "s0", logger("S"));
    auto s1 = make_port(*sys, "s1", logger("S"));
    auto l0 = make_port(*sys, "l0", logger("L", takes(0, 12ms)));
    auto l1 = make_port(*sys, "l1", logger("L"));
    auto l2 = make_port(*sys, "l2", logger("L"));
    auto s = connect_chain(*sys, {"s0", "s1"}, make_qos(100, 2ms));
    auto l = connect_chain(*sys, {"l0", "l1", "l2"}, make_qos(50));
    ASSERT_TRUE(s && l);
    sys->run_until(t0 + 15ms);
    EXPECT_EQ(log, (strings{"S0.0", "S0.1", "L0.0", "S1.0", "S1.1", "L0.1", "L0.2"}));
    EXPECT_EQ(s.stats().late, 0U);  // S1 ended at 12 ms, its deadline
}

TEST_F(RtScheduler, EqualDeadlinesGoByConnectionId) {
    auto x0 = make_port(*sys, "x0", logger("X"));
    auto x1 = make_port(*sys, "x1", logger("X"));
    auto y0 = make_port(*sys, "y0", logger("Y"));
    auto y1 = make_port(*sys, "y1", logger("Y"));
    // Y connected first: lower id.
    auto y = connect_chain(*sys, {"y0", "y1"}, make_qos(100));
    auto x = connect_chain(*sys, {"x0", "x1"}, make_qos(100));
    ASSERT_LT(y.id(), x.id());
    sys->run_until(t0 + 10ms);
    EXPECT_EQ(log, (strings{"Y0.0", "Y0.1", "X0.0", "X0.1", "Y1.0", "Y1.1", "X1.0", "X1.1"}));
}

class RtLateness : public RtScheduler, public ::testing::WithParamInterface<late_policy> {};

TEST_P(RtLateness, AStageThatWouldStartPastTheDeadline) {
    // Buffer 1's source takes 11 ms: its stage 1 would start at 21 ms, past its deadline (20 ms).
    late_policy policy = GetParam();
    auto s0 = make_port(*sys, "s0", logger("a", [this](upcall& up) {
                            takes(1, 11ms)(up);
                            ends_at(3)(up);
                        }));
    auto s1 = make_port(*sys, "s1", logger("b"));
    auto s2 = make_port(*sys, "s2", logger("c"));
    auto c = connect_chain(*sys, {"s0", "s1", "s2"}, make_qos(100, 10ms, policy));
    sys->run_until(t0 + 100ms);
    ASSERT_TRUE(c.finished());
    connection_stats s = c.stats();
    EXPECT_EQ(seen_by("a"), (strings{"0.0", "1.0", "2.0", "3.0"}));
    EXPECT_EQ(s.released, 4U);
    EXPECT_EQ(s.overruns, 1U);
    if (policy == late_policy::drop) {
        EXPECT_EQ(seen_by("b"), (strings{"0.1", "2.1", "3.1"}));
        EXPECT_EQ(seen_by("c"), (strings{"0.2", "2.2", "3.2"}));
        EXPECT_EQ(s.completed, 3U);
        EXPECT_EQ(s.dropped, 1U);
        EXPECT_EQ(s.late, 0U);
    } else {
        EXPECT_EQ(seen_by("b"), (strings{"0.1", "1.1", "2.1", "3.1"}));
        EXPECT_EQ(seen_by("c"), (strings{"0.2", "1.2", "2.2", "3.2"}));
        EXPECT_EQ(s.completed, 4U);
        EXPECT_EQ(s.dropped, 0U);
        EXPECT_EQ(s.late, 1U);
        EXPECT_EQ(s.max_response, 11ms);
    }
    EXPECT_EQ(s.misses(), 1U);
    EXPECT_EQ(s.buffers_free, s.buffers);
}

TEST_P(RtLateness, ABufferReleasedPastItsDeadline) {
    // Buffer 0's sink takes 25 ms: buffers 1 (deadline 20 ms) and 2 (30 ms) are released at 25 ms.
    late_policy policy = GetParam();
    auto src = make_port(*sys, "src", logger("a", ends_at(2)));
    auto snk = make_port(*sys, "snk", logger("b", takes(0, 25ms)));
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 10ms, policy));
    sys->run_until(t0 + 100ms);
    ASSERT_TRUE(c.finished());
    connection_stats s = c.stats();
    if (policy == late_policy::drop) {
        // Buffer 1 would start after its deadline: not even the source sees it.
        EXPECT_EQ(log, (strings{"a0.0", "b0.1", "a2.0", "b2.1"}));
        EXPECT_EQ(s.dropped, 1U);
        EXPECT_EQ(s.late, 1U);  // buffer 0 itself finished late (its sink started in time)
        EXPECT_EQ(s.completed, 2U);
    } else {
        EXPECT_EQ(log, (strings{"a0.0", "b0.1", "a1.0", "b1.1", "a2.0", "b2.1"}));
        EXPECT_EQ(s.dropped, 0U);
        EXPECT_EQ(s.late, 2U);
        EXPECT_EQ(s.completed, 3U);
        EXPECT_EQ(s.max_start_error, 15ms);
    }
    EXPECT_EQ(s.buffers_free, s.buffers);
}

INSTANTIATE_TEST_SUITE_P(Policies, RtLateness, ::testing::Values(late_policy::drop, late_policy::deliver_late),
                         [](const ::testing::TestParamInfo<late_policy>& p) {
                             return p.param == late_policy::drop ? std::string("drop") : std::string("deliver");
                         });

TEST_F(RtScheduler, JitterMissesCountStartsPastTheBound) {
    // Buffer 1 starts 1 ms late (= the bound: no miss), buffer 3 starts 2 ms late (a miss).
    auto src = make_port(*sys, "src", logger("a"));
    auto snk = make_port(*sys, "snk", logger("b", [this](upcall& up) {
                             takes(0, 11ms)(up);
                             takes(2, 12ms)(up);
                         }));
    qos q = make_qos(100);
    q.jitter = 1ms;
    auto c = connect_chain(*sys, {"src", "snk"}, q);
    sys->run_until(t0 + 45ms);
    connection_stats s = c.stats();
    EXPECT_EQ(s.released, 5U);
    EXPECT_EQ(s.jitter_misses, 1U);
    EXPECT_EQ(s.max_start_error, 2ms);
    EXPECT_EQ(s.late, 2U);  // buffers 0 and 2 ended past their deadlines
}

TEST_F(RtScheduler, OverrunsCountUpcallsLongerThanTheirBudget) {
    auto src = make_port(
        *sys, "src",
        [this](upcall& up) {
            if (up.sequence() == 0 || up.sequence() == 2) {
                clock.advance(2ms);
            } else if (up.sequence() == 1) {
                clock.advance(1ms);  // exactly the budget: not an overrun
            }
        },
        1ms);
    auto snk = make_port(*sys, "snk", [](upcall&) {});
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 10ms));
    EXPECT_EQ(c.budget(), 1100us);
    sys->run_until(t0 + 35ms);
    EXPECT_EQ(c.stats().overruns, 2U);
    EXPECT_EQ(c.stats().misses(), 0U);
}

TEST_F(RtScheduler, EndOfStreamFinishesTheConnection) {
    auto src = make_port(*sys, "src", logger("a", ends_at(4)));
    auto snk = make_port(*sys, "snk", logger("b"));
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(1000));
    sys->run_until(t0 + 3500us);
    EXPECT_FALSE(c.finished());
    sys->run_until(t0 + 1s);
    EXPECT_TRUE(c.finished());
    EXPECT_EQ(seen_by("a"), (strings{"0.0", "1.0", "2.0", "3.0", "4.0"}));
    EXPECT_EQ(seen_by("b").size(), 5U);
    EXPECT_EQ(c.stats().completed, 5U);
    EXPECT_EQ(c.stats().buffers_free, 4U);
    EXPECT_EQ(clock.now(), t0 + 1s);
}

TEST_F(RtScheduler, NoSourceUpcallAfterEndOfStream) {
    // Buffer 0's sink takes 35 ms: buffers 1, 2 and 3 are all due at once when it returns. The
    // source ends the stream with buffer 1: buffers 2 and 3 must not reach it.
    auto src = make_port(*sys, "src", logger("a", ends_at(1)));
    auto snk = make_port(*sys, "snk", logger("b", takes(0, 35ms)));
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 10ms));
    sys->run_until(t0 + 100ms);
    EXPECT_EQ(seen_by("a"), (strings{"0.0", "1.0"}));
    EXPECT_EQ(seen_by("b"), (strings{"0.1", "1.1"}));
    EXPECT_TRUE(c.finished());
    EXPECT_EQ(c.stats().completed, 2U);
    EXPECT_EQ(c.stats().buffers_free, c.stats().buffers);
}

TEST_F(RtScheduler, StarvedWhenEveryBufferIsKept) {
    // Two buffers, a delay of 40 ms (4 periods), a sink that keeps everything: buffers 2 and 3
    // find no free buffer; at 40 ms buffer 0's loan is due and reclaimed, and buffer 4 gets it.
    std::vector<held_buffer> kept;
    auto src = make_port(*sys, "src", logger("a"));
    auto snk = make_port(*sys, "snk", [&kept](upcall& up) { kept.push_back(up.keep()); });
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 40ms, late_policy::deliver_late, 2));
    sys->run_until(t0 + 35ms);
    EXPECT_EQ(seen_by("a"), (strings{"0.0", "1.0"}));
    connection_stats s = c.stats();
    EXPECT_EQ(s.starved, 2U);
    EXPECT_EQ(s.reclaims, 0U);
    EXPECT_EQ(s.buffers_free, 0U);
    EXPECT_EQ(s.misses(), 2U);
    sys->run_until(t0 + 45ms);
    EXPECT_EQ(seen_by("a"), (strings{"0.0", "1.0", "4.0"}));
    s = c.stats();
    EXPECT_EQ(s.starved, 2U);
    EXPECT_EQ(s.reclaims, 1U);
    ASSERT_EQ(kept.size(), 3U);
    EXPECT_TRUE(kept[0].reclaimed());
    EXPECT_FALSE(kept[1].reclaimed());
    EXPECT_EQ(kept[2].sequence(), 4U);
}

// ---- admission through connect ----

class RtConnect : public RtScheduler {
protected:
    void SetUp() override {
        RtScheduler::SetUp();
        a = make_port(*sys, "a", [](upcall&) {});
        b = make_port(*sys, "b", [](upcall&) {});
    }
    // The refusal of connecting a -> b with `q`; fails the test when it connected.
    refusal refused(const qos& q, std::initializer_list<std::string_view> chain = {"a", "b"}) {
        auto c = sys->connect(chain, q);
        EXPECT_FALSE(c.has_value());
        return c ? refusal{} : c.error();
    }
    static bool mentions(const refusal& r, std::string_view what) { return r.reason.find(what) != std::string::npos; }
    // a -> b still connects (the refusals left the ports free) and runs.
    void expect_ports_free() {
        auto c = sys->connect({"a", "b"}, make_qos(1000));
        ASSERT_TRUE(c.has_value()) << c.error().reason;
        sys->run_until(clock.now() + 2ms);
        EXPECT_EQ(c->stats().completed, 3U);
    }
    port a;
    port b;
};

TEST_F(RtConnect, RefusesFiguresThatCanNeverWork) {
    refusal r = refused(make_qos(0));
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r, "rate")) << r.reason;
    EXPECT_EQ(refused(make_qos(-5)).code, errc::invalid_argument);
    EXPECT_EQ(refused(make_qos(2e6)).code, errc::invalid_argument);
    EXPECT_EQ(refused(make_qos(100, 0ns, late_policy::drop, 0)).code, errc::invalid_argument);
    EXPECT_EQ(refused(make_qos(100, 0ns, late_policy::drop, 4, 0)).code, errc::invalid_argument);
    EXPECT_EQ(refused(make_qos(100, -1ms)).code, errc::invalid_argument);
    qos negative_jitter = make_qos(100);
    negative_jitter.jitter = -1ms;
    EXPECT_EQ(refused(negative_jitter).code, errc::invalid_argument);
    expect_ports_free();
}

TEST_F(RtConnect, RefusesABudgetOverTheDelay) {
    refusal r = refused(make_qos(100, 150us));  // budgets 100 + 100 us
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r, "200.0 us")) << r.reason;
    EXPECT_TRUE(mentions(r, "150.0 us")) << r.reason;
    expect_ports_free();
}

TEST_F(RtConnect, RefusesBoundsUnderTheTimingFloor) {
    auto x = make_port(*sys, "x", [](upcall&) {}, 10us);
    auto y = make_port(*sys, "y", [](upcall&) {}, 10us);
    refusal r = refused(make_qos(100, 40us), {"x", "y"});
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r, "40.0 us") && mentions(r, "50.0 us")) << r.reason;
    qos q = make_qos(100);
    q.jitter = 10us;
    r = refused(q, {"x", "y"});
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r, "jitter") && mentions(r, "10.0 us")) << r.reason;
    EXPECT_TRUE(sys->connect({"x", "y"}, make_qos(100, 50us)).has_value());
}

TEST_F(RtConnect, RefusesADensityOverTheLimit) {
    auto x = make_port(*sys, "x", [](upcall&) {}, 500us);
    auto y = make_port(*sys, "y", [](upcall&) {}, 500us);
    refusal r = refused(make_qos(1000), {"x", "y"});  // 1 ms per 1 ms
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r, "1.000") && mentions(r, "0.90")) << r.reason;
    // 0.5 fits; then a second 0.5 does not (one VP): refused naming what is left (0.4).
    auto first = sys->connect({"x", "y"}, make_qos(500));
    ASSERT_TRUE(first.has_value()) << first.error().reason;
    EXPECT_DOUBLE_EQ(sys->vp(0).density, 0.5);
    auto z = make_port(*sys, "z", [](upcall&) {}, 250us);
    auto w = make_port(*sys, "w", [](upcall&) {}, 250us);
    r = refused(make_qos(1000), {"z", "w"});
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r, "0.500") && mentions(r, "0.400")) << r.reason;
    // z and w are free again: a smaller request with the same delay bound fits (0.25).
    auto second = sys->connect({"z", "w"}, make_qos(500));
    ASSERT_TRUE(second.has_value()) << second.error().reason;
    EXPECT_DOUBLE_EQ(sys->vp(0).density, 0.75);
    // Density alone would fit a third one (0.125 at 4 ms), but its longer delay bound lets its
    // 1 ms upcall block the 2 ms bounds already there (1 ms / 2 ms): refused.
    auto u = make_port(*sys, "u", [](upcall&) {}, 250us);
    auto v = make_port(*sys, "v", [](upcall&) {}, 250us);
    r = refused(make_qos(250), {"u", "v"});
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r, "0.125") && mentions(r, "block")) << r.reason;
}

TEST_F(RtConnect, RefusesBuffersOverThePoolLimit) {
    a.close();
    b.close();
    start(1, [](system_config& config) { config.max_pool_bytes = 64 * 1024; });
    a = make_port(*sys, "a", [](upcall&) {});
    b = make_port(*sys, "b", [](upcall&) {});
    refusal r = refused(make_qos(100, 0ns, late_policy::drop, 4, 32 * 1024));
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r, "131072") && mentions(r, "65536")) << r.reason;
    // Exactly the limit fits; then nothing more does.
    auto c = sys->connect({"a", "b"}, make_qos(100, 0ns, late_policy::drop, 2, 32 * 1024));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    auto x = make_port(*sys, "x", [](upcall&) {});
    auto y = make_port(*sys, "y", [](upcall&) {});
    r = refused(make_qos(100, 0ns, late_policy::drop, 1, 1), {"x", "y"});
    EXPECT_EQ(r.code, errc::full);
    // The bytes come back with a disconnect.
    c->disconnect();
    EXPECT_TRUE(sys->connect({"x", "y"}, make_qos(100, 0ns, late_policy::drop, 2, 32 * 1024)).has_value());
}

TEST_F(RtConnect, RefusesUnknownAndBusyPorts) {
    refusal r = refused(make_qos(100), {"a", "nope"});
    EXPECT_EQ(r.code, errc::not_found);
    EXPECT_TRUE(mentions(r, "'nope'")) << r.reason;
    r = refused(make_qos(100), {"a", "a"});
    EXPECT_EQ(r.code, errc::busy);
    EXPECT_TRUE(mentions(r, "'a'")) << r.reason;
    r = refused(make_qos(100), {"a"});
    EXPECT_EQ(r.code, errc::invalid_argument);
    auto c = sys->connect({"a", "b"}, make_qos(1000));
    ASSERT_TRUE(c.has_value());
    auto x = make_port(*sys, "x", [](upcall&) {});
    r = refused(make_qos(100), {"x", "b"});
    EXPECT_EQ(r.code, errc::busy);
    EXPECT_TRUE(mentions(r, "'b'")) << r.reason;
    // The refusal took nothing from the connection that holds b, and left x free.
    sys->run_until(t0 + 2ms);
    EXPECT_EQ(c->stats().completed, 3U);
    auto y = make_port(*sys, "y", [](upcall&) {});
    EXPECT_TRUE(sys->connect({"x", "y"}, make_qos(100)).has_value());
}

TEST_F(RtConnect, PortNamesAndHandlers) {
    auto dup = sys->open_port("a", [](upcall&) {});
    ASSERT_FALSE(dup.has_value());
    EXPECT_EQ(dup.error().code, errc::busy);
    for (std::string_view bad : {std::string_view(""), std::string_view("a b"), std::string_view("a/b"),
                                 std::string_view("x@y")}) {
        auto p = sys->open_port(bad, [](upcall&) {});
        ASSERT_FALSE(p.has_value()) << "'" << bad << "'";
        EXPECT_EQ(p.error().code, errc::invalid_argument);
    }
    std::string longest(64, 'n');
    auto ok = sys->open_port(longest, [](upcall&) {});
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(ok->name(), longest);
    auto too_long = sys->open_port(longest + "n", [](upcall&) {});
    EXPECT_FALSE(too_long.has_value());
    auto no_handler = sys->open_port("h", handler{});
    ASSERT_FALSE(no_handler.has_value());
    EXPECT_EQ(no_handler.error().code, errc::invalid_argument);
    auto negative = sys->open_port("n", [](upcall&) {}, budget_of(-1us));
    ASSERT_FALSE(negative.has_value());
    EXPECT_EQ(negative.error().code, errc::invalid_argument);
    // A closed port's name can be opened again.
    a.close();
    EXPECT_FALSE(a);
    EXPECT_TRUE(sys->open_port("a", [](upcall&) {}).has_value());
}

TEST_F(RtConnect, BestFitPlacementAcrossVps) {
    a.close();
    b.close();
    start(2);
    std::vector<port> ports;
    for (std::string_view name : {"p0", "p1", "q0", "q1", "r0", "r1"}) {
        ports.push_back(make_port(*sys, name, [](upcall&) {}, 1ms));
    }
    // Densities 0.2, 0.2, 0.6 (periods 10, 10, 3.33 ms).
    auto p = sys->connect({"p0", "p1"}, make_qos(100));
    auto q = sys->connect({"q0", "q1"}, make_qos(100));
    auto r = sys->connect({"r0", "r1"}, make_qos(300));
    ASSERT_TRUE(p && q && r);
    EXPECT_EQ(p->vp(), 0U);  // tie: the lowest
    EXPECT_EQ(q->vp(), 0U);  // least room left
    EXPECT_EQ(r->vp(), 1U);  // VP 0 has only 0.5 left
    EXPECT_EQ(sys->vp(0).connections, 2U);
    EXPECT_NEAR(sys->vp(0).density, 0.4, 1e-12);
    EXPECT_NEAR(sys->vp(1).density, 0.6, 1e-6);  // the period is rounded to 3333333 ns
    // Both VPs run inside run_until.
    sys->run_until(t0 + 25ms);
    EXPECT_EQ(p->stats().completed, 3U);
    EXPECT_EQ(r->stats().completed, 8U);
}

// ---- measured budgets ----

TEST_F(RtScheduler, UndeclaredBudgetsAreMeasuredByDryRuns) {
    start(1, [](system_config& config) { config.calibration_runs = 5; });
    // Dry runs take 100, 300, 200, 100, 100 us: the longest (300) times the margin (1.5).
    const duration dry[] = {100us, 300us, 200us, 100us, 100us};
    int dry_runs = 0;
    int real_runs = 0;
    bool kept_in_dry_run = false;
    auto meter = make_port(
        *sys, "meter",
        [&](upcall& up) {
            if (up.calibrating()) {
                EXPECT_EQ(up.stage(), 0U);
                EXPECT_EQ(up.stages(), 2U);
                EXPECT_EQ(up.data().size(), 4096U);
                kept_in_dry_run = kept_in_dry_run || static_cast<bool>(up.keep());
                clock.advance(dry[dry_runs++ % 5]);
            } else {
                ++real_runs;
            }
        },
        0ns);
    int idle_dry_runs = 0;
    auto idle = make_port(
        *sys, "idle",
        [&](upcall& up) {
            if (up.calibrating()) {
                ++idle_dry_runs;
            }
        },
        0ns);
    EXPECT_EQ(meter.budget(), 0ns);
    auto c = connect_chain(*sys, {"meter", "idle"}, make_qos(100));
    ASSERT_TRUE(c);
    EXPECT_EQ(dry_runs, 5);
    EXPECT_EQ(idle_dry_runs, 5);
    EXPECT_FALSE(kept_in_dry_run);
    EXPECT_EQ(meter.budget(), 450us);
    EXPECT_EQ(idle.budget(), 1us);  // nothing measured: the floor
    EXPECT_EQ(c.budget(), 451us);
    EXPECT_EQ(real_runs, 0);
    // The dry runs moved the manual clock; the first buffer is due now.
    sys->run_until(clock.now());
    EXPECT_EQ(real_runs, 1);
    // A second connect of the same ports measures nothing again.
    c.disconnect();
    auto again = connect_chain(*sys, {"meter", "idle"}, make_qos(100));
    EXPECT_EQ(dry_runs, 5);
    EXPECT_EQ(again.budget(), 451us);
}

TEST_F(RtScheduler, AMeasuredBudgetOverTheDelayIsRefused) {
    auto slow = make_port(
        *sys, "slow",
        [this](upcall& up) {
            if (up.calibrating()) {
                clock.advance(1ms);
            }
        },
        0ns);
    auto snk = make_port(*sys, "snk", [](upcall&) {});
    auto c = sys->connect({"slow", "snk"}, make_qos(1000));  // 1.5 ms + 100 us > 1 ms
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, errc::invalid_argument);
    EXPECT_NE(c.error().reason.find("1600.0 us"), std::string::npos) << c.error().reason;
    EXPECT_EQ(slow.budget(), 1500us);
}

TEST_F(RtScheduler, ManyConnectionsEachReleasedAtItsOwnInstants) {
    // 300 timer connections at 300 rates, connected at 300 different instants (the release
    // queue, not a walk, finds what is due): every one is upcalled at each of its ideal instants
    // and at no other, in the order of the instants; a third are disconnected half-way and are
    // never upcalled after.
    constexpr std::size_t n = 300;
    struct record {
        std::size_t who;
        time_point ideal;
        time_point now;
    };
    std::vector<record> upcalls;
    std::vector<port> ports;
    std::vector<connection> conns;
    std::vector<double> rates;
    std::vector<time_point> starts;
    for (std::size_t i = 0; i < n; ++i) {
        std::string name = "t" + std::to_string(i);
        ports.push_back(make_port(
            *sys, name, [&upcalls, i, this](upcall& up) { upcalls.push_back({i, up.ideal(), clock.now()}); }, 1us));
        rates.push_back(50.0 + static_cast<double>((i * 37) % 151));
        starts.push_back(clock.now());
        auto c = sys->connect_timer(name, make_qos(rates.back()));
        ASSERT_TRUE(c.has_value()) << c.error().reason;
        conns.push_back(std::move(*c));
        sys->run_until(clock.now() + 37us);  // the next one starts 37 us later
    }
    const time_point half = t0 + 100ms;
    sys->run_until(half);
    for (std::size_t i = 0; i < n; i += 3) {
        conns[i].disconnect();
    }
    const time_point end = t0 + 200ms;
    sys->run_until(end);
    std::vector<std::vector<time_point>> by(n);
    for (std::size_t u = 0; u < upcalls.size(); ++u) {
        const record& r = upcalls[u];
        EXPECT_EQ(r.now, r.ideal) << "connection " << r.who;
        if (u > 0) {
            EXPECT_LE(upcalls[u - 1].now, r.now) << "upcall " << u;
        }
        by[r.who].push_back(r.ideal);
    }
    for (std::size_t i = 0; i < n; ++i) {
        const time_point last = i % 3 == 0 ? half : end;
        std::vector<time_point> want;
        for (std::uint64_t k = 0;; ++k) {
            auto at = starts[i] + std::chrono::nanoseconds(std::llround(static_cast<double>(k) * 1e9 / rates[i]));
            if (at > last) {
                break;
            }
            want.push_back(at);
        }
        EXPECT_EQ(by[i], want) << "connection " << i << " at " << rates[i] << "/s";
    }
    EXPECT_EQ(sys->vp(0).connections, n - (n + 2) / 3);
}

// ---- disconnect, close ----

TEST_F(RtScheduler, DisconnectStopsUpcallsAndFreesThePorts) {
    auto src = make_port(*sys, "src", logger("a"));
    auto snk = make_port(*sys, "snk", logger("b"));
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(1000));
    sys->run_until(t0 + 2500us);
    EXPECT_EQ(log.size(), 6U);
    c.disconnect();
    EXPECT_FALSE(c.connected());
    EXPECT_EQ(c.stats().completed, 3U);  // the counters stay readable
    EXPECT_EQ(sys->vp(0).connections, 0U);
    EXPECT_EQ(sys->vp(0).density, 0.0);
    sys->run_until(t0 + 10ms);
    EXPECT_EQ(log.size(), 6U);
    c.disconnect();  // twice: nothing
    auto again = connect_chain(*sys, {"src", "snk"}, make_qos(1000));
    ASSERT_TRUE(again);
    EXPECT_NE(again.id(), 0U);
    sys->run_until(t0 + 12500us);
    EXPECT_EQ(log.size(), 12U);  // buffers 0, 1, 2 of the new connection
    EXPECT_EQ(log.back(), "b2.1");
}

TEST_F(RtScheduler, DestroyingTheHandleDisconnects) {
    auto src = make_port(*sys, "src", logger("a"));
    auto snk = make_port(*sys, "snk", logger("b"));
    {
        auto c = connect_chain(*sys, {"src", "snk"}, make_qos(1000));
        sys->run_until(t0 + 500us);
    }
    EXPECT_EQ(log.size(), 2U);
    EXPECT_EQ(sys->vp(0).connections, 0U);
    sys->run_until(t0 + 5ms);
    EXPECT_EQ(log.size(), 2U);
    // Moving a handle over a live one disconnects the live one.
    auto x = connect_chain(*sys, {"src", "snk"}, make_qos(1000));
    auto p = make_port(*sys, "p", [](upcall&) {});
    auto q = make_port(*sys, "q", [](upcall&) {});
    auto y = connect_chain(*sys, {"p", "q"}, make_qos(1000));
    x = std::move(y);
    EXPECT_EQ(sys->vp(0).connections, 1U);
    EXPECT_TRUE(sys->connect({"src", "snk"}, make_qos(1000)).has_value());
}

TEST_F(RtScheduler, ClosingAPortDisconnectsItsConnection) {
    auto src = make_port(*sys, "src", logger("a"));
    auto snk = make_port(*sys, "snk", logger("b"));
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(1000));
    sys->run_until(t0 + 1500us);
    EXPECT_EQ(log.size(), 4U);
    snk.close();
    EXPECT_EQ(sys->vp(0).connections, 0U);
    sys->run_until(t0 + 5ms);
    EXPECT_EQ(log.size(), 4U);
    // The source is free for another sink.
    auto other = make_port(*sys, "other", logger("o"));
    auto d = connect_chain(*sys, {"src", "other"}, make_qos(1000));
    ASSERT_TRUE(d);
    sys->run_until(t0 + 5ms);
    EXPECT_EQ(seen_by("o"), (strings{"0.1"}));
    // The old handle still reads its counters and lets go without harm.
    EXPECT_EQ(c.stats().completed, 2U);
    c.disconnect();
    EXPECT_EQ(sys->vp(0).connections, 1U);
}

TEST_F(RtScheduler, PostedTasksRunInsideRunUntilInOrder) {
    std::vector<int> ran;
    ASSERT_TRUE(sys->post([&ran] { ran.push_back(1); }).has_value());
    ASSERT_TRUE(sys->post([&ran] { ran.push_back(2); }).has_value());
    EXPECT_TRUE(ran.empty());
    // A handler posts too: the task runs in the same run_until, after the upcall.
    auto src = make_port(*sys, "src", [&](upcall& up) {
        if (up.sequence() == 0) {
            EXPECT_TRUE(sys->post([&ran] { ran.push_back(3); }).has_value());
        }
    });
    auto snk = make_port(*sys, "snk", [](upcall&) {});
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100));
    sys->run_until(t0 + 1ms);
    EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
}

}  // namespace
}  // namespace datapump::rt
