// Stress for the command ring (ipc/internal/ring.hpp): one producer thread and one consumer thread through a
// small ring, for each wait strategy, checking that every value arrives once and in order. Meant for the TSan
// build. Like a real slot, each value comes with a payload in plain (non-atomic) memory that the producer writes
// before push() and the consumer reads after pop(): TSan then checks both SYNC POINTs, the tail's release/acquire
// (payload visible to the consumer) and the head's (consumer done reading before the producer rewrites it). A lost
// doorbell wake-up shows as a run that misses its deadline.
#include "datapump/ipc/internal/ring.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace datapump::ipc::internal {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t capacity = 64;
// Start below 2^32 so that every run crosses the index wrap early.
constexpr std::uint32_t start_index = std::numeric_limits<std::uint32_t>::max() - 1000;
// Far above the expected run time (seconds under TSan on 2 cores): reaching it means a lost wake-up.
constexpr auto deadline = 60s;

// Value v's payload lives at v % payload_slots. Twice the capacity: when the producer may push v it has seen the
// consumer's head pass v - capacity, i.e. the consumer has finished with v - payload_slots.
constexpr std::uint32_t payload_slots = 2 * capacity;

struct test_ring {
    test_ring() : header(std::make_unique<ring_header>()), entries(capacity, 0), payload(payload_slots, 0) {
        header->head.store(start_index, std::memory_order_relaxed);
        header->tail.store(start_index, std::memory_order_relaxed);
    }
    [[nodiscard]] ring_producer producer() { return {header.get(), entries.data(), capacity}; }
    [[nodiscard]] ring_consumer consumer() { return {header.get(), entries.data(), capacity}; }

    std::unique_ptr<ring_header> header;
    std::vector<std::uint32_t> entries;
    std::vector<std::uint32_t> payload;   // plain memory on purpose: TSan must see it ordered by the ring
};

struct consumed {
    std::uint32_t in_order = 0;   // values received in order before the first wrong one (or the end)
    bool corrupt = false;
    bool payload_wrong = false;
    std::uint32_t stops = 0;      // stop requests honoured (stop/restart test)
};

// Pushes 0..count-1, retrying on full. `pause_every` > 0 makes the producer idle now and then so that the
// consumer empties the ring and goes to sleep. Returns false on corrupt or when abandoned.
bool produce(ring_producer p, std::vector<std::uint32_t>& payload, std::uint32_t count, std::uint32_t pause_every,
             const std::atomic<bool>& abandon) {
    std::minstd_rand rng(12345);
    for (std::uint32_t v = 0; v < count; ++v) {
        payload[v % payload_slots] = v;
        for (std::uint32_t attempt = 0;; ++attempt) {
            const ring_status s = p.push(v);
            if (s == ring_status::ok) {
                break;
            }
            if (s != ring_status::full || abandon.load(std::memory_order_relaxed)) {
                return false;
            }
            // Two cores: let the consumer run rather than burn our time slice.
            if ((attempt & 15U) == 15U) {
                std::this_thread::yield();
            } else {
                cpu_relax();
            }
        }
        if (pause_every != 0 && rng() % pause_every == 0) {
            // Up to some tens of microseconds, past spin_for: the consumer drains the ring and goes to sleep.
            // Pauses, not yields: on a loaded machine a yield can hand a whole time slice to another process.
            for (std::uint32_t i = 0, n = static_cast<std::uint32_t>(rng() % 1000); i < n; ++i) {
                cpu_relax();
            }
        }
    }
    return true;
}

struct run_options {
    wait_policy policy;
    std::uint32_t count;
    std::uint32_t pause_every;  // producer idles about once per this many values; 0 never
    std::uint32_t stops;        // stop + wake() requests from a third thread, spread over the run
};

struct run_report {
    consumed result;
    bool produced;
    bool timed_out;
    std::uint32_t stop_requests;
    bool stop_ignored;  // a stop request was not acknowledged in time
    std::uint32_t bells;  // doorbell rings: pushes that found the consumer asleep, plus wake() calls
};

