#include "datapump/ipc/internal/ring.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <thread>
#include <vector>

namespace datapump::ipc::internal {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t u32_max = std::numeric_limits<std::uint32_t>::max();
constexpr auto time_limit = 5s;

// A ring in private memory. The entries are a vector of exactly `capacity` words so that ASan catches an index
// that escapes the mask.
struct local_ring {
    explicit local_ring(std::uint32_t capacity, std::uint32_t start = 0)
        : header(std::make_unique<ring_header>()), entries(capacity, 0), capacity_(capacity) {
        // The ends read the indices once, at construction: the header is set up before they exist.
        header->head.store(start, std::memory_order_relaxed);
        header->tail.store(start, std::memory_order_relaxed);
    }
    [[nodiscard]] ring_producer producer() { return {header.get(), entries.data(), capacity_}; }
    [[nodiscard]] ring_consumer consumer() { return {header.get(), entries.data(), capacity_}; }

    std::unique_ptr<ring_header> header;
    std::vector<std::uint32_t> entries;
    std::uint32_t capacity_;
};

// One page that faults on any access: an end given it as its entries proves, by not crashing, that it did not
// touch an entry.
class no_access_page {
public:
    no_access_page() {
        void* p = ::mmap(nullptr, page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            page_ = static_cast<std::uint32_t*>(p);
        }
    }
    ~no_access_page() {
        if (page_ != nullptr) {
            ::munmap(page_, page_size);
        }
    }
    no_access_page(const no_access_page&) = delete;
    no_access_page& operator=(const no_access_page&) = delete;
    [[nodiscard]] std::uint32_t* get() const { return page_; }

private:
    static constexpr std::size_t page_size = 4096;
    std::uint32_t* page_ = nullptr;
};

// Waits for `f` at most `limit`. A thread blocked in wait() would make the future's destructor block forever, so
// on time-out `unstick` (stop flag + wake) is called, and if even that does not free the thread the process
// aborts: the test fails, it never hangs.
template <typename T>
[[nodiscard]] bool finishes_within(std::future<T>& f, std::chrono::seconds limit,
                                   const std::function<void()>& unstick) {
    if (f.wait_for(limit) == std::future_status::ready) {
        return true;
    }
    unstick();
    if (f.wait_for(limit) != std::future_status::ready) {
        std::fprintf(stderr, "ring_test: a thread stays blocked after stop + wake; aborting\n");
        std::abort();
    }
    return false;
}

// Polls until the consumer says it is about to sleep on the bell, so that the next push must take the wake path.
[[nodiscard]] bool becomes_sleeping(const ring_header& header) {
    const auto until = std::chrono::steady_clock::now() + time_limit;
    while (header.sleeping.load(std::memory_order_acquire) == 0) {
        if (std::chrono::steady_clock::now() >= until) {
            return false;
        }
        std::this_thread::yield();
    }
    return true;
}

// Pops one value, waiting with `policy` while the ring is empty. Returns the value, or nothing if stopped or
// corrupt. `entered_wait`, if given, is set just before the first wait() so that a test can push only once the
// consumer is really waiting.
std::optional<std::uint32_t> pop_waiting(ring_consumer& c, const wait_policy& policy, const std::atomic<bool>& stop,
                                         std::atomic<bool>* entered_wait = nullptr) {
    for (;;) {
        const pop_result r = c.pop();
        if (r.status == ring_status::ok) {
            return r.value;
        }
        if (r.status != ring_status::empty || stop.load(std::memory_order_acquire)) {
            return std::nullopt;
        }
        if (entered_wait != nullptr) {
            entered_wait->store(true, std::memory_order_release);
        }
        c.wait(policy, stop);
    }
}

// Polls `flag` until set or the time limit.
[[nodiscard]] bool becomes_true(const std::atomic<bool>& flag) {
    const auto until = std::chrono::steady_clock::now() + time_limit;
    while (!flag.load(std::memory_order_acquire)) {
        if (std::chrono::steady_clock::now() >= until) {
            return false;
        }
        std::this_thread::yield();
    }
    return true;
}

// --- order, full, empty ------------------------------------------------------------------------------------------

TEST(ring, pops_in_push_order_then_empty) {
    local_ring r(8);
    auto p = r.producer();
    auto c = r.consumer();
    EXPECT_EQ(c.pop().status, ring_status::empty);
    for (std::uint32_t v : {7U, 0U, 42U, u32_max, 3U}) {
        ASSERT_EQ(p.push(v), ring_status::ok);
    }
    for (std::uint32_t v : {7U, 0U, 42U, u32_max, 3U}) {
        const pop_result got = c.pop();
        ASSERT_EQ(got.status, ring_status::ok);
        EXPECT_EQ(got.value, v);
    }
    EXPECT_EQ(c.pop().status, ring_status::empty);
    // The other side learns our progress only through the shared indices.
    EXPECT_EQ(r.header->tail.load(), 5U);
    EXPECT_EQ(r.header->head.load(), 5U);
}

TEST(ring, full_at_capacity_for_each_power_of_two) {
    for (std::uint32_t capacity : {1U, 2U, 4U, 64U, 1024U}) {
        SCOPED_TRACE(capacity);
        local_ring r(capacity);
        auto p = r.producer();
        auto c = r.consumer();
        EXPECT_EQ(p.capacity(), capacity);
        for (std::uint32_t i = 0; i < capacity; ++i) {
            ASSERT_EQ(p.push(100 + i), ring_status::ok);
        }
        EXPECT_EQ(p.push(1), ring_status::full);
        EXPECT_EQ(p.push(1), ring_status::full);
        // A refused push must not have overwritten the oldest entry.
        ASSERT_EQ(c.pop().value, 100U);
        EXPECT_EQ(p.push(100 + capacity), ring_status::ok);
        EXPECT_EQ(p.push(1), ring_status::full);
        for (std::uint32_t i = 1; i <= capacity; ++i) {
            const pop_result got = c.pop();
            ASSERT_EQ(got.status, ring_status::ok);
            EXPECT_EQ(got.value, 100 + i);
        }
        EXPECT_EQ(c.pop().status, ring_status::empty);
    }
}

TEST(ring, entries_array_is_reused_round_after_round) {
    // Fill levels vary so that head and tail meet at every position of the entries array.
    local_ring r(4);
    auto p = r.producer();
    auto c = r.consumer();
    std::uint32_t next_in = 0;
    std::uint32_t next_out = 0;
    for (std::uint32_t round = 0; round < 1000; ++round) {
        const std::uint32_t burst = round % 5;  // 0..4, 4 == capacity
        for (std::uint32_t i = 0; i < burst; ++i) {
            ASSERT_EQ(p.push(next_in++), ring_status::ok);
        }
        for (std::uint32_t i = 0; i < burst; ++i) {
            const pop_result got = c.pop();
            ASSERT_EQ(got.status, ring_status::ok);
            ASSERT_EQ(got.value, next_out++);
        }
        ASSERT_EQ(c.pop().status, ring_status::empty);
    }
}

TEST(ring, indices_wrap_past_two_to_the_32) {
    for (std::uint32_t capacity : {1U, 4U, 64U}) {
        for (std::uint32_t start : {u32_max - capacity, u32_max - 1, u32_max}) {
            SCOPED_TRACE(testing::Message() << "capacity " << capacity << " start " << start);
            local_ring r(capacity, start);
            auto p = r.producer();
            auto c = r.consumer();
            // Full is detected with the tail on the far side of the wrap from the head.
            for (std::uint32_t i = 0; i < capacity; ++i) {
                ASSERT_EQ(p.push(i), ring_status::ok);
            }
            EXPECT_EQ(p.push(0), ring_status::full);
            EXPECT_EQ(r.header->tail.load(), start + capacity);  // wrapped
            for (std::uint32_t i = 0; i < capacity; ++i) {
                const pop_result got = c.pop();
                ASSERT_EQ(got.status, ring_status::ok);
                EXPECT_EQ(got.value, i);
            }
            EXPECT_EQ(c.pop().status, ring_status::empty);
            // Keep going through several more laps of the array on the far side.
            for (std::uint32_t i = 0; i < 3 * capacity + 1; ++i) {
                ASSERT_EQ(p.push(i), ring_status::ok);
                const pop_result got = c.pop();
                ASSERT_EQ(got.status, ring_status::ok);
                EXPECT_EQ(got.value, i);
            }
            EXPECT_EQ(r.header->head.load(), start + 4 * capacity + 1);
        }
    }
}

// --- hostile indices and entries ---------------------------------------------------------------------------------

TEST(ring, consumer_reports_a_tail_beyond_capacity_as_corrupt_without_reading) {
    constexpr std::uint32_t capacity = 8;
    no_access_page entries;
    ASSERT_NE(entries.get(), nullptr);
    for (std::uint32_t head : {0U, 5U, u32_max - 3}) {
        for (std::uint32_t bad_tail : {head + capacity + 1, head - 1, head + 0x80000000U}) {
            SCOPED_TRACE(testing::Message() << "head " << head << " tail " << bad_tail);
            ring_header header{};
            header.head.store(head);
            header.tail.store(head);
            ring_consumer c(&header, entries.get(), capacity);
            EXPECT_EQ(c.pop().status, ring_status::empty);
            header.tail.store(bad_tail);  // the other side writes garbage after we attached
            EXPECT_EQ(c.pop().status, ring_status::corrupt);
            EXPECT_EQ(c.pop().status, ring_status::corrupt);  // stays refused, never half-followed
            EXPECT_EQ(header.head.load(), head);
        }
    }
}

TEST(ring, consumer_attaching_to_a_corrupt_tail_reports_corrupt_without_reading) {
    // The server attaches to a segment the client wrote: the tail it finds there is as untrusted as any later one.
    constexpr std::uint32_t capacity = 8;
    no_access_page entries;
    ASSERT_NE(entries.get(), nullptr);
    for (std::uint32_t bad_tail : {capacity + 1, u32_max, 0x80000000U}) {
        SCOPED_TRACE(bad_tail);
        ring_header header{};
        header.head.store(0);
        header.tail.store(bad_tail);
        ring_consumer c(&header, entries.get(), capacity);
        EXPECT_EQ(c.pop().status, ring_status::corrupt);
        EXPECT_EQ(header.head.load(), 0U);
    }
}

TEST(ring, consumer_accepts_a_tail_exactly_capacity_ahead) {
    // The boundary of the corrupt check: a full ring is legitimate.
    local_ring r(4);
    for (std::uint32_t i = 0; i < 4; ++i) {
        r.entries[i] = 10 + i;
    }
    r.header->tail.store(4);
    auto c = r.consumer();
    for (std::uint32_t i = 0; i < 4; ++i) {
        const pop_result got = c.pop();
        ASSERT_EQ(got.status, ring_status::ok);
        EXPECT_EQ(got.value, 10 + i);
    }
    EXPECT_EQ(c.pop().status, ring_status::empty);
}

TEST(ring, producer_attaching_to_a_corrupt_head_reports_corrupt_without_writing) {
    constexpr std::uint32_t capacity = 8;
    no_access_page entries;
    ASSERT_NE(entries.get(), nullptr);
    for (std::uint32_t tail : {0U, 100U, u32_max - 2}) {
        for (std::uint32_t bad_head : {tail + 5, tail - capacity - 1, tail + 0x80000000U}) {
            SCOPED_TRACE(testing::Message() << "tail " << tail << " head " << bad_head);
            ring_header header{};
            header.tail.store(tail);
            header.head.store(bad_head);
            ring_producer p(&header, entries.get(), capacity);
            EXPECT_EQ(p.push(1), ring_status::corrupt);
            EXPECT_EQ(p.push(1), ring_status::corrupt);
            EXPECT_EQ(header.tail.load(), tail);  // nothing published
        }
    }
}

TEST(ring, producer_reports_a_head_changed_to_garbage_as_corrupt) {
    // The producer looks at the head only when its cached copy says full, so fill the ring first.
    constexpr std::uint32_t capacity = 8;
    for (std::uint32_t delta : {capacity + 5, u32_max - capacity}) {  // tail + 5 and tail - capacity - 1
        SCOPED_TRACE(delta);
        local_ring r(capacity, 1000);
        auto p = r.producer();
        for (std::uint32_t i = 0; i < capacity; ++i) {
            ASSERT_EQ(p.push(i), ring_status::ok);
        }
        const std::vector<std::uint32_t> before = r.entries;
        r.header->head.store(1000 + delta);
        EXPECT_EQ(p.push(99), ring_status::corrupt);
        EXPECT_EQ(r.entries, before);
        EXPECT_EQ(r.header->tail.load(), 1000 + capacity);
    }
}

TEST(ring, garbage_entry_is_returned_verbatim) {
    // The ring moves offsets; whether an offset names a real slot is the caller's check, not the ring's.
    local_ring r(4);
    auto c = r.consumer();
    r.entries[0] = 0xDEADBEEFU;
    r.entries[1] = u32_max;
    r.header->tail.store(2);  // published by "the other side"
    pop_result got = c.pop();
    ASSERT_EQ(got.status, ring_status::ok);
    EXPECT_EQ(got.value, 0xDEADBEEFU);
    got = c.pop();
    ASSERT_EQ(got.status, ring_status::ok);
    EXPECT_EQ(got.value, u32_max);
}

// --- doorbell ----------------------------------------------------------------------------------------------------

TEST(ring, wait_returns_at_once_when_stop_is_set) {
    for (wait_strategy s : {wait_strategy::spin, wait_strategy::spin_then_sleep, wait_strategy::sleep}) {
        SCOPED_TRACE(static_cast<int>(s));
        local_ring r(4);
        auto c = r.consumer();
        std::atomic<bool> stop{true};
        // spin_for is long enough that a spin phase ignoring stop would outlast the time limit.
        const wait_policy policy{.strategy = s, .spin_for = 3600s};
        auto done = std::async(std::launch::async, [&] { c.wait(policy, stop); });
        EXPECT_TRUE(finishes_within(done, time_limit, [&] { ring_consumer::wake(r.header.get()); }));
        EXPECT_EQ(r.header->sleeping.load(), 0U);
    }
}

TEST(ring, wait_returns_at_once_when_data_is_there) {
    for (wait_strategy s : {wait_strategy::spin, wait_strategy::spin_then_sleep, wait_strategy::sleep}) {
        SCOPED_TRACE(static_cast<int>(s));
        local_ring r(4);
        auto p = r.producer();
        auto c = r.consumer();
        ASSERT_EQ(p.push(5), ring_status::ok);
        std::atomic<bool> stop{false};
        const wait_policy policy{.strategy = s, .spin_for = 3600s};
        auto done = std::async(std::launch::async, [&] { c.wait(policy, stop); });
        EXPECT_TRUE(finishes_within(done, time_limit, [&] {
            stop.store(true);
            ring_consumer::wake(r.header.get());
        }));
    }
}

TEST(ring, sleeping_consumer_is_woken_by_a_push) {
    local_ring r(4);
    auto p = r.producer();
    auto c = r.consumer();
    std::atomic<bool> stop{false};
    const wait_policy policy{.strategy = wait_strategy::sleep};
    auto got = std::async(std::launch::async, [&] { return pop_waiting(c, policy, stop); });
    // EXPECT, not ASSERT, until the thread is joined: an early return would block in the future's destructor.
    EXPECT_TRUE(becomes_sleeping(*r.header));
    EXPECT_EQ(p.push(77), ring_status::ok);
    ASSERT_TRUE(finishes_within(got, time_limit, [&] {
        stop.store(true);
        ring_consumer::wake(r.header.get());
    })) << "a push did not wake the sleeping consumer";
    EXPECT_EQ(got.get(), std::optional<std::uint32_t>{77});
}

TEST(ring, wake_with_stop_ends_a_sleeping_wait) {
    local_ring r(4);
    auto c = r.consumer();
    std::atomic<bool> stop{false};
    const wait_policy policy{.strategy = wait_strategy::sleep};
    auto got = std::async(std::launch::async, [&] { return pop_waiting(c, policy, stop); });
    EXPECT_TRUE(becomes_sleeping(*r.header));
    stop.store(true);
    ring_consumer::wake(r.header.get());
    // On failure the rescue repeats the same wake; the process then aborts rather than hang.
    ASSERT_TRUE(finishes_within(got, time_limit, [&] { ring_consumer::wake(r.header.get()); }));
    EXPECT_EQ(got.get(), std::nullopt);
}

TEST(ring, spinning_strategies_return_when_data_arrives) {
    // spin_for of an hour keeps spin_then_sleep in its spin phase: the value must be seen by polling. spin_for of
    // zero sends it to the futex at once: the value must ring the bell.
    struct variant {
        wait_policy policy;
        bool reaches_sleep;
    };
    for (const variant& v : {variant{{wait_strategy::spin, 0us}, false},
                             variant{{wait_strategy::spin_then_sleep, 3600s}, false},
                             variant{{wait_strategy::spin_then_sleep, 0us}, true}}) {
        SCOPED_TRACE(testing::Message() << static_cast<int>(v.policy.strategy) << " " << v.policy.spin_for.count());
        local_ring r(4);
        auto p = r.producer();
        auto c = r.consumer();
        std::atomic<bool> stop{false};
        std::atomic<bool> entered_wait{false};
        auto got = std::async(std::launch::async, [&] { return pop_waiting(c, v.policy, stop, &entered_wait); });
        EXPECT_TRUE(v.reaches_sleep ? becomes_sleeping(*r.header) : becomes_true(entered_wait));
        EXPECT_EQ(p.push(123), ring_status::ok);
        ASSERT_TRUE(finishes_within(got, time_limit, [&] {
            stop.store(true);
            ring_consumer::wake(r.header.get());
        }));
        EXPECT_EQ(got.get(), std::optional<std::uint32_t>{123});
        if (!v.reaches_sleep) {
            EXPECT_EQ(r.header->bell.load(), 0U) << "a spinning consumer should not have needed the bell";
        }
    }
}

// --- across processes --------------------------------------------------------------------------------------------

// Header and entries in one MAP_SHARED mapping, inherited by fork().
class shared_ring {
public:
    shared_ring(std::uint32_t capacity, std::uint32_t start) : capacity_(capacity) {
        bytes_ = sizeof(ring_header) + std::size_t{capacity} * sizeof(std::uint32_t);
        void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            return;
        }
        base_ = p;
        header_ = new (p) ring_header{};
        header_->head.store(start, std::memory_order_relaxed);
        header_->tail.store(start, std::memory_order_relaxed);
        entries_ = reinterpret_cast<std::uint32_t*>(static_cast<std::byte*>(p) + sizeof(ring_header));
    }
    ~shared_ring() {
        if (base_ != nullptr) {
            ::munmap(base_, bytes_);
        }
    }
    shared_ring(const shared_ring&) = delete;
    shared_ring& operator=(const shared_ring&) = delete;

