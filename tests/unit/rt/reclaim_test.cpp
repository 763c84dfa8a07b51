// Loans and reclaim (src/rt/pool.hpp), on a manual clock: a kept buffer past its deadline is
// reclaimed in place (same address, same bytes, now the holder's own memory) while the pool reuses
// its buffer for new bytes; a loan given back in time is not reclaimed; held buffers outlive their
// connection and are released on other threads. And the pool itself under a thread that drops
// loans while the pipeline finishes with their buffers.
#include "pool.hpp"
#include "rt_support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace datapump::rt {
namespace {

using namespace std::chrono_literals;
using testing::connect_chain;
using testing::fill;
using testing::holds;
using testing::make_port;
using testing::make_qos;
using testing::make_system;
using testing::manual_config;

class RtReclaim : public ::testing::Test {
protected:
    void SetUp() override {
        sys = make_system(manual_config(clock));
        ASSERT_NE(sys, nullptr);
        t0 = clock.now();
        src = make_port(*sys, "src", [this](upcall& up) {
            fill(up.data(), up.sequence());
            written.push_back(up.data().data());
        });
        snk = make_port(*sys, "snk", [this](upcall& up) {
            sink_wrong += holds(up.data(), up.sequence()) ? 0 : 1;
            if (keep_sequences.contains(up.sequence())) {
                kept.push_back(up.keep());
            }
        });
    }

    manual_clock clock;
    std::unique_ptr<system> sys;
    time_point t0{};
    std::set<std::uint64_t> keep_sequences;
    std::vector<held_buffer> kept;
    std::vector<const std::byte*> written;  // the address of each buffer, by sequence
    int sink_wrong = 0;
    port src;
    port snk;
};

TEST_F(RtReclaim, AnOverdueLoanIsReclaimedWhereItIs) {
    // One buffer: buffer 1 (at 10 ms, buffer 0's loan deadline) needs it back.
    keep_sequences = {0};
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 0ns, late_policy::deliver_late, 1));
    sys->run_until(t0 + 5ms);
    ASSERT_EQ(kept.size(), 1U);
    held_buffer& h = kept[0];
    ASSERT_TRUE(h);
    const std::byte* address = h.data().data();
    EXPECT_EQ(address, written[0]);
    EXPECT_EQ(h.data().size(), 4096U);
    EXPECT_EQ(h.sequence(), 0U);
    EXPECT_FALSE(h.reclaimed());
    EXPECT_EQ(c.stats().buffers_free, 0U);
    sys->run_until(t0 + 10ms);
    EXPECT_TRUE(h.reclaimed());
    EXPECT_EQ(h.data().data(), address);
    EXPECT_TRUE(holds(h.data(), 0));
    connection_stats s = c.stats();
    EXPECT_EQ(s.reclaims, 1U);
    EXPECT_EQ(s.starved, 0U);
    ASSERT_EQ(written.size(), 2U);
    EXPECT_NE(written[1], address);  // the pool's buffer now lives elsewhere
    // The pool keeps reusing its buffer; the held bytes do not change.
    sys->run_until(t0 + 60ms);
    ASSERT_EQ(written.size(), 7U);
    for (std::size_t k = 1; k < written.size(); ++k) {
        EXPECT_EQ(written[k], written[1]) << "buffer " << k;
    }
    EXPECT_TRUE(holds(h.data(), 0));
    EXPECT_EQ(h.data().data(), address);
    EXPECT_EQ(sink_wrong, 0);
    EXPECT_EQ(c.stats().completed, 7U);
    EXPECT_EQ(c.stats().reclaims, 1U);
    h.release();
    EXPECT_FALSE(h);
    EXPECT_TRUE(h.data().empty());
    EXPECT_FALSE(h.reclaimed());
    EXPECT_EQ(c.stats().buffers_free, 1U);
}