// Between the consumer and the stopper thread: the consumer reports progress (every `step` values) and
// acknowledgements; the stopper blocks on them with time-outs. Blocking, not polling, so that on 2 cores the
// stopper takes no time from the two threads under test.
struct stop_pacing {
    explicit stop_pacing(const run_options& o) : step(o.stops == 0 ? o.count : std::max(1U, o.count / o.stops)) {}

    void report(std::uint32_t received_now, std::uint32_t acks_now) {
        {
            const std::lock_guard lock(mutex);
            received = received_now;
            acks = acks_now;
        }
        changed.notify_one();
    }

    const std::uint32_t step;
    std::mutex mutex;
    std::condition_variable changed;
    std::uint32_t received = 0;  // guarded by mutex
    std::uint32_t acks = 0;      // guarded by mutex
    bool abandoned = false;      // guarded by mutex
};

// Pops until `count` values arrived and `o.stops` stop requests were honoured, or the first out-of-order value,
// corrupt, or `abandon`. A raised `stop` is acknowledged (cleared and counted) and waiting restarts.
consumed consume(ring_consumer c, const std::vector<std::uint32_t>& payload, const run_options& o,
                 std::atomic<bool>& stop, stop_pacing& pacing, const std::atomic<bool>& abandon) {
    consumed out;
    while ((out.in_order < o.count || out.stops < o.stops) && !abandon.load(std::memory_order_relaxed)) {
        if (o.stops != 0 && stop.load(std::memory_order_acquire)) {
            stop.store(false, std::memory_order_release);
            ++out.stops;
            pacing.report(out.in_order, out.stops);
            continue;
        }
        const pop_result r = c.pop();
        if (r.status == ring_status::ok) {
            if (r.value != out.in_order) {
                return out;
            }
            if (payload[r.value % payload_slots] != r.value) {
                out.payload_wrong = true;
                return out;
            }
            ++out.in_order;
            if (o.stops != 0 && (out.in_order % pacing.step == 0 || out.in_order == o.count)) {
                pacing.report(out.in_order, out.stops);
            }
        } else if (r.status == ring_status::empty) {
            c.wait(o.policy, stop);
        } else {
            out.corrupt = true;
            return out;
        }
    }
    return out;
}

// Raises `stop`, wakes the consumer and waits for the acknowledgement, `o.stops` times; request i once the
// consumer has received i/stops of the values, so that the requests land throughout the run. Returns the requests
// made and whether one went unacknowledged for 5 s (or progress stalled for 5 s).
std::pair<std::uint32_t, bool> request_stops(const run_options& o, ring_header* header, std::atomic<bool>& stop,
                                             stop_pacing& pacing) {
    std::minstd_rand rng(777);
    std::uint32_t made = 0;
    while (made < o.stops) {
        const std::uint32_t due = static_cast<std::uint32_t>(std::uint64_t{o.count} * made / o.stops);
        {
            std::unique_lock lock(pacing.mutex);
            if (!pacing.changed.wait_for(lock, 5s, [&] { return pacing.received >= due || pacing.abandoned; })) {
                return {made, true};
            }
            if (pacing.abandoned) {
                return {made, false};
            }
        }
        // A little jitter, so that a request finds the consumer sometimes popping, sometimes spinning, sometimes
        // asleep.
        for (std::uint32_t i = 0, n = static_cast<std::uint32_t>(rng() % 1000); i < n; ++i) {
            cpu_relax();
        }
        // SYNC POINT: release pairs with the consumer's acquire load of stop; wake() then ends a wait in any phase.
        stop.store(true, std::memory_order_release);
        ring_consumer::wake(header);
        ++made;
        std::unique_lock lock(pacing.mutex);
        if (!pacing.changed.wait_for(lock, 5s, [&] { return pacing.acks >= made || pacing.abandoned; })) {
            return {made, true};
        }
    }
    return {made, false};
}

