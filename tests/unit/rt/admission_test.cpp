// The EDF admission test (src/rt/admission.hpp), pure: each refusal with its code and the figures
// its reason names, the density arithmetic, the non-preemptive blocking term, best-fit placement
// (least room left; ties: the lowest VP) and a set filled exactly to the limit.
#include "admission.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

namespace datapump::rt::detail {
namespace {

using namespace std::chrono_literals;

task make_task(duration budget, duration period, duration delay) {
    return task{.budget = budget, .period = period, .delay = delay};
}

admission_request request_for(const task& t, duration jitter = 0ns, std::size_t pool_bytes = 4096) {
    return admission_request{.t = t, .jitter = jitter, .pool_bytes = pool_bytes};
}

admission_limits limits(double max_density = 0.9, duration floor = 50us, std::size_t pool_free = 1 << 20) {
    return admission_limits{.max_density = max_density, .timing_floor = floor, .pool_bytes_free = pool_free};
}

// The refusal of `request` on `vps`; fails the test when it was admitted.
refusal refused(const admission_request& request, const std::vector<std::vector<task>>& vps,
                const admission_limits& lim) {
    auto got = admit(request, vps, lim);
    EXPECT_FALSE(got.has_value()) << "admitted on VP " << (got ? *got : 0U);
    return got ? refusal{} : got.error();
}

bool mentions(const std::string& reason, const std::string& figure) {
    return reason.find(figure) != std::string::npos;
}

const std::vector<std::vector<task>> two_empty_vps(2);

TEST(RtAdmission, DensityIsBudgetOverTheShorterOfDelayAndPeriod) {
    EXPECT_DOUBLE_EQ(density(make_task(1ms, 10ms, 10ms)), 0.1);
    EXPECT_DOUBLE_EQ(density(make_task(1ms, 10ms, 4ms)), 0.25);   // D < T: D counts
    EXPECT_DOUBLE_EQ(density(make_task(1ms, 5ms, 20ms)), 0.2);    // D > T: T counts
}

TEST(RtAdmission, LoadIfFitsSumsDensitiesAndRefusesOverTheLimit) {
    std::vector<task> set{make_task(2ms, 10ms, 10ms), make_task(3ms, 10ms, 10ms)};
    EXPECT_DOUBLE_EQ(load_if_fits(set, 0.9), 0.5);
    EXPECT_DOUBLE_EQ(load_if_fits(set, 0.5), 0.5);
    EXPECT_EQ(load_if_fits(set, 0.49), -1.0);
    EXPECT_EQ(load_if_fits({}, 0.9), 0.0);
}

TEST(RtAdmission, LoadIfFitsAddsTheLongestBudgetWithALaterDelayAsBlocking) {
    // The short-delay task may wait for the long one's whole upcall: 0.05 + 0.05 + 1ms / 2ms.
    std::vector<task> set{make_task(1ms, 20ms, 20ms), make_task(100us, 2ms, 2ms)};
    EXPECT_NEAR(load_if_fits(set, 1.0), 0.05 + 0.05 + 0.5, 1e-12);
    // The long-delay task is blocked by nothing (only tasks with a later delay bound block).
    std::vector<task> alone{make_task(1ms, 20ms, 20ms)};
    EXPECT_DOUBLE_EQ(load_if_fits(alone, 1.0), 0.05);
}

// The test's definition, pair by pair (what load_if_fits computed before its sweep).
double pairwise_load(const std::vector<task>& tasks, double max_density) {
    double sum = 0;
    for (const task& t : tasks) {
        sum += density(t);
    }
    double worst = sum;
    for (const task& i : tasks) {
        duration blocking{0};
        for (const task& j : tasks) {
            if (j.delay > i.delay) {
                blocking = std::max(blocking, j.budget);
            }
        }
        worst = std::max(worst, sum + static_cast<double>(blocking.count()) / static_cast<double>(i.delay.count()));
    }
    return worst <= max_density + 1e-12 ? worst : -1.0;
}

TEST(RtAdmission, LoadIfFitsSweepEqualsThePairwiseDefinition) {
    // Random sets with few distinct delay bounds (ties are where a sweep goes wrong) and budgets
    // that are sometimes longest on the earliest bound.
    std::mt19937 rng(16);
    for (int round = 0; round < 500; ++round) {
        std::vector<task> set(rng() % 40);
        for (task& t : set) {
            t = make_task(std::chrono::microseconds(1 + rng() % 300), std::chrono::milliseconds(1 + rng() % 50),
                          std::chrono::milliseconds(1 + rng() % 6));
        }
        for (double limit : {0.3, 0.9, 1e300}) {
            ASSERT_EQ(load_if_fits(set, limit), pairwise_load(set, limit)) << "round " << round;
        }
    }
}

TEST(RtAdmission, RefusesARateOfZero) {
    auto r = refused(request_for(make_task(1ms, 0ns, 10ms)), two_empty_vps, limits());
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r.reason, "rate")) << r.reason;
}