TEST_F(RtReclaim, ReclaimAtTheLoanDeadlineWithABufferToSpare) {
    // Two buffers, buffers 1 and 2 kept: buffer 2 takes the spare one, and buffer 1's loan is
    // reclaimed at its deadline (20 ms) without anything starving; buffer 3 then gets the pool's
    // buffer back, at a new address.
    keep_sequences = {1, 2};
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 0ns, late_policy::deliver_late, 2));
    sys->run_until(t0 + 15ms);
    ASSERT_EQ(kept.size(), 1U);
    EXPECT_EQ(c.stats().buffers_free, 1U);
    sys->run_until(t0 + 20ms);
    ASSERT_EQ(kept.size(), 2U);
    EXPECT_TRUE(kept[0].reclaimed());
    EXPECT_FALSE(kept[1].reclaimed());
    EXPECT_EQ(c.stats().reclaims, 1U);
    sys->run_until(t0 + 200ms);
    EXPECT_TRUE(kept[1].reclaimed());
    ASSERT_EQ(written.size(), 21U);
    for (std::size_t k = 3; k < written.size(); ++k) {
        EXPECT_NE(written[k], kept[0].data().data()) << "buffer " << k;
        EXPECT_NE(written[k], kept[1].data().data()) << "buffer " << k;
    }
    EXPECT_EQ(kept[0].data().data(), written[1]);
    EXPECT_EQ(kept[1].data().data(), written[2]);
    EXPECT_TRUE(holds(kept[0].data(), 1));
    EXPECT_TRUE(holds(kept[1].data(), 2));
    connection_stats s = c.stats();
    EXPECT_EQ(s.reclaims, 2U);
    EXPECT_EQ(s.starved, 0U);
    EXPECT_EQ(s.buffers_free, 2U);
    EXPECT_EQ(sink_wrong, 0);
}

TEST_F(RtReclaim, ALoanGivenBackInTimeIsNotReclaimed) {
    keep_sequences = {0, 1};
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 0ns, late_policy::deliver_late, 2));
    sys->run_until(t0 + 5ms);
    ASSERT_EQ(kept.size(), 1U);
    EXPECT_EQ(c.stats().buffers_free, 1U);
    kept[0].release();
    EXPECT_EQ(c.stats().buffers_free, 2U);
    sys->run_until(t0 + 15ms);
    ASSERT_EQ(kept.size(), 2U);
    kept[1].release();
    sys->run_until(t0 + 100ms);
    EXPECT_EQ(c.stats().reclaims, 0U);
    EXPECT_EQ(c.stats().starved, 0U);
    EXPECT_EQ(c.stats().buffers_free, 2U);
    EXPECT_EQ(sink_wrong, 0);
}

TEST_F(RtReclaim, TwoKeepsOfOneBufferShareTheLoan) {
    // The sink keeps buffers 0 and 2 twice each: one loan per buffer; buffer 0 comes back with the
    // second release, buffer 2 is reclaimed under both handles at once.
    auto one = make_port(*sys, "one", [](upcall& up) { fill(up.data(), up.sequence()); });
    auto twice = make_port(*sys, "twice", [this](upcall& up) {
        if (up.sequence() == 0 || up.sequence() == 2) {
            kept.push_back(up.keep());
            kept.push_back(up.keep());
        }
    });
    auto c = connect_chain(*sys, {"one", "twice"}, make_qos(100, 0ns, late_policy::deliver_late, 2));
    sys->run_until(t0 + 5ms);
    ASSERT_EQ(kept.size(), 2U);
    EXPECT_EQ(kept[0].data().data(), kept[1].data().data());
    kept[0].release();
    EXPECT_EQ(c.stats().buffers_free, 1U);
    kept[1].release();
    EXPECT_EQ(c.stats().buffers_free, 2U);
    sys->run_until(t0 + 35ms);
    ASSERT_EQ(kept.size(), 4U);
    EXPECT_TRUE(kept[2].reclaimed());
    EXPECT_TRUE(kept[3].reclaimed());
    EXPECT_EQ(kept[2].data().data(), kept[3].data().data());
    EXPECT_TRUE(holds(kept[3].data(), 2));
    EXPECT_EQ(c.stats().reclaims, 1U);
    // A moved handle: the new one holds the loan, the old one nothing.
    held_buffer moved = std::move(kept[2]);
    EXPECT_FALSE(kept[2]);
    EXPECT_TRUE(kept[2].data().empty());
    kept[3].release();
    EXPECT_TRUE(holds(moved.data(), 2));
}