run_report run(const run_options& o) {
    test_ring ring;
    std::atomic<bool> stop{false};
    std::atomic<bool> abandon{false};
    stop_pacing pacing(o);
    const auto abandon_all = [&] {
        abandon.store(true);
        {
            const std::lock_guard lock(pacing.mutex);
            pacing.abandoned = true;
        }
        pacing.changed.notify_all();
    };

    auto producer = std::async(std::launch::async, [&] {
        return produce(ring.producer(), ring.payload, o.count, o.pause_every, abandon);
    });
    auto consumer = std::async(std::launch::async, [&] {
        return consume(ring.consumer(), ring.payload, o, stop, pacing, abandon);
    });
    auto stopper = std::async(std::launch::async, [&] {
        return request_stops(o, ring.header.get(), stop, pacing);
    });

    run_report report{};
    report.timed_out = consumer.wait_for(deadline) != std::future_status::ready;
    if (report.timed_out) {
        // Free every thread so that the test fails instead of hanging: the producer and the stopper see
        // `abandon`, the consumer sees it after the stop + wake.
        abandon_all();
        stop.store(true);
        ring_consumer::wake(ring.header.get());
    }
    report.result = consumer.get();
    // The producer may be stuck on a full ring nobody drains, the stopper on progress that will not come.
    abandon_all();
    report.produced = producer.get();
    const auto [requests, ignored] = stopper.get();
    report.stop_requests = requests;
    report.stop_ignored = ignored;
    report.bells = ring.header->bell.load();
    return report;
}

void check(const run_options& o, const run_report& r) {
    EXPECT_FALSE(r.timed_out) << "consumer did not finish within the deadline (lost wake-up?)";
    EXPECT_FALSE(r.result.corrupt);
    EXPECT_FALSE(r.result.payload_wrong) << "value " << r.result.in_order << " arrived before its payload";
    EXPECT_EQ(r.result.in_order, o.count) << "value " << r.result.in_order << " missing or out of order";
    EXPECT_TRUE(r.produced);
}

// Counts: millions for the polling strategies; the sleep strategy pays a futex wake for most values, so fewer.
// Under TSan on 2 idle cores the file runs in about 3 s; the spin run is the one that slows down (to ~20 s) when
// other processes take a core, since a spinning consumer sharing a core with its producer burns whole time slices.
TEST(ipc_ring_stress, spin_delivers_every_value_in_order) {
    const run_options o{{wait_strategy::spin, 0us}, 2'000'000, 0, 0};
    const run_report r = run(o);
    check(o, r);
    EXPECT_EQ(r.bells, 0U) << "a spinning consumer never sleeps, so nobody should ring";
}

TEST(ipc_ring_stress, spin_then_sleep_delivers_every_value_in_order) {
    // The producer idles now and then so that the consumer passes through the sleep phase too.
    const run_options o{{wait_strategy::spin_then_sleep, 2us}, 2'000'000, 1000, 0};
    const run_report r = run(o);
    check(o, r);
}

TEST(ipc_ring_stress, sleep_delivers_every_value_in_order) {
    const run_options o{{wait_strategy::sleep, 0us}, 200'000, 100, 0};
    const run_report r = run(o);
    check(o, r);
    // The producer's pauses leave the ring empty about 2,000 times; each time the consumer sleeps at once.
    EXPECT_GT(r.bells, 0U) << "the run never exercised the doorbell";
}

TEST(ipc_ring_stress, stop_and_restart_loses_nothing) {
    for (wait_strategy s : {wait_strategy::spin, wait_strategy::spin_then_sleep, wait_strategy::sleep}) {
        SCOPED_TRACE(static_cast<int>(s));
        const run_options o{{s, 2us}, 100'000, 50, 300};
        const run_report r = run(o);
        check(o, r);
        EXPECT_FALSE(r.stop_ignored) << "a stop + wake() did not end the consumer's wait within 5 s";
        EXPECT_EQ(r.stop_requests, o.stops);
        EXPECT_EQ(r.result.stops, o.stops);
    }
}

}  // namespace
}  // namespace datapump::ipc::internal
