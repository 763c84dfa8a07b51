// Pipelines of 3 and 5 stages on a manual clock: every stage of a buffer sees the same address
// (zero copies) and the bytes the stage before left there; the pool's free count comes back to
// full at the end (with drops, and with keeps released); the delay bound is counted per policy.
#include "rt_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
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

constexpr std::byte flip{0x5a};

// What the stages of one pipeline saw.
struct trace {
    std::map<std::uint64_t, std::vector<const std::byte*>> addresses;  // per sequence, per stage
    std::map<std::uint64_t, std::vector<unsigned>> stages;              // per sequence
    std::map<std::uint64_t, std::vector<std::size_t>> lengths;          // per sequence, per stage
    int wrong_bytes = 0;
};

// Stage 0 writes buffer k's pattern (and ends the stream at `last`); stage 1 checks it and flips
// every byte in place (odd k: also lowers the length to 1000); later stages check the flipped
// bytes. `also(stage)` runs after, for tests that add lateness.
std::vector<handler> pipeline_handlers(unsigned n, trace& t, std::uint64_t last,
                                       std::function<void(upcall&)> also = {}) {
    std::vector<handler> out;
    for (unsigned i = 0; i < n; ++i) {
        out.emplace_back([&t, i, last, also](upcall& up) {
            EXPECT_EQ(up.stage(), i);
            std::span<std::byte> bytes = up.data();
            t.addresses[up.sequence()].push_back(bytes.data());
            t.stages[up.sequence()].push_back(i);
            t.lengths[up.sequence()].push_back(up.length());
            std::uint64_t k = up.sequence();
            if (i == 0) {
                fill(bytes, k);
                if (k == last) {
                    up.end_of_stream();
                }
            } else if (i == 1) {
                t.wrong_bytes += holds(bytes, k) ? 0 : 1;
                for (std::byte& b : bytes) {
                    b ^= flip;
                }
                if (k % 2 == 1) {
                    up.set_length(1000);
                }
            } else {
                for (std::size_t j = 0; j < bytes.size(); ++j) {
                    if ((bytes[j] ^ flip) != datapump::testing::pattern_byte(k, j)) {
                        ++t.wrong_bytes;
                        break;
                    }
                }
            }
            if (also) {
                also(up);
            }
        });
    }
    return out;
}

class RtPipeline : public ::testing::TestWithParam<unsigned> {
protected:
    void SetUp() override {
        sys = make_system(manual_config(clock));
        ASSERT_NE(sys, nullptr);
        t0 = clock.now();
    }
    // Opens ports "<prefix>0" .. "<prefix>n-1" with `fns`; returns their names for connect.
    std::vector<std::string_view> open_chain(const std::string& prefix, std::vector<handler> fns) {
        for (std::size_t i = 0; i < fns.size(); ++i) {
            names.push_back(std::make_unique<std::string>(prefix + std::to_string(i)));
            ports.push_back(make_port(*sys, *names.back(), std::move(fns[i])));
        }
        std::vector<std::string_view> chain;
        for (std::size_t i = names.size() - fns.size(); i < names.size(); ++i) {
            chain.emplace_back(*names[i]);
        }
        return chain;
    }
    connection connect(std::span<const std::string_view> chain, const qos& q) {
        auto c = sys->connect(chain, q);
        EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().reason);
        return c ? std::move(*c) : connection{};
    }

    manual_clock clock;
    std::unique_ptr<system> sys;
    time_point t0{};
    std::vector<std::unique_ptr<std::string>> names;
    std::vector<port> ports;
};