TEST_F(RtReclaim, ALoanKeptByAMiddleStageWaitsForTheChainToFinish) {
    // Stage 1 keeps buffer 0; stage 2 takes 15 ms, past the loan's deadline (10 ms): the buffer is
    // still in the chain, so it is reclaimed only once the chain is done with it.
    auto a = make_port(*sys, "a", [](upcall& up) { fill(up.data(), up.sequence()); });
    auto b = make_port(*sys, "b", [this](upcall& up) {
        if (up.sequence() == 0) {
            kept.push_back(up.keep());
        }
    });
    const std::byte* seen_by_c = nullptr;
    bool reclaimed_during_c = true;
    auto last = make_port(*sys, "c", [&](upcall& up) {
        if (up.sequence() == 0) {
            clock.advance(15ms);
            seen_by_c = up.data().data();
            reclaimed_during_c = kept[0].reclaimed();
        }
    });
    auto c = connect_chain(*sys, {"a", "b", "c"}, make_qos(100, 0ns, late_policy::deliver_late, 2));
    sys->run_until(t0 + 14ms);
    ASSERT_EQ(kept.size(), 1U);
    EXPECT_FALSE(reclaimed_during_c);
    EXPECT_EQ(seen_by_c, kept[0].data().data());
    EXPECT_TRUE(kept[0].reclaimed());  // at 15 ms, when the chain let go of it
    EXPECT_TRUE(holds(kept[0].data(), 0));
    EXPECT_EQ(c.stats().reclaims, 1U);
    EXPECT_EQ(c.stats().late, 1U);
}

TEST_F(RtReclaim, HeldBuffersOutliveTheirConnectionAndTheSystem) {
    keep_sequences = {0, 1};
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 30ms));
    sys->run_until(t0 + 15ms);
    ASSERT_EQ(kept.size(), 2U);
    c.disconnect();
    EXPECT_TRUE(holds(kept[0].data(), 0));
    EXPECT_TRUE(holds(kept[1].data(), 1));
    src.close();
    snk.close();
    sys.reset();
    EXPECT_TRUE(holds(kept[0].data(), 0));
    EXPECT_TRUE(holds(kept[1].data(), 1));
    EXPECT_FALSE(kept[0].reclaimed());
    kept.clear();
}

TEST_F(RtReclaim, HeldBufferMovedToAndReleasedOnAnotherThread) {
    keep_sequences = {0, 1};
    auto c = connect_chain(*sys, {"src", "snk"}, make_qos(100, 0ns, late_policy::deliver_late, 2));
    sys->run_until(t0 + 15ms);  // buffer 0's loan was reclaimed at its deadline (10 ms)
    ASSERT_EQ(kept.size(), 2U);
    ASSERT_TRUE(kept[0].reclaimed());
    ASSERT_FALSE(kept[1].reclaimed());
    std::atomic<int> good{0};
    std::thread reader([&good, first = std::move(kept[0]), second = std::move(kept[1])]() mutable {
        good += holds(first.data(), 0) ? 1 : 0;
        good += holds(second.data(), 1) ? 1 : 0;
        first.release();   // reclaimed: its own memory goes
        second.release();  // a loan: the buffer goes back to the pool
    });
    reader.join();
    EXPECT_EQ(good.load(), 2);
    EXPECT_EQ(c.stats().buffers_free, 2U);
    sys->run_until(t0 + 100ms);
    EXPECT_EQ(c.stats().reclaims, 1U);
    EXPECT_EQ(sink_wrong, 0);
}

