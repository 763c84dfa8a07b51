// The VPs on the machine's clock (threads): connections at 1 kHz deliver every buffer, in order and
// byte-exact, and finish by end of stream; kept buffers are reclaimed while another thread reads
// them; the VPs say what the kernel gave them; disconnect while running; handles outliving the
// system; the engine loop runs posted tasks.
//
// Correctness only: no timing figure is asserted (timing belongs in bench/rt). Every wait has a
// generous bound so that a hang fails instead of stalling the run.
#include "rt_support.hpp"

#include "support/wait.hpp"

#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace datapump::rt {
namespace {

using namespace std::chrono_literals;
using datapump::testing::wait_until;
using testing::fill;
using testing::holds;
using testing::make_port;
using testing::make_qos;
using testing::make_system;

constexpr duration generous = 10s;
constexpr std::byte flip{0x5a};

system_config two_vps() {
    system_config config;
    config.vps = 2;
    return config;
}

// What a sink saw, written on a VP thread and read by the test after wait_finished (whose mutex
// orders them) or under `mutex`.
struct sink_record {
    std::mutex mutex;
    std::vector<std::uint64_t> sequences;
    std::vector<time_point> ideals;
    std::set<std::thread::id> threads;
    int wrong = 0;
    void add(const upcall& up, bool right) {
        std::lock_guard lock(mutex);
        sequences.push_back(up.sequence());
        ideals.push_back(up.ideal());
        threads.insert(std::this_thread::get_id());
        wrong += right ? 0 : 1;
    }
    std::size_t size() {
        std::lock_guard lock(mutex);
        return sequences.size();
    }
};

// The source: buffer k's pattern; ends the stream from buffer `last` on (a skipped sequence
// cannot keep the stream from ending).
handler source(std::uint64_t last) {
    return [last](upcall& up) {
        fill(up.data(), up.sequence());
        if (up.sequence() >= last) {
            up.end_of_stream();
        }
    };
}

bool flipped(std::span<const std::byte> bytes, std::uint64_t k) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if ((bytes[i] ^ flip) != datapump::testing::pattern_byte(k, i)) {
            return false;
        }
    }
    return true;
}

TEST(RtVp, VpsSayWhatTheKernelGaveThem) {
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    ASSERT_EQ(sys->vps(), 2U);
    EXPECT_TRUE(sys->time().is_steady());
    for (unsigned i = 0; i < sys->vps(); ++i) {
        vp_info info = sys->vp(i);
        SCOPED_TRACE("vp " + std::to_string(i) + ": " + std::string(to_string(info.priority)) + ", " +
                     info.priority_note);
        EXPECT_EQ(info.index, i);
        EXPECT_TRUE(info.priority == kernel_priority::deadline || info.priority == kernel_priority::fifo ||
                    info.priority == kernel_priority::nice || info.priority == kernel_priority::none);
        // The default asks for SCHED_FIFO (root gets it here) and pins VP i to CPU i mod N; what
        // was refused on the way is said. A CPU outside this process's set cannot be pinned to.
        EXPECT_NE(info.priority, kernel_priority::deadline);
        int cpu = static_cast<int>(i % std::max(1U, std::thread::hardware_concurrency()));
        cpu_set_t allowed;
        CPU_ZERO(&allowed);
        ASSERT_EQ(::sched_getaffinity(0, sizeof(allowed), &allowed), 0);
        bool pinnable = CPU_ISSET(static_cast<std::size_t>(cpu), &allowed);
        EXPECT_EQ(info.cpu, pinnable ? cpu : -1);
        if (info.priority == kernel_priority::fifo && pinnable) {
            EXPECT_TRUE(info.priority_note.empty());
        } else if (info.priority != kernel_priority::fifo) {
            EXPECT_NE(info.priority_note.find("SCHED_FIFO"), std::string::npos);
        }
        EXPECT_EQ(info.connections, 0U);
    }
    EXPECT_EQ(sys->vp(7).connections, 0U);  // out of range: an empty record
}

