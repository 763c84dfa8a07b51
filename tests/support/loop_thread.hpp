// File: tests/support/loop_thread.hpp
//
// Test support: an io::event_loop on its own thread (the ring is created there: SINGLE_ISSUER),
// with `sync` to run a task on it and wait; and a byte comparison that names the first
// difference instead of printing megabytes.
//
// Thread-safety: the loop is touched only on its thread (post, sync); the rest is pure.
#pragma once

#include "datapump/io/event_loop.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>

namespace datapump::test {

// A loop that does not run a posted task within this is stuck: the test binary aborts. Generous,
// for the sanitizer builds on a shared 2-core machine.
inline constexpr auto loop_sync_limit = std::chrono::seconds(60);

// Compares without printing megabytes: the first differing offset, or -1.
[[nodiscard]] inline std::int64_t first_difference(std::span<const std::byte> got, std::span<const std::byte> want) {
    const std::size_t n = std::min(got.size(), want.size());
    for (std::size_t i = 0; i < n; ++i) {
        if (got[i] != want[i]) {
            return static_cast<std::int64_t>(i);
        }
    }
    return got.size() == want.size() ? -1 : static_cast<std::int64_t>(n);
}

#define EXPECT_SAME_BYTES(got, want)                                                          \
    EXPECT_EQ(::datapump::test::first_difference((got), (want)), -1)                         \
        << "sizes " << (got).size() << " / " << (want).size() << " (first difference shown)"

// Runs an event loop on its own thread: the ring is created there (SINGLE_ISSUER).
class loop_thread {
public:
    explicit loop_thread(const buffer::arena* arena) {
        std::promise<void> ready;
        auto up = ready.get_future();
        thread_ = std::thread([&] {
            auto l = io::event_loop::create({.entries = 256, .arena = arena, .index = 0});
            if (l) {
                loop_ = std::move(*l);
            } else {
                error_ = describe(l.error());
            }
            ready.set_value();
            if (loop_ != nullptr) {
                loop_->run();
            }
        });
        up.wait();
    }
    loop_thread(const loop_thread&) = delete;
    loop_thread& operator=(const loop_thread&) = delete;
    ~loop_thread() {
        if (loop_ != nullptr) {
            loop_->stop();
        }
        thread_.join();
    }

    [[nodiscard]] bool ok() const { return loop_ != nullptr; }
    [[nodiscard]] const std::string& error_text() const { return error_; }
    [[nodiscard]] io::event_loop& loop() { return *loop_; }

    // Runs `f` on the loop thread and waits for it. A loop that does not answer within the deadline
    // is stuck: nothing can be torn down safely any more, so the test binary aborts (a failure with
    // a message, never a hang).
    void sync(const std::function<void()>& f) {
        auto done = std::make_shared<std::promise<void>>();
        auto fut = done->get_future();
        loop_->post([&f, done] {
            f();
            done->set_value();
        });
        if (fut.wait_for(loop_sync_limit) != std::future_status::ready) {
            std::fprintf(stderr, "FATAL: the event loop did not run a posted task within the deadline\n");
            std::abort();
        }
    }

private:
    std::unique_ptr<io::event_loop> loop_;
    std::string error_;
    std::thread thread_;
};

}  // namespace datapump::test