TEST(RtAdmission, RefusesADelayOfZero) {
    auto r = refused(request_for(make_task(1ms, 10ms, 0ns)), two_empty_vps, limits());
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r.reason, "delay")) << r.reason;
    auto negative = refused(request_for(make_task(1ms, 10ms, -1ms)), two_empty_vps, limits());
    EXPECT_EQ(negative.code, errc::invalid_argument);
}

TEST(RtAdmission, RefusesABudgetOfZero) {
    auto r = refused(request_for(make_task(0ns, 10ms, 10ms)), two_empty_vps, limits());
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r.reason, "budget")) << r.reason;
}

TEST(RtAdmission, RefusesABudgetOverTheDelayNamingBoth) {
    auto r = refused(request_for(make_task(3ms, 10ms, 2ms)), two_empty_vps, limits());
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r.reason, "3000.0 us")) << r.reason;
    EXPECT_TRUE(mentions(r.reason, "2000.0 us")) << r.reason;
    // Equal is fine (alone it needs density 1.0 though: allow it).
    EXPECT_TRUE(admit(request_for(make_task(2ms, 10ms, 2ms)), two_empty_vps, limits(1.0)).has_value());
}

TEST(RtAdmission, RefusesADelayUnderTheTimingFloorNamingBoth) {
    auto r = refused(request_for(make_task(10us, 10ms, 40us)), two_empty_vps, limits(0.9, 50us));
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r.reason, "40.0 us")) << r.reason;
    EXPECT_TRUE(mentions(r.reason, "50.0 us")) << r.reason;
    EXPECT_TRUE(mentions(r.reason, "delay")) << r.reason;
}

TEST(RtAdmission, RefusesAJitterUnderTheTimingFloorButNotAJitterOfZero) {
    auto r = refused(request_for(make_task(1ms, 10ms, 10ms), 20us), two_empty_vps, limits(0.9, 50us));
    EXPECT_EQ(r.code, errc::invalid_argument);
    EXPECT_TRUE(mentions(r.reason, "jitter")) << r.reason;
    EXPECT_TRUE(mentions(r.reason, "20.0 us")) << r.reason;
    EXPECT_TRUE(mentions(r.reason, "50.0 us")) << r.reason;
    EXPECT_TRUE(admit(request_for(make_task(1ms, 10ms, 10ms), 0ns), two_empty_vps, limits(0.9, 50us)));
    EXPECT_TRUE(admit(request_for(make_task(1ms, 10ms, 10ms), 50us), two_empty_vps, limits(0.9, 50us)));
}

TEST(RtAdmission, RefusesPoolBytesOverWhatIsFreeNamingBoth) {
    auto r = refused(request_for(make_task(1ms, 10ms, 10ms), 0ns, 8192), two_empty_vps, limits(0.9, 50us, 4096));
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r.reason, "8192")) << r.reason;
    EXPECT_TRUE(mentions(r.reason, "4096")) << r.reason;
    EXPECT_TRUE(admit(request_for(make_task(1ms, 10ms, 10ms), 0ns, 4096), two_empty_vps, limits(0.9, 50us, 4096)));
}

TEST(RtAdmission, RefusesWithoutVirtualProcessors) {
    std::vector<std::vector<task>> none;
    auto r = refused(request_for(make_task(1ms, 10ms, 10ms)), none, limits());
    EXPECT_EQ(r.code, errc::full);
}

TEST(RtAdmission, RefusesAConnectionThatAloneExceedsTheLimitNamingItsDensity) {
    auto r = refused(request_for(make_task(5ms, 5ms, 5ms)), two_empty_vps, limits(0.9));
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r.reason, "1.000")) << r.reason;  // its density
    EXPECT_TRUE(mentions(r.reason, "0.90")) << r.reason;   // the limit
    EXPECT_TRUE(mentions(r.reason, "5000.0 us")) << r.reason;  // budget and window (T = D = 5 ms)
}

TEST(RtAdmission, RefusesWhenNoVpHasRoomNamingTheMostLeft) {
    // VP 0 at 0.6, VP 1 at 0.8: the most left is 0.3; a request of density 0.4 fits neither.
    std::vector<std::vector<task>> vps{{make_task(6ms, 10ms, 10ms)}, {make_task(8ms, 10ms, 10ms)}};
    auto r = refused(request_for(make_task(4ms, 10ms, 10ms)), vps, limits(0.9));
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r.reason, "0.400")) << r.reason;  // what it needs
    EXPECT_TRUE(mentions(r.reason, "0.300")) << r.reason;  // the most any VP has left
    EXPECT_TRUE(mentions(r.reason, "0.90")) << r.reason;
}