TEST(RtVp, ConnectionsAt1kHzDeliverEveryBufferInOrderAndFinish) {
    // A 2-stage connection and a 3-stage pipeline, 200 buffers each at 1000 per second (about
    // 200 ms). Enough buffers that none can starve however late the VP runs.
    constexpr std::uint64_t n = 200;
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    sink_record direct;
    sink_record piped;
    std::atomic<int> middle_wrong{0};
    auto a0 = make_port(*sys, "a0", source(n - 1), 50us);
    auto a1 = make_port(*sys, "a1", [&direct](upcall& up) { direct.add(up, holds(up.data(), up.sequence())); }, 50us);
    auto p0 = make_port(*sys, "p0", source(n - 1), 50us);
    auto p1 = make_port(
        *sys, "p1",
        [&middle_wrong](upcall& up) {
            middle_wrong += holds(up.data(), up.sequence()) ? 0 : 1;
            for (std::byte& b : up.data()) {
                b ^= flip;
            }
        },
        50us);
    auto p2 = make_port(*sys, "p2", [&piped](upcall& up) { piped.add(up, flipped(up.data(), up.sequence())); }, 50us);
    auto a = sys->connect({"a0", "a1"}, make_qos(1000, 0ns, late_policy::deliver_late, n + 8));
    auto p = sys->connect({"p0", "p1", "p2"}, make_qos(1000, 0ns, late_policy::deliver_late, n + 8));
    ASSERT_TRUE(a.has_value()) << a.error().reason;
    ASSERT_TRUE(p.has_value()) << p.error().reason;
    EXPECT_TRUE(a->wait_finished(generous));
    EXPECT_TRUE(p->wait_finished(generous));
    ASSERT_TRUE(a->finished() && p->finished());
    std::vector<std::uint64_t> all(n);
    for (std::uint64_t k = 0; k < n; ++k) {
        all[k] = k;
    }
    for (sink_record* r : {&direct, &piped}) {
        std::lock_guard lock(r->mutex);
        EXPECT_EQ(r->sequences, all);
        EXPECT_EQ(r->wrong, 0);
        ASSERT_EQ(r->ideals.size(), n);
        for (std::uint64_t k = 0; k < n; ++k) {
            EXPECT_EQ(r->ideals[k] - r->ideals[0], k * 1ms) << "k=" << k;
        }
        EXPECT_EQ(r->threads.size(), 1U);  // one VP runs a connection
        EXPECT_FALSE(r->threads.contains(std::this_thread::get_id()));
    }
    EXPECT_EQ(middle_wrong.load(), 0);
    for (auto* c : {&*a, &*p}) {
        connection_stats s = c->stats();
        EXPECT_EQ(s.released, n);
        EXPECT_EQ(s.completed, n);
        EXPECT_EQ(s.dropped, 0U);
        EXPECT_EQ(s.starved, 0U);
        EXPECT_EQ(s.bytes, n * 4096U);
        EXPECT_EQ(s.buffers_free, s.buffers);
    }
    // Nothing more after the end.
    std::size_t seen = direct.size();
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(direct.size(), seen);
}

