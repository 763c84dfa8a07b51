#include "datapump/io/event_loop.hpp"

#include <gtest/gtest.h>
#include <liburing.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using namespace datapump;
using namespace std::chrono_literals;

// Records what the loop delivered to it.
struct recorder final : io::completion {
    std::vector<std::pair<int, std::uint32_t>> seen;
    std::function<void(int, std::uint32_t)> then;
    void complete(int result, std::uint32_t flags) override {
        seen.emplace_back(result, flags);
        if (then) {
            then(result, flags);
        }
    }
};

// Runs a loop on its own thread (the ring is created there, as the server does).
class loop_thread {
public:
    explicit loop_thread(const buffer::arena* arena = nullptr) {
        std::atomic<bool> ready{false};
        thread_ = std::thread([&] {
            auto l = io::event_loop::create({.entries = 64, .arena = arena, .index = 0});
            EXPECT_TRUE(l);
            loop_ = std::move(*l);
            ready.store(true);
            ready.notify_one();
            loop_->run();
        });
        ready.wait(false);
    }
    ~loop_thread() {
        loop_->stop();
        thread_.join();
    }
    io::event_loop& loop() { return *loop_; }
    // Runs `f` on the loop thread and waits for it.
    void sync(const std::function<void()>& f) {
        std::atomic<bool> done{false};
        loop_->post([&] {
            f();
            done.store(true);
            done.notify_one();
        });
        done.wait(false);
    }

private:
    std::unique_ptr<io::event_loop> loop_;
    std::thread thread_;
};

TEST(event_loop, posted_tasks_run_in_order_on_the_loop_thread) {
    loop_thread lt;
    std::vector<int> order;
    std::thread::id loop_id;
    for (int i = 0; i < 100; ++i) {
        lt.loop().post([&, i] {
            order.push_back(i);
            loop_id = std::this_thread::get_id();
        });
    }
    lt.sync([] {});
    ASSERT_EQ(order.size(), 100U);
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
    }
    EXPECT_NE(loop_id, std::this_thread::get_id());
}

TEST(event_loop, timers_fire_in_deadline_order_and_disarmed_ones_never) {
    loop_thread lt;
    std::vector<int> fired;
    std::atomic<int> count{0};
    struct tagged final : io::completion {
        int tag = 0;
        std::vector<int>* out = nullptr;
        std::atomic<int>* n = nullptr;
        void complete(int, std::uint32_t) override {
            out->push_back(tag);
            n->fetch_add(1);
            n->notify_one();
        }
    };
    std::array<tagged, 5> targets;
    std::vector<std::unique_ptr<io::timer>> timers;
    for (int i = 0; i < 5; ++i) {
        targets[static_cast<std::size_t>(i)].tag = i;
        targets[static_cast<std::size_t>(i)].out = &fired;
        targets[static_cast<std::size_t>(i)].n = &count;
        timers.push_back(std::make_unique<io::timer>(&targets[static_cast<std::size_t>(i)]));
    }
    lt.sync([&] {
        const auto now = io::clock::now();
        // Deadlines 50, 10, 40, 20, 30 ms: fire order 1, 3, 4, 2 (0 is disarmed).
        const int ms[] = {50, 10, 40, 20, 30};
        for (std::size_t i = 0; i < 5; ++i) {
            lt.loop().arm(*timers[i], now + std::chrono::milliseconds(ms[i]));
        }
        lt.loop().disarm(*timers[0]);
        EXPECT_FALSE(timers[0]->armed());
    });
    while (count.load() < 4) {
        count.wait(count.load());
    }
    std::this_thread::sleep_for(80ms);  // the disarmed one would have fired by now
    lt.sync([] {});
    EXPECT_EQ(fired, (std::vector<int>{1, 3, 4, 2}));
}

TEST(event_loop, destroying_an_armed_timer_removes_it) {
    loop_thread lt;
    recorder r;
    lt.sync([&] {
        auto t = std::make_unique<io::timer>(&r);
        lt.loop().arm(*t, io::clock::now() + 1ms);
        t.reset();
    });
    std::this_thread::sleep_for(20ms);
    lt.sync([] {});
    EXPECT_TRUE(r.seen.empty());
}

