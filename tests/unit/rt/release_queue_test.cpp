// The scheduler's release queue (src/rt/release_queue.hpp) pops entries soonest first, equal
// instants by the lower connection id whatever the push order, stays ordered under interleaved
// pushes and pops (checked against a sorted reference), and erase removes one connection's
// entries only.
#include "release_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

namespace datapump::rt::detail {
namespace {

using namespace std::chrono_literals;

// n connection records with ids 1..n (the queue reads only the id).
std::vector<std::unique_ptr<connection_state>> make_connections(std::size_t n) {
    std::vector<std::unique_ptr<connection_state>> out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(std::make_unique<connection_state>());
        out.back()->id = i + 1;
    }
    return out;
}

using key = std::tuple<time_point::rep, std::uint64_t>;  // (instant, id)

key key_of(const release_queue::entry& e) { return {e.at.time_since_epoch().count(), e.id}; }

std::vector<key> drain(release_queue& q) {
    std::vector<key> out;
    while (!q.empty()) {
        out.push_back(key_of(q.pop()));
    }
    return out;
}

TEST(RtReleaseQueue, SoonestFirstThenLowerIdWhateverThePushOrder) {
    auto cs = make_connections(6);
    const time_point t0{};
    // (instant offset, connection index): three share 5 ms, two share 1 ms.
    std::vector<std::pair<duration, std::size_t>> pushes = {{5ms, 4}, {1ms, 2}, {5ms, 0}, {9ms, 1},
                                                            {1ms, 5}, {5ms, 3}};
    const std::vector<key> want = {{(t0 + 1ms).time_since_epoch().count(), 3}, {(t0 + 1ms).time_since_epoch().count(), 6},
                                   {(t0 + 5ms).time_since_epoch().count(), 1}, {(t0 + 5ms).time_since_epoch().count(), 4},
                                   {(t0 + 5ms).time_since_epoch().count(), 5}, {(t0 + 9ms).time_since_epoch().count(), 2}};
    std::sort(pushes.begin(), pushes.end());
    do {
        release_queue q;
        for (const auto& [at, i] : pushes) {
            q.push(t0 + at, cs[i].get());
        }
        ASSERT_EQ(q.size(), pushes.size());
        EXPECT_EQ(q.top().at, t0 + 1ms);
        EXPECT_EQ(q.top().c, cs[2].get());
        ASSERT_EQ(drain(q), want);
    } while (std::next_permutation(pushes.begin(), pushes.end()));
}

TEST(RtReleaseQueue, InterleavedPushesAndPopsMatchASortedReference) {
    auto cs = make_connections(64);
    std::mt19937_64 rng(16);
    release_queue q;
    std::vector<key> reference;  // kept sorted, soonest first
    const time_point t0{};
    for (int round = 0; round < 20000; ++round) {
        if (reference.empty() || rng() % 3 != 0) {
            // Instants from a small range, so that ties are frequent.
            auto at = t0 + std::chrono::microseconds(rng() % 50);
            connection_state* c = cs[rng() % cs.size()].get();
            q.push(at, c);
            key k{at.time_since_epoch().count(), c->id};
            reference.insert(std::upper_bound(reference.begin(), reference.end(), k), k);
        } else {
            ASSERT_EQ(key_of(q.top()), reference.front());
            release_queue::entry e = q.pop();
            ASSERT_EQ(key_of(e), reference.front());
            ASSERT_EQ(e.c->id, e.id);
            reference.erase(reference.begin());
        }
        ASSERT_EQ(q.size(), reference.size());
    }
    EXPECT_EQ(drain(q), reference);
}

TEST(RtReleaseQueue, EraseRemovesOneConnectionsEntriesOnly) {
    auto cs = make_connections(4);
    release_queue q;
    const time_point t0{};
    for (std::size_t i = 0; i < 4; ++i) {
        q.push(t0 + std::chrono::milliseconds(10 - i), cs[i].get());
        q.push(t0 + std::chrono::milliseconds(20 + i), cs[i].get());
    }
    q.erase(cs[3].get());  // the soonest (7 ms) and one later entry
    q.erase(cs[3].get());  // nothing left of it: a no-op
    ASSERT_EQ(q.size(), 6U);
    std::vector<std::uint64_t> ids;
    while (!q.empty()) {
        ids.push_back(q.pop().id);
    }
    EXPECT_EQ(ids, (std::vector<std::uint64_t>{3, 2, 1, 1, 2, 3}));
}

}  // namespace
}  // namespace datapump::rt::detail