TEST(RtVp, KeptBuffersAreReclaimedWhileAnotherThreadReadsThem) {
    // The sink hands every buffer to a reader thread that holds the last 10 (a delay bound of
    // 2 ms: each is overdue long before the reader lets it go) and checks the bytes when it gets
    // each one and again when it lets it go, while the VP reclaims them under it.
    constexpr std::uint64_t n = 100;
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<held_buffer> inbox;
    bool done = false;
    auto src = make_port(*sys, "src", source(n - 1), 50us);
    auto snk = make_port(
        *sys, "snk",
        [&](upcall& up) {
            held_buffer h = up.keep();
            {
                std::lock_guard lock(mutex);
                inbox.push_back(std::move(h));
            }
            cv.notify_one();
        },
        50us);
    std::atomic<int> wrong{0};
    std::atomic<int> reclaimed_seen{0};
    std::atomic<int> received{0};
    std::thread reader([&] {
        std::deque<held_buffer> holding;
        auto let_go = [&] {
            held_buffer& h = holding.front();
            wrong += holds(h.data(), h.sequence()) ? 0 : 1;
            reclaimed_seen += h.reclaimed() ? 1 : 0;
            holding.pop_front();
        };
        while (true) {
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return !inbox.empty() || done; });
            if (inbox.empty() && done) {
                break;
            }
            held_buffer h = std::move(inbox.front());
            inbox.pop_front();
            lock.unlock();
            ++received;
            wrong += holds(h.data(), h.sequence()) ? 0 : 1;
            holding.push_back(std::move(h));
            if (holding.size() > 10) {
                let_go();
            }
        }
        while (!holding.empty()) {
            let_go();
        }
    });
    auto c = sys->connect({"src", "snk"}, make_qos(1000, 2ms, late_policy::deliver_late, 16));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    EXPECT_TRUE(c->wait_finished(generous));
    {
        std::lock_guard lock(mutex);
        done = true;
    }
    cv.notify_one();
    reader.join();
    connection_stats s = c->stats();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(static_cast<std::uint64_t>(received.load()), s.completed);
    EXPECT_EQ(s.completed + s.starved, n);
    // Every buffer but the last ten was overdue before the reader let it go.
    EXPECT_GE(s.reclaims + 10, s.completed);
    EXPECT_GE(static_cast<std::uint64_t>(reclaimed_seen.load()) + 10, s.completed);
    EXPECT_TRUE(wait_until([&c] { return c->stats().buffers_free == 16; }, 10s));
}

TEST(RtVp, DisconnectWhileRunningStopsTheUpcalls) {
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    std::atomic<std::uint64_t> upcalls{0};
    auto src = make_port(*sys, "src", [&upcalls](upcall&) { ++upcalls; }, 50us);
    auto snk = make_port(*sys, "snk", [&upcalls](upcall&) { ++upcalls; }, 50us);
    auto c = sys->connect({"src", "snk"}, make_qos(1000));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    unsigned vp = c->vp();
    EXPECT_EQ(sys->vp(vp).connections, 1U);
    ASSERT_TRUE(wait_until([&upcalls] { return upcalls.load() >= 20; }, 10s));
    c->disconnect();
    EXPECT_FALSE(c->connected());
    std::uint64_t after = upcalls.load();
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(upcalls.load(), after);
    EXPECT_EQ(sys->vp(vp).connections, 0U);
    // The ports connect again and run.
    auto again = sys->connect({"src", "snk"}, make_qos(1000));
    ASSERT_TRUE(again.has_value()) << again.error().reason;
    EXPECT_TRUE(wait_until([&upcalls, after] { return upcalls.load() >= after + 20; }, 10s));
    // Closing a port while it runs disconnects too.
    snk.close();
    after = upcalls.load();
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(upcalls.load(), after);
}

TEST(RtVp, TheSystemGoesWithConnectionsStillRunning) {
    // The system is destroyed while its VPs run two connections; the handles (ports, connections)
    // are dropped after it, as a scope's locals may be.
    std::atomic<std::uint64_t> upcalls{0};
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    {
        auto src = make_port(*sys, "src", [&upcalls](upcall&) { ++upcalls; }, 50us);
        auto snk = make_port(*sys, "snk", [&upcalls](upcall&) { ++upcalls; }, 50us);
        auto x0 = make_port(*sys, "x0", [&upcalls](upcall&) { ++upcalls; }, 50us);
        auto x1 = make_port(*sys, "x1", [&upcalls](upcall&) { ++upcalls; }, 50us);
        auto c = sys->connect({"src", "snk"}, make_qos(1000));
        auto d = sys->connect({"x0", "x1"}, make_qos(2000));
        ASSERT_TRUE(c.has_value() && d.has_value());
        ASSERT_TRUE(wait_until([&upcalls] { return upcalls.load() >= 20; }, 10s));
        sys.reset();
        std::uint64_t after = upcalls.load();
        std::this_thread::sleep_for(10ms);
        EXPECT_EQ(upcalls.load(), after);
        EXPECT_GE(c->stats().completed, 1U);  // a handle reads its counters after its system went
    }
}