TEST(event_loop, deferred_completions_run_without_waiting) {
    loop_thread lt;
    recorder r;
    int runs = 0;
    r.then = [&](int, std::uint32_t) {
        if (++runs < 1000) {
            lt.loop().defer(&r);
        }
    };
    lt.sync([&] { lt.loop().defer(&r); });
    const auto start = std::chrono::steady_clock::now();
    while (true) {
        int n = 0;
        lt.sync([&] { n = runs; });
        if (n == 1000 || std::chrono::steady_clock::now() - start > 10s) {
            break;
        }
    }
    EXPECT_EQ(runs, 1000);
}

TEST(event_loop, send_and_recv_move_bytes_in_order) {
    loop_thread lt;
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    std::array<std::byte, 64> out{};
    std::array<std::byte, 64> in{};
    std::memcpy(out.data(), "the bytes the loop sends, in order, once", 40);
    recorder sent;
    recorder got;
    std::atomic<bool> done{false};
    got.then = [&](int, std::uint32_t) {
        done.store(true);
        done.notify_one();
    };
    lt.sync([&] {
        lt.loop().recv(sv[1], in, &got);
        lt.loop().send(sv[0], std::span(out).first(40), MSG_NOSIGNAL, &sent);
    });
    done.wait(false);
    lt.sync([] {});
    ASSERT_EQ(got.seen.size(), 1U);
    EXPECT_EQ(got.seen[0].first, 40);
    EXPECT_EQ(sent.seen.at(0).first, 40);
    EXPECT_EQ(std::memcmp(in.data(), out.data(), 40), 0);
    ::close(sv[0]);
    ::close(sv[1]);
}

// A connected TCP pair over loopback (SEND_ZC needs TCP or UDP; AF_UNIX refuses it).
void tcp_pair(int sv[2]) {
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
    sv[0] = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(::connect(sv[0], reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    sv[1] = ::accept(listener, nullptr, nullptr);
    ASSERT_GE(sv[1], 0);
    ::close(listener);
}

TEST(event_loop, a_zero_copy_send_ends_with_a_notification) {
    auto arena = buffer::arena::create({.buffer_size = 4096, .buffer_count = 4, .prefault = true});
    ASSERT_TRUE(arena);
    loop_thread lt(arena->get());
    int sv[2] = {-1, -1};
    ASSERT_NO_FATAL_FAILURE(tcp_pair(sv));
    auto bytes = (*arena)->data(2);
    std::memset(bytes.data(), 0x5a, 1000);
    recorder zc;
    std::atomic<int> cqes{0};
    zc.then = [&](int, std::uint32_t) {
        cqes.fetch_add(1);
        cqes.notify_one();
    };
    bool fixed = false;
    lt.sync([&] {
        fixed = lt.loop().has_fixed_buffers();
        lt.loop().send_zc(sv[0], std::span<const std::byte>(bytes.data(), 1000), MSG_NOSIGNAL, 2, &zc);
    });
    EXPECT_TRUE(fixed) << lt.loop().fixed_buffers_error();
    const auto start = std::chrono::steady_clock::now();
    while (cqes.load() < 2 && std::chrono::steady_clock::now() - start < 10s) {
        std::this_thread::sleep_for(1ms);
    }
    lt.sync([] {});
    ASSERT_EQ(zc.seen.size(), 2U) << "first result " << (zc.seen.empty() ? 0 : zc.seen[0].first);
    EXPECT_EQ(zc.seen[0].first, 1000);
    EXPECT_NE(zc.seen[0].second & IORING_CQE_F_MORE, 0U);   // a notification follows
    EXPECT_NE(zc.seen[1].second & IORING_CQE_F_NOTIF, 0U);  // and this is it
    std::array<char, 1000> in{};
    ASSERT_EQ(::recv(sv[1], in.data(), in.size(), MSG_WAITALL), 1000);
    EXPECT_EQ(in[0], 0x5a);
    EXPECT_EQ(in[999], 0x5a);
    ::close(sv[0]);
    ::close(sv[1]);
}

TEST(event_loop, stop_from_another_thread_ends_run) {
    auto l = io::event_loop::create({.entries = 8});
    ASSERT_TRUE(l);
    io::event_loop& loop = **l;
    std::thread stopper([&] {
        std::this_thread::sleep_for(20ms);
        loop.stop();
    });
    loop.run();  // returns only because of stop()
    stopper.join();
    EXPECT_TRUE(loop.stopping());
}

}  // namespace