    [[nodiscard]] bool ok() const { return base_ != nullptr; }
    [[nodiscard]] ring_header* header() const { return header_; }
    [[nodiscard]] ring_producer producer() const { return {header_, entries_, capacity_}; }
    [[nodiscard]] ring_consumer consumer() const { return {header_, entries_, capacity_}; }

private:
    void* base_ = nullptr;
    std::size_t bytes_ = 0;
    ring_header* header_ = nullptr;
    std::uint32_t* entries_ = nullptr;
    std::uint32_t capacity_;
};

// Child exit codes.
constexpr int child_ok = 0;
constexpr int child_corrupt = 3;

[[noreturn]] void produce_in_child(ring_producer producer, std::uint32_t count) {
    // If the parent dies (a failed assertion) or stops consuming, the child must not linger.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::alarm(60);
    for (std::uint32_t v = 0; v < count; ++v) {
        for (std::uint32_t attempt = 0;; ++attempt) {
            const ring_status s = producer.push(v);
            if (s == ring_status::ok) {
                break;
            }
            if (s != ring_status::full) {
                ::_exit(child_corrupt);
            }
            // Full: the parent is behind. Give it the core (2 vCPUs are shared with the sanitizer's threads).
            cpu_relax();
            if ((attempt & 15U) == 15U) {
                ::sched_yield();
            }
        }
    }
    ::_exit(child_ok);
}

