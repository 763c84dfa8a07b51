// Timer connections (one port upcalled with a null buffer at each instant: the daemon's pacing)
// and the bulletin board (system::post: handlers hand work to the engine, never block on it).
#include "rt_support.hpp"

#include "support/wait.hpp"

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace datapump::rt::testing {
namespace {

TEST(RtTimer, UpcallsTheOnePortWithANullBufferAtEachInstant) {
    manual_clock clock;
    auto sys = make_system(manual_config(clock));
    struct seen {
        std::uint64_t sequence;
        time_point ideal;
        time_point now;
        std::size_t length;
        bool null;
    };
    std::vector<seen> calls;
    port tick = make_port(*sys, "tick", [&](upcall& up) {
        calls.push_back({up.sequence(), up.ideal(), clock.now(), up.length(), up.data().data() == nullptr});
    });
    auto c = sys->connect_timer("tick", make_qos(100, 0ns, late_policy::deliver_late, 4, 65536));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    time_point t0 = clock.now();
    sys->run_until(t0 + 45ms);
    ASSERT_EQ(calls.size(), 5U);
    for (std::size_t k = 0; k < calls.size(); ++k) {
        EXPECT_EQ(calls[k].sequence, k);
        EXPECT_EQ(calls[k].ideal, t0 + std::chrono::milliseconds(10 * k));
        EXPECT_EQ(calls[k].now, calls[k].ideal);
        EXPECT_EQ(calls[k].length, 65536U);
        EXPECT_TRUE(calls[k].null);
    }
    auto stats = c->stats();
    EXPECT_EQ(stats.completed, 5U);
    EXPECT_EQ(stats.misses(), 0U);
    EXPECT_EQ(stats.buffers, 0U);  // no pool
    c->disconnect();
    sys->run_until(t0 + 100ms);
    EXPECT_EQ(calls.size(), 5U);
}

TEST(RtTimer, IsAdmittedLikeAnyConnectionAndRefusedWithTheSameReasons) {
    manual_clock clock;
    auto sys = make_system(manual_config(clock));
    port slow = make_port(*sys, "slow", [](upcall&) {}, 8ms);
    auto refused = sys->connect_timer("slow", make_qos(200));  // 8 ms every 5 ms
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, errc::invalid_argument);  // the budget exceeds the delay bound
    auto unknown = sys->connect_timer("nobody", make_qos(10));
    ASSERT_FALSE(unknown.has_value());
    EXPECT_EQ(unknown.error().code, errc::not_found);
    auto ok = sys->connect_timer("slow", make_qos(100));
    ASSERT_TRUE(ok.has_value()) << ok.error().reason;
    EXPECT_NEAR(ok->density(), 0.8, 1e-9);
    auto busy = sys->connect_timer("slow", make_qos(100));
    ASSERT_FALSE(busy.has_value());
    EXPECT_EQ(busy.error().code, errc::busy);
}

TEST(RtBoard, OnAManualClockPostedTasksRunInsideRunUntilInPostingOrder) {
    manual_clock clock;
    auto sys = make_system(manual_config(clock));
    std::vector<int> order;
    system* raw = sys.get();
    port tick = make_port(*sys, "tick", [&order, raw](upcall& up) {
        int k = static_cast<int>(up.sequence());
        order.push_back(100 + k);
        ASSERT_TRUE(raw->post([&order, k] { order.push_back(200 + k); }).has_value());
    });
    auto c = sys->connect_timer("tick", make_qos(1000));
    ASSERT_TRUE(c.has_value());
    sys->run_until(clock.now() + 2500us);
    // Each upcall's task runs before the next instant's upcall (the board drains first).
    EXPECT_EQ(order, (std::vector<int>{100, 200, 101, 201, 102, 202}));
}

TEST(RtBoard, OnRealTimeTasksRunOnTheEngineThreadNotTheVp) {
    auto sys = make_system(real_time_config("rt", true));
    std::mutex mutex;
    std::vector<std::thread::id> vp_threads;
    std::vector<std::thread::id> engine_threads;
    std::atomic<int> posted{0};
    system* raw = sys.get();
    port tick = make_port(*sys, "tick", [&](upcall& up) {
        if (up.calibrating() || up.sequence() >= 5) {
            return;
        }
        {
            std::lock_guard lock(mutex);
            vp_threads.push_back(std::this_thread::get_id());
        }
        auto ok = raw->post([&] {
            std::lock_guard lock(mutex);
            engine_threads.push_back(std::this_thread::get_id());
            posted.fetch_add(1);
        });
        EXPECT_TRUE(ok.has_value());
    });
    auto c = sys->connect_timer("tick", make_qos(1000));
    ASSERT_TRUE(c.has_value());
    ASSERT_TRUE(datapump::testing::wait_until([&] { return posted.load() == 5; }));
    c->disconnect();
    std::lock_guard lock(mutex);
    ASSERT_EQ(engine_threads.size(), 5U);
    for (auto id : engine_threads) {
        EXPECT_EQ(id, engine_threads.front());
        EXPECT_NE(id, vp_threads.front());
        EXPECT_NE(id, std::this_thread::get_id());
    }
}

TEST(RtBoard, PostWithoutAnEngineIsRefused) {
    auto sys = make_system(real_time_config());
    auto r = sys->post([] {});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::unsupported);
}

}  // namespace
}  // namespace datapump::rt::testing