TEST_F(RtReclaim, HeldBuffersReleasedOnAnotherThreadWhileTheSystemRuns) {
    // Every buffer is kept and handed to a thread that releases it, while run_until goes on.
    std::mutex mutex;
    std::vector<held_buffer> handed;
    std::atomic<bool> done{false};
    std::atomic<int> wrong{0};
    std::atomic<int> released{0};
    auto hand = make_port(*sys, "hand", [&](upcall& up) {
        held_buffer h = up.keep();
        std::lock_guard lock(mutex);
        handed.push_back(std::move(h));
    });
    auto fill_port = make_port(*sys, "fill", [](upcall& up) { fill(up.data(), up.sequence()); });
    std::thread releaser([&] {
        while (true) {
            std::vector<held_buffer> batch;
            {
                std::lock_guard lock(mutex);
                batch.swap(handed);
            }
            for (held_buffer& h : batch) {
                wrong += holds(h.data(), h.sequence()) ? 0 : 1;
                h.release();
                ++released;
            }
            if (batch.empty() && done.load()) {
                break;
            }
            std::this_thread::yield();
        }
    });
    auto c = connect_chain(*sys, {"fill", "hand"}, make_qos(1000, 4ms, late_policy::deliver_late, 8));
    for (int ms = 1; ms <= 2000; ++ms) {
        sys->run_until(t0 + std::chrono::milliseconds(ms));
    }
    done = true;
    releaser.join();
    connection_stats s = c.stats();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(static_cast<std::uint64_t>(released.load()), s.completed);
    EXPECT_EQ(s.completed + s.starved, 2001U);
    EXPECT_EQ(s.buffers_free, 8U);
    EXPECT_LE(s.buffers_free, s.buffers);
}

// ---- the pool alone ----

// A stage keeps a buffer and hands the loan to another thread, which drops it at the moment the
// pipeline finishes with the buffer. Whichever comes last must put the buffer back, exactly once.
TEST(RtPool, ALoanDroppedWhileThePipelineFinishesFreesTheBufferOnce) {
    auto made = detail::pool::create(detail::pool_options{.buffer_size = 4096, .count = 2, .lock_memory = false});
    ASSERT_TRUE(made.has_value());
    std::shared_ptr<detail::pool> p = *made;
    std::atomic<int> go{0};
    std::shared_ptr<detail::loan_record> handed;
    std::atomic<bool> stop{false};
    std::thread dropper([&] {
        int round = 1;
        while (true) {
            while (go.load(std::memory_order_acquire) != round) {
                if (stop.load(std::memory_order_acquire)) {
                    return;
                }
            }
            handed.reset();  // the last reference: the loan ends here
            go.store(-round, std::memory_order_release);
            ++round;
        }
    });
    int bad_round = 0;
    for (int round = 1; round <= 200'000 && bad_round == 0; ++round) {
        auto slot = p->acquire();
        if (!slot) {
            bad_round = round;
            break;
        }
        handed = p->keep(slot->index, 4096, static_cast<std::uint64_t>(round), time_point::max());
        go.store(round, std::memory_order_release);
        p->finish(slot->index);
        while (go.load(std::memory_order_acquire) != -round) {
        }
        if (p->free_count() != 2) {
            bad_round = round;
        }
    }
    stop = true;
    dropper.join();
    EXPECT_EQ(bad_round, 0) << "free count " << p->free_count() << " of 2 after round " << bad_round;
}

TEST(RtPool, SlotsArePagesAndCountsAreChecked) {
    auto bad = detail::pool::create(detail::pool_options{.buffer_size = 0, .count = 2, .lock_memory = false});
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, errc::invalid_argument);
    auto made = detail::pool::create(detail::pool_options{.buffer_size = 5000, .count = 3, .lock_memory = true});
    ASSERT_TRUE(made.has_value());
    std::shared_ptr<detail::pool> p = *made;
    EXPECT_EQ(p->buffer_size(), 5000U);
    EXPECT_EQ(p->slot_size() % 4096, 0U);
    EXPECT_GE(p->slot_size(), 5000U);
    EXPECT_EQ(p->bytes(), 3 * p->slot_size());
    EXPECT_EQ(p->free_count(), 3U);
    auto s0 = p->acquire();
    auto s1 = p->acquire();
    auto s2 = p->acquire();
    ASSERT_TRUE(s0 && s1 && s2);
    EXPECT_EQ(s0->index, 0U);
    EXPECT_FALSE(p->acquire().has_value());
    p->finish(s1->index);
    EXPECT_EQ(p->free_count(), 1U);
    EXPECT_EQ(p->acquire()->index, 1U);
}

}  // namespace
}  // namespace datapump::rt