TEST(RtVp, AConnectionHandleMayOutliveItsSystem) {
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    auto src = make_port(*sys, "src", [](upcall&) {}, 50us);
    auto snk = make_port(*sys, "snk", [](upcall&) {}, 50us);
    auto c = sys->connect({"src", "snk"}, make_qos(1000));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(wait_until([&c] { return c->stats().completed >= 5; }, 10s));
    // The ports go first, as the system asks (that disconnects); then the system; then the handle.
    src.close();
    snk.close();
    sys.reset();
    EXPECT_FALSE(c->finished());
    c->disconnect();
    EXPECT_FALSE(c->connected());
}

TEST(RtVp, APortClosedWhileAConnectMeasuresItIsNotUpcalledAfterTheClose) {
    // connect() measures the port's budget by dry runs on the caller's thread; another thread
    // closes the port meanwhile (any thread may). Once close() has returned, the handler must not
    // run again, whether the connect then fails or the close waited for it.
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    std::mutex mutex;
    std::condition_variable cv;
    bool entered = false;
    bool closed = false;
    std::atomic<int> after_close{0};
    auto meter = make_port(
        *sys, "meter",
        [&](upcall& up) {
            if (!up.calibrating()) {
                return;
            }
            std::unique_lock lock(mutex);
            if (closed) {
                ++after_close;
                return;
            }
            if (!entered) {
                entered = true;
                cv.notify_all();
                // Bounded: a close() that waits for this connect must not deadlock the test.
                cv.wait_for(lock, 500ms, [&closed] { return closed; });
            }
        },
        0ns);
    auto snk = make_port(*sys, "snk", [](upcall&) {}, 50us);
    std::thread closer([&] {
        {
            std::unique_lock lock(mutex);
            cv.wait_for(lock, 10s, [&entered] { return entered; });
        }
        meter.close();
        std::lock_guard lock(mutex);
        closed = true;
        cv.notify_all();
    });
    auto c = sys->connect({"meter", "snk"}, make_qos(1000));
    closer.join();
    EXPECT_EQ(after_close.load(), 0);
    if (c.has_value()) {
        EXPECT_EQ(sys->vp(c->vp()).connections, 0U) << "a connection through a closed port";
    }
    std::this_thread::sleep_for(10ms);
    EXPECT_EQ(after_close.load(), 0);
}

TEST(RtVp, TheEngineRunsPostedTasks) {
    auto sys = make_system(two_vps());
    ASSERT_NE(sys, nullptr);
    std::promise<std::thread::id> ran;
    auto result = ran.get_future();
    ASSERT_TRUE(sys->post([&ran] { ran.set_value(std::this_thread::get_id()); }).has_value());
    ASSERT_EQ(result.wait_for(generous), std::future_status::ready);
    EXPECT_NE(result.get(), std::this_thread::get_id());
    // From a handler (the bulletin board): never blocks the VP.
    std::atomic<int> posted{0};
    std::atomic<int> executed{0};
    auto src = make_port(
        *sys, "src",
        [&](upcall& up) {
            if (up.sequence() < 5 && sys->post([&executed] { ++executed; }).has_value()) {
                ++posted;
            }
        },
        50us);
    auto snk = make_port(*sys, "snk", [](upcall&) {}, 50us);
    auto c = sys->connect({"src", "snk"}, make_qos(1000));
    ASSERT_TRUE(c.has_value());
    EXPECT_TRUE(wait_until([&executed] { return executed.load() == 5; }, 10s));
    EXPECT_EQ(posted.load(), 5);
}

}  // namespace
}  // namespace datapump::rt