namespace datapump::rt::testing {
namespace {

// The spin window adapts to how late the VP's sleeps end, within its bounds (no timing figure is
// asserted: only that the VP measured something and kept the window inside the bounds).
TEST(RtSpin, TheWindowAdaptsWithinItsBounds) {
    for (bool fixed : {false, true}) {
        system_config config = real_time_config();
        config.spin_window = 20us;
        config.max_spin_window = fixed ? 20us : 300us;
        auto sys = make_system(config);
        std::atomic<int> ticks{0};
        port tick = make_port(*sys, "tick", [&ticks](upcall& up) {
            if (!up.calibrating()) {
                ticks.fetch_add(1);
            }
        });
        auto c = sys->connect_timer("tick", make_qos(1000));
        ASSERT_TRUE(c.has_value());
        ASSERT_TRUE(datapump::testing::wait_until([&ticks] { return ticks.load() >= 50; }));
        vp_info info = sys->vp(0);
        EXPECT_GT(info.wake_error.count(), 0) << "the VP never measured a sleep";
        EXPECT_GE(info.spin_window, 20us);
        EXPECT_LE(info.spin_window, fixed ? 20us : 300us);
        c->disconnect();
    }
}

TEST(RtSpin, BoundsThatCannotWorkAreRefused) {
    system_config config;
    config.vps = 1;
    config.engine = false;
    config.spin_window = 100us;
    config.max_spin_window = 50us;
    auto made = system::create(config);
    ASSERT_FALSE(made.has_value());
    EXPECT_EQ(made.error().code, errc::invalid_argument);
}

}  // namespace
}  // namespace datapump::rt::testing

namespace datapump::rt::testing {
namespace {

// kernel_priority::deadline: SCHED_DEADLINE where the kernel grants it (then the VP is not
// pinned: the kernel refuses deadline tasks a restricted affinity), else a step down that says why.
TEST(RtPriority, DeadlineIsGrantedOrTheStepDownSaysWhy) {
    system_config config;
    config.vps = 1;
    config.priority = kernel_priority::deadline;
    config.engine = false;
    auto sys = make_system(config);
    vp_info info = sys->vp(0);
    if (info.priority == kernel_priority::deadline) {
        EXPECT_EQ(info.cpu, -1);
        EXPECT_TRUE(info.priority_note.empty()) << info.priority_note;
    } else {
        EXPECT_NE(info.priority_note.find("SCHED_DEADLINE"), std::string::npos) << info.priority_note;
    }
    std::atomic<int> ticks{0};
    port tick = make_port(*sys, "tick", [&ticks](upcall& up) {
        if (!up.calibrating()) {
            ticks.fetch_add(1);
        }
    });
    auto c = sys->connect_timer("tick", make_qos(1000));
    ASSERT_TRUE(c.has_value());
    EXPECT_TRUE(datapump::testing::wait_until([&ticks] { return ticks.load() >= 20; }));
}

}  // namespace
}  // namespace datapump::rt::testing