TEST_P(RtPipeline, EveryStageSeesTheSameBufferAndTheBytesBeforeIt) {
    const unsigned n = GetParam();
    constexpr std::uint64_t buffers = 12;
    trace t;
    auto chain = open_chain("s", pipeline_handlers(n, t, buffers - 1));
    auto c = connect(chain, make_qos(1000, 0ns, late_policy::deliver_late, 3, 8192));
    ASSERT_TRUE(c);
    sys->run_until(t0 + 1s);
    ASSERT_TRUE(c.finished());
    ASSERT_EQ(t.addresses.size(), buffers);
    std::set<const std::byte*> distinct;
    for (const auto& [k, addresses] : t.addresses) {
        ASSERT_EQ(addresses.size(), n) << "buffer " << k;
        EXPECT_TRUE(std::all_of(addresses.begin(), addresses.end(),
                                [&addresses](const std::byte* a) { return a == addresses.front(); }))
            << "buffer " << k << " moved between stages";
        distinct.insert(addresses.front());
        std::vector<unsigned> order(n);
        for (unsigned i = 0; i < n; ++i) {
            order[i] = i;
        }
        EXPECT_EQ(t.stages[k], order);
        // The source gets the whole buffer; an odd buffer is 1000 bytes from stage 2 on.
        const std::vector<std::size_t>& lengths = t.lengths[k];
        EXPECT_EQ(lengths[0], 8192U);
        EXPECT_EQ(lengths[1], 8192U);
        for (unsigned i = 2; i < n; ++i) {
            EXPECT_EQ(lengths[i], k % 2 == 1 ? 1000U : 8192U) << "buffer " << k << " stage " << i;
        }
    }
    EXPECT_EQ(t.wrong_bytes, 0);
    EXPECT_LE(distinct.size(), 3U);  // the pool's three buffers, reused
    connection_stats s = c.stats();
    EXPECT_EQ(s.completed, buffers);
    EXPECT_EQ(s.bytes, 6U * 8192U + 6U * 1000U);
    EXPECT_EQ(s.misses(), 0U);
    EXPECT_EQ(s.buffers, 3U);
    EXPECT_EQ(s.buffers_free, 3U);
}

TEST_P(RtPipeline, TwoPipelinesNeverShareABuffer) {
    const unsigned n = GetParam();
    trace ta;
    trace tb;
    auto chain_a = open_chain("a", pipeline_handlers(n, ta, 9));
    auto chain_b = open_chain("b", pipeline_handlers(n, tb, 9));
    auto a = connect(chain_a, make_qos(500, 0ns, late_policy::deliver_late, 2));
    auto b = connect(chain_b, make_qos(500, 0ns, late_policy::deliver_late, 2));
    ASSERT_TRUE(a && b);
    sys->run_until(t0 + 1s);
    ASSERT_TRUE(a.finished() && b.finished());
    std::set<const std::byte*> in_a;
    for (const auto& entry : ta.addresses) {
        in_a.insert(entry.second.begin(), entry.second.end());
    }
    for (const auto& entry : tb.addresses) {
        for (const std::byte* p : entry.second) {
            EXPECT_FALSE(in_a.contains(p));
        }
    }
    EXPECT_EQ(ta.wrong_bytes + tb.wrong_bytes, 0);
    EXPECT_EQ(a.stats().buffers_free, 2U);
    EXPECT_EQ(b.stats().buffers_free, 2U);
}

TEST_P(RtPipeline, DropsGiveTheBufferBack) {
    // Stage 1 takes 11 ms with every third buffer: the next stage would start past the deadline.
    const unsigned n = GetParam();
    trace t;
    auto chain = open_chain("s", pipeline_handlers(n, t, 8, [this](upcall& up) {
                                if (up.stage() == 1 && up.sequence() % 3 == 0) {
                                    clock.advance(11ms);
                                }
                            }));
    auto c = connect(chain, make_qos(100, 10ms, late_policy::drop, 2));
    ASSERT_TRUE(c);
    sys->run_until(t0 + 1s);
    ASSERT_TRUE(c.finished());
    for (const auto& [k, stages] : t.stages) {
        EXPECT_EQ(stages.size(), k % 3 == 0 ? 2U : n) << "buffer " << k;
    }
    connection_stats s = c.stats();
    EXPECT_EQ(s.dropped, 3U);
    EXPECT_EQ(s.completed, 6U);
    EXPECT_EQ(s.late, 0U);
    EXPECT_EQ(s.starved, 0U);
    EXPECT_EQ(s.buffers_free, s.buffers);
    EXPECT_EQ(t.wrong_bytes, 0);
}