TEST(ring, carries_a_million_values_across_fork_in_order) {
    constexpr std::uint32_t count = 1'000'000;
    // Start just below 2^32 so that the run also crosses the index wrap. 1024 entries (a full-size segment's
    // ring): with a small ring each full/empty hand-off can cost the producer a whole time slice on a loaded
    // 2-core machine, which made the run take seconds; full and empty under contention are the stress test's job.
    shared_ring ring(1024, u32_max - 1000);
    ASSERT_TRUE(ring.ok());
    auto consumer = ring.consumer();

    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        produce_in_child(ring.producer(), count);
    }

    // Watchdog: after the limit, stop the consumer's wait so that the test fails instead of hanging.
    std::atomic<bool> stop{false};
    std::promise<void> finished;
    auto watchdog = std::async(std::launch::async, [&, done = finished.get_future()] {
        if (done.wait_for(60s) != std::future_status::ready) {
            stop.store(true);
            ring_consumer::wake(ring.header());
        }
    });

    const wait_policy policy{.strategy = wait_strategy::spin_then_sleep, .spin_for = 50us};
    std::uint32_t expected = 0;
    bool in_order = true;
    while (expected < count) {
        const std::optional<std::uint32_t> v = pop_waiting(consumer, policy, stop);
        if (!v) {
            break;  // stopped by the watchdog, or corrupt
        }
        if (*v != expected) {
            in_order = false;
            break;
        }
        ++expected;
    }
    finished.set_value();
    watchdog.get();
    if (expected < count) {
        ::kill(child, SIGKILL);
    }
    int wstatus = 0;
    ASSERT_EQ(::waitpid(child, &wstatus, 0), child);

    EXPECT_TRUE(in_order) << "value " << expected << " arrived out of order";
    EXPECT_FALSE(stop.load()) << "the watchdog fired";
    EXPECT_EQ(expected, count);
    ASSERT_TRUE(WIFEXITED(wstatus)) << "child ended by signal " << WTERMSIG(wstatus);
    EXPECT_EQ(WEXITSTATUS(wstatus), child_ok);
    EXPECT_EQ(consumer.pop().status, ring_status::empty);
    EXPECT_EQ(ring.header()->tail.load(), u32_max - 1000 + count);
}

}  // namespace
}  // namespace datapump::ipc::internal