TEST(RtAdmission, BestFitPicksTheVpWithTheLeastRoomLeftThatStillFits) {
    // Loads 0.2, 0.7, 0.5; the request (0.2) fits all: VP 1 is left with the least room (0.0).
    std::vector<std::vector<task>> vps{
        {make_task(2ms, 10ms, 10ms)}, {make_task(7ms, 10ms, 10ms)}, {make_task(5ms, 10ms, 10ms)}};
    auto got = admit(request_for(make_task(2ms, 10ms, 10ms)), vps, limits(0.9));
    ASSERT_TRUE(got.has_value()) << got.error().reason;
    EXPECT_EQ(*got, 1U);
    // A request of 0.3 no longer fits VP 1: VP 2 (0.8 after) beats VP 0 (0.5 after).
    got = admit(request_for(make_task(3ms, 10ms, 10ms)), vps, limits(0.9));
    ASSERT_TRUE(got.has_value()) << got.error().reason;
    EXPECT_EQ(*got, 2U);
}

TEST(RtAdmission, BestFitTiesGoToTheLowestIndex) {
    std::vector<std::vector<task>> vps{{}, {make_task(3ms, 10ms, 10ms)}, {make_task(3ms, 10ms, 10ms)}};
    auto got = admit(request_for(make_task(1ms, 10ms, 10ms)), vps, limits(0.9));
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, 1U);
    std::vector<std::vector<task>> empty(3);
    got = admit(request_for(make_task(1ms, 10ms, 10ms)), empty, limits(0.9));
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, 0U);
}

TEST(RtAdmission, ASetFilledExactlyToTheLimitFits) {
    // 0.3 + 0.3 + 0.3 is 0.8999999999999999 in doubles; 0.1 * 9 steps likewise drift.
    std::vector<std::vector<task>> vps{{make_task(3ms, 10ms, 10ms), make_task(3ms, 10ms, 10ms)}};
    auto got = admit(request_for(make_task(3ms, 10ms, 10ms)), vps, limits(0.9));
    ASSERT_TRUE(got.has_value()) << got.error().reason;
    EXPECT_EQ(*got, 0U);
    std::vector<std::vector<task>> tenths(1);
    for (int i = 0; i < 9; ++i) {
        auto placed = admit(request_for(make_task(1ms, 10ms, 10ms)), tenths, limits(0.9));
        ASSERT_TRUE(placed.has_value()) << "task " << i << ": " << placed.error().reason;
        tenths[*placed].push_back(make_task(1ms, 10ms, 10ms));
    }
    // Full: one nanosecond more does not fit.
    auto over = admit(request_for(make_task(1ns, 10ms, 10ms)), tenths, limits(0.9));
    EXPECT_FALSE(over.has_value());
}

TEST(RtAdmission, ALongBudgetBlocksAShortDelayOnItsVpButNotOnAnother) {
    // VP 0 carries a 5 ms upcall (density 0.25). A 100 us task with a 2 ms delay bound has density
    // 0.05 but may wait the whole 5 ms upcall there (blocking 5/2): it must go to VP 1.
    task long_task = make_task(5ms, 20ms, 20ms);
    task short_task = make_task(100us, 10ms, 2ms);
    std::vector<std::vector<task>> vps{{long_task}, {}};
    auto got = admit(request_for(short_task), vps, limits(0.9));
    ASSERT_TRUE(got.has_value()) << got.error().reason;
    EXPECT_EQ(*got, 1U);
    // With VP 0 alone it is refused, although the densities sum to 0.3.
    std::vector<std::vector<task>> one{{long_task}};
    auto r = refused(request_for(short_task), one, limits(0.9));
    EXPECT_EQ(r.code, errc::full);
    EXPECT_TRUE(mentions(r.reason, "0.050")) << r.reason;
    // The other way round too: the long task does not go next to the short one.
    std::vector<std::vector<task>> short_first{{short_task}, {}};
    got = admit(request_for(long_task), short_first, limits(0.9));
    ASSERT_TRUE(got.has_value()) << got.error().reason;
    EXPECT_EQ(*got, 1U);
    // Equal delay bounds do not block each other: both fit on one VP.
    std::vector<std::vector<task>> same{{make_task(5ms, 20ms, 20ms)}};
    got = admit(request_for(make_task(100us, 20ms, 20ms)), same, limits(0.9));
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, 0U);
}

TEST(RtAdmission, FiguresAreCheckedInOrderCheapestFirst) {
    // A request wrong in several ways gets the first reason: the rate.
    auto r = refused(request_for(make_task(0ns, 0ns, 0ns), 1us, 1 << 30), two_empty_vps, limits());
    EXPECT_TRUE(mentions(r.reason, "rate")) << r.reason;
}

}  // namespace
}  // namespace datapump::rt::detail