TEST_P(RtPipeline, KeptBuffersReleasedInTimeGoBackToThePool) {
    // Stage 1 keeps every buffer and lets the one before go (its loan is due at 2 periods):
    // nothing is reclaimed, nothing starves, and the pool ends full.
    const unsigned n = GetParam();
    trace t;
    std::deque<held_buffer> held;
    int held_wrong = 0;
    std::size_t lowest_free = 3;
    connection* conn = nullptr;
    auto chain = open_chain("s", pipeline_handlers(n, t, 9, [&](upcall& up) {
                                if (up.stage() != 1) {
                                    return;
                                }
                                held.push_back(up.keep());
                                EXPECT_EQ(held.back().data().data(), up.data().data());
                                lowest_free = std::min(lowest_free, conn->stats().buffers_free);
                                while (held.size() > 1) {
                                    // Stage 1 flipped it and lowered odd lengths; the bytes stand.
                                    const held_buffer& h = held.front();
                                    for (std::size_t j = 0; j < h.data().size(); ++j) {
                                        if ((h.data()[j] ^ flip) != datapump::testing::pattern_byte(h.sequence(), j)) {
                                            ++held_wrong;
                                            break;
                                        }
                                    }
                                    held.pop_front();
                                }
                            }));
    auto c = connect(chain, make_qos(100, 20ms, late_policy::deliver_late, 3));
    ASSERT_TRUE(c);
    conn = &c;
    sys->run_until(t0 + 95ms);  // buffer 9 at 90 ms; its loan is due at 110 ms
    ASSERT_TRUE(c.finished());
    ASSERT_EQ(held.size(), 1U);
    EXPECT_EQ(held.front().sequence(), 9U);
    EXPECT_FALSE(held.front().reclaimed());
    connection_stats s = c.stats();
    EXPECT_EQ(s.buffers_free, 2U);  // the last one is still held
    held.clear();
    s = c.stats();
    EXPECT_EQ(s.buffers_free, 3U);
    EXPECT_EQ(s.reclaims, 0U);
    EXPECT_EQ(s.starved, 0U);
    EXPECT_EQ(s.completed, 10U);
    EXPECT_EQ(lowest_free, 1U);  // one in the chain, one held
    sys->run_until(t0 + 1s);
    EXPECT_EQ(c.stats().reclaims, 0U);
    EXPECT_EQ(held_wrong, 0);
    EXPECT_EQ(t.wrong_bytes, 0);
}

TEST_P(RtPipeline, TheDelayBoundIsCountedPerPolicy) {
    // Stage n-2 takes 12 ms with buffer 1 (the last stage would start past its deadline); the
    // last stage takes 11 ms with buffer 3 (it starts in time and ends late).
    const unsigned n = GetParam();
    for (late_policy policy : {late_policy::deliver_late, late_policy::drop}) {
        SCOPED_TRACE(policy == late_policy::drop ? "drop" : "deliver_late");
        trace t;
        auto chain = open_chain(policy == late_policy::drop ? "d" : "l",
                                pipeline_handlers(n, t, 5, [this, n](upcall& up) {
                                    if (up.stage() == n - 2 && up.sequence() == 1) {
                                        clock.advance(12ms);
                                    }
                                    if (up.stage() == n - 1 && up.sequence() == 3) {
                                        clock.advance(11ms);
                                    }
                                }));
        auto c = connect(chain, make_qos(100, 10ms, policy));
        ASSERT_TRUE(c);
        sys->run_until(clock.now() + 1s);
        ASSERT_TRUE(c.finished());
        connection_stats s = c.stats();
        // Buffer 1 ends 12 ms after its ideal instant when delivered; dropped, it does not end.
        EXPECT_EQ(s.max_response, policy == late_policy::drop ? 11ms : 12ms);
        if (policy == late_policy::drop) {
            EXPECT_EQ(t.stages[1].size(), n - 1);
            EXPECT_EQ(s.dropped, 1U);
            EXPECT_EQ(s.late, 1U);
            EXPECT_EQ(s.completed, 5U);
        } else {
            EXPECT_EQ(t.stages[1].size(), n);
            EXPECT_EQ(s.dropped, 0U);
            EXPECT_EQ(s.late, 2U);
            EXPECT_EQ(s.completed, 6U);
        }
        EXPECT_EQ(t.stages[3].size(), n);
        EXPECT_EQ(s.misses(), 2U);
        EXPECT_EQ(s.buffers_free, s.buffers);
        EXPECT_EQ(t.wrong_bytes, 0);
    }
}

INSTANTIATE_TEST_SUITE_P(Stages, RtPipeline, ::testing::Values(3U, 5U),
                         [](const ::testing::TestParamInfo<unsigned>& p) {
                             return std::to_string(p.param) + "_stages";
                         });

}  // namespace
}  // namespace datapump::rt
