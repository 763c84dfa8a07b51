// The command channel within one process: client and server over the socket and shared memory
// (in_process = false), and over the in-process call path. Callback order, sync and async, worker
// execution, backup mode and the way back, descriptors, notifications, death of either side.
#include "datapump/ipc/client.hpp"
#include "datapump/ipc/server.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace datapump::ipc {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t op_echo = 1;      // output = input, status = input length
constexpr std::uint32_t op_block = 2;     // waits until the test opens the gate, then echoes
constexpr std::uint32_t op_fd = 3;        // attaches a pipe's read end; status 7
constexpr std::uint32_t op_notify = 4;    // sends a notification back to the client first
constexpr std::uint32_t op_overclaim = 5; // claims more output than it was given
constexpr std::uint32_t op_disconnect = 6; // the handler ends the connection from inside exec

std::string unique_endpoint(const char* what) {
    static std::atomic<int> n{0};
    return "@datapump-test-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(n.fetch_add(1));
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string string_of(std::span<const std::byte> b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// A server whose handlers record what they saw.
struct test_server {
    std::unique_ptr<server_runtime> runtime;
    std::unique_ptr<server> srv;
    std::string endpoint;
    std::mutex mu;
    std::condition_variable cv;
    bool gate_open = false;
    int blocked = 0;
    std::vector<std::string> events;
    std::atomic<int> opens{0};
    std::atomic<int> closes{0};
    std::atomic<int> execs_running{0};
    std::atomic<bool> exec_running_at_close{false};
    std::vector<std::string> notes;

    explicit test_server(const char* what, server_options options = {}) : endpoint(unique_endpoint(what)) {
        runtime = server_runtime::init({2}).value();
        server_handlers h;
        h.open = [this](connection& c) -> result<void> {
            opens.fetch_add(1);
            c.user_context = this;
            return {};
        };
        h.exec = [this](connection& c, std::uint32_t code, std::span<const std::byte> in,
                        std::span<std::byte> out) -> exec_result {
            EXPECT_EQ(c.user_context, this);
            execs_running.fetch_add(1);
            exec_result r{static_cast<std::int32_t>(in.size()), 0};
            if (code == op_block) {
                std::unique_lock lock(mu);
                ++blocked;
                cv.notify_all();
                cv.wait(lock, [this] { return gate_open; });
            }
            if (code == op_fd) {
                int p[2];
                EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
                EXPECT_TRUE(c.attach_fd(unique_fd(p[0])).has_value());
                EXPECT_EQ(::write(p[1], "fd!", 3), 3);
                ::close(p[1]);
                r.status = 7;
            }
            if (code == op_notify) {
                const std::string note = "hello from the server";
                EXPECT_TRUE(c.notify(9, bytes_of(note)).has_value());
            }
            const std::size_t n = std::min(in.size(), out.size());
            if (n > 0) {
                std::memcpy(out.data(), in.data(), n);
            }
            r.output_len = static_cast<std::uint32_t>(n);
            if (code == op_disconnect) {
                c.disconnect();  // must not wait for this very exec
            }
            if (code == op_overclaim) {
                r.output_len = static_cast<std::uint32_t>(out.size() + 100);
            }
            execs_running.fetch_sub(1);
            return r;
        };
        h.close = [this](connection& c) {
            EXPECT_EQ(c.user_context, this);
            if (execs_running.load() != 0) {
                exec_running_at_close.store(true);
            }
            closes.fetch_add(1);
        };
        h.notify = [this](connection&, std::uint32_t code, std::span<const std::byte> payload) {
            std::lock_guard lock(mu);
            notes.push_back(std::to_string(code) + ":" + string_of(payload));
            cv.notify_all();
        };
        srv = runtime->create(endpoint, std::move(h), options).value();
    }

    void wait_blocked(int n) {
        std::unique_lock lock(mu);
        ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return blocked >= n; }));
    }
    void open_gate() {
        std::lock_guard lock(mu);
        gate_open = true;
        cv.notify_all();
    }
};

client_options remote(client_options o = {}) {
    o.in_process = false;
    return o;
}

// Records every callback with its arguments.
struct trace {
    std::vector<std::string> calls;
    std::string input_seen;
    std::string output_seen;
    std::promise<outcome> done;
    const void* input_ptr = nullptr;
    const void* output_ptr = nullptr;
};

callbacks traced(trace& tr, bool async) {
    callbacks cb;
    cb.context = &tr;
    cb.input_prepare = [](void* c, std::span<const std::byte> input, std::span<std::byte> area) {
        auto& t = *static_cast<trace*>(c);
        t.calls.push_back("input_prepare");
        EXPECT_EQ(input.data(), t.input_ptr);
        EXPECT_EQ(area.size(), input.size());
        // Build the input in place, upper-cased: proves the server sees the prepared area.
        for (std::size_t i = 0; i < input.size(); ++i) {
            area[i] = static_cast<std::byte>(std::toupper(static_cast<int>(input[i])));
        }
    };
    cb.output_prepare = [](void* c, std::span<std::byte> output, std::span<std::byte> area) {
        auto& t = *static_cast<trace*>(c);
        t.calls.push_back("output_prepare");
        EXPECT_EQ(output.data(), t.output_ptr);
        EXPECT_EQ(area.size(), output.size());
    };
    cb.input_post = [](void* c, std::span<const std::byte>, std::span<const std::byte> area) {
        auto& t = *static_cast<trace*>(c);
        t.calls.push_back("input_post");
        t.input_seen = string_of(area);
    };
    cb.output_post = [](void* c, std::span<std::byte> output, std::span<const std::byte> area) {
        auto& t = *static_cast<trace*>(c);
        t.calls.push_back("output_post");
        EXPECT_EQ(output.data(), t.output_ptr);
        t.output_seen = string_of(area);
    };
    if (async) {
        cb.completion = [](void* c, outcome& o) {
            auto& t = *static_cast<trace*>(c);
            t.calls.push_back("completion");
            t.done.set_value(std::move(o));
        };
    }
    return cb;
}

const std::vector<std::string> sync_order = {"input_prepare", "output_prepare", "input_post", "output_post"};
const std::vector<std::string> async_order = {"input_prepare", "output_prepare", "input_post", "output_post",
                                              "completion"};

class channel_paths : public ::testing::TestWithParam<const char*> {
protected:
    // "slot": shared memory; "backup": socket only; "direct": in-process call.
    client_options options() const {
        const std::string p = GetParam();
        client_options o;
        o.in_process = p == "direct";
        o.use_shared_memory = p != "backup";
        return o;
    }
    void expect_path(const client& c) const {
        const std::string p = GetParam();
        const auto s = c.stats();
        EXPECT_EQ(s.slot_commands > 0, p == "slot");
        EXPECT_EQ(s.backup_commands > 0, p == "backup");
        EXPECT_EQ(s.direct_commands > 0, p == "direct");
    }
};

TEST_P(channel_paths, sync_execute_copies_input_in_and_output_out) {
    test_server ts("sync");
    auto c = client::init(ts.endpoint, options()).value();
    const std::string in = "ping over the channel";
    std::vector<std::byte> out(64);
    auto r = c->execute(op_echo, bytes_of(in), out);
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_EQ(r->status, static_cast<std::int32_t>(in.size()));
    ASSERT_EQ(r->output_len, in.size());
    EXPECT_EQ(string_of(std::span(out).first(r->output_len)), in);
    expect_path(*c);
    EXPECT_EQ(ts.opens.load(), 1);
}

TEST_P(channel_paths, sync_callbacks_fire_in_the_documented_order_with_their_arguments) {
    test_server ts("sync-cb");
    auto c = client::init(ts.endpoint, options()).value();
    const std::string in = "make me loud";
    std::vector<std::byte> out(32);
    trace t;
    t.input_ptr = in.data();
    t.output_ptr = out.data();
    auto r = c->execute(op_echo, bytes_of(in), out, traced(t, false));
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_EQ(t.calls, sync_order);
    EXPECT_EQ(t.input_seen, "MAKE ME LOUD");
    EXPECT_EQ(t.output_seen, "MAKE ME LOUD");  // the server echoed the prepared area
    EXPECT_EQ(r->output_len, in.size());
    expect_path(*c);
}

TEST_P(channel_paths, async_callbacks_fire_in_order_then_the_completion_once) {
    test_server ts("async-cb");
    auto c = client::init(ts.endpoint, options()).value();
    const std::string in = "later, please";
    std::vector<std::byte> out(32);
    trace t;
    t.input_ptr = in.data();
    t.output_ptr = out.data();
    auto fut = t.done.get_future();
    auto accepted = c->execute(op_echo, bytes_of(in), out, traced(t, true));
    ASSERT_TRUE(accepted.has_value()) << describe(accepted.error());
    ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
    outcome o = fut.get();
    ASSERT_TRUE(o.has_value()) << describe(o.error());
    EXPECT_EQ(o->status, static_cast<std::int32_t>(in.size()));
    EXPECT_EQ(o->output_len, in.size());
    EXPECT_EQ(t.calls, async_order);
    EXPECT_EQ(t.output_seen, "LATER, PLEASE");
    c->deinit();
    expect_path(*c);
}

TEST_P(channel_paths, many_async_commands_each_complete_once_with_their_own_output) {
    test_server ts("many");
    auto c = client::init(ts.endpoint, options()).value();
    constexpr int n = 2000;
    struct one {
        std::uint64_t value;
        std::uint64_t out;
        std::atomic<int>* completions;
        std::atomic<int>* wrong;
    };
    std::atomic<int> completions{0};
    std::atomic<int> wrong{0};
    std::vector<one> cmds(n);
    callbacks cb;
    cb.completion = [](void* ctx, outcome& o) {
        auto& x = *static_cast<one*>(ctx);
        if (!o || o->output_len != 8 || x.out != x.value) {
            x.wrong->fetch_add(1);
        }
        x.completions->fetch_add(1);
        x.completions->notify_all();
    };
    for (int i = 0; i < n; ++i) {
        const std::uint64_t value = std::uint64_t{0x1234'5678'0000} + static_cast<std::uint64_t>(i);
        cmds[static_cast<std::size_t>(i)] = {value, 0, &completions, &wrong};
        auto& x = cmds[static_cast<std::size_t>(i)];
        cb.context = &x;
        ASSERT_TRUE(c->execute(op_echo, std::as_bytes(std::span(&x.value, 1)),
                               std::as_writable_bytes(std::span(&x.out, 1)), cb, {.on_worker = (i % 3) == 0})
                        .has_value());
    }
    c->deinit();  // waits for every outstanding command
    EXPECT_EQ(completions.load(), n);
    EXPECT_EQ(wrong.load(), 0);
}

TEST_P(channel_paths, descriptors_attached_by_the_handler_reach_the_caller) {
    test_server ts("fd");
    auto c = client::init(ts.endpoint, options()).value();
    const std::string in = "give me a pipe";
    std::vector<std::byte> out(64);
    auto r = c->execute(op_fd, bytes_of(in), out);
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_EQ(r->status, 7);
    EXPECT_EQ(string_of(std::span(out).first(r->output_len)), in);
    ASSERT_EQ(r->fds.size(), 1U);
    char buf[8] = {};
    EXPECT_EQ(::read(r->fds[0].get(), buf, sizeof(buf)), 3);
    EXPECT_EQ(std::string(buf, 3), "fd!");
}

TEST_P(channel_paths, notifications_travel_both_ways) {
    test_server ts("notify");
    std::mutex mu;
    std::vector<std::string> got;
    client_options o = options();
    o.on_notify = [&](std::uint32_t code, std::span<const std::byte> payload) {
        std::lock_guard lock(mu);
        got.push_back(std::to_string(code) + ":" + string_of(payload));
    };
    auto c = client::init(ts.endpoint, o).value();
    std::vector<std::byte> out(8);
    ASSERT_TRUE(c->execute(op_notify, {}, out).has_value());
    ASSERT_TRUE(c->notify(3, bytes_of("to the server")).has_value());
    {
        std::unique_lock lock(ts.mu);
        ASSERT_TRUE(ts.cv.wait_for(lock, 10s, [&] { return !ts.notes.empty(); }));
        EXPECT_EQ(ts.notes[0], "3:to the server");
    }
    c->deinit();  // the notification sent before the reply has been handled by now
    std::lock_guard lock(mu);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0], "9:hello from the server");
}

TEST_P(channel_paths, deinit_drains_then_the_server_calls_close_once) {
    test_server ts("close");
    auto c = client::init(ts.endpoint, options()).value();
    std::vector<std::byte> out(8);
    ASSERT_TRUE(c->execute(op_echo, bytes_of("x"), out).has_value());
    c->deinit();
    c->deinit();  // idempotent
    for (int i = 0; i < 1000 && ts.closes.load() == 0; ++i) {
        std::this_thread::sleep_for(5ms);  // close runs on the server's thread after EOF
    }
    EXPECT_EQ(ts.closes.load(), 1);
    EXPECT_FALSE(ts.exec_running_at_close.load());
    EXPECT_EQ(c->execute(op_echo, bytes_of("x"), out).error().code, errc::closed);
}

TEST_P(channel_paths, server_destroy_fails_outstanding_commands_and_wakes_sync_callers) {
    auto ts = std::make_unique<test_server>("death");
    auto c = client::init(ts->endpoint, options()).value();
    std::atomic<int> failed{0};
    callbacks cb;
    cb.context = &failed;
    cb.completion = [](void* ctx, outcome& o) {
        if (!o && (o.error().code == errc::peer_gone)) {
            static_cast<std::atomic<int>*>(ctx)->fetch_add(1);
        }
    };
    const bool direct = std::string(GetParam()) == "direct";
    std::vector<std::byte> out(8);
    if (!direct) {
        // A command the server is executing when it goes: it finishes, but its reply cannot be
        // delivered; and a sync caller waiting meanwhile.
        std::vector<std::byte> out2(8);
        ASSERT_TRUE(c->execute(op_block, bytes_of("a"), out, cb, {.on_worker = true}).has_value());
        ts->wait_blocked(1);
        auto sync_call = std::async(std::launch::async, [&] {
            return c->execute(op_block, bytes_of("b"), out2, {}, {.on_worker = true});
        });
        ts->wait_blocked(2);
        std::thread destroyer([&] { ts->srv->destroy(); });
        std::this_thread::sleep_for(20ms);  // destroy is now waiting for the blocked execs
        ts->open_gate();
        destroyer.join();
        ASSERT_EQ(sync_call.wait_for(10s), std::future_status::ready);
        auto r = sync_call.get();
        // The exec finished before destroy cut the connection, so the reply may have made it.
        if (!r) {
            EXPECT_EQ(r.error().code, errc::peer_gone);
        }
    } else {
        ts->srv->destroy();
    }
    EXPECT_EQ(ts->closes.load(), 1);
    // After the server is gone: new commands fail fast, sync and async.
    auto after = c->execute(op_echo, bytes_of("c"), out);
    ASSERT_FALSE(after.has_value());
    EXPECT_EQ(after.error().code, errc::peer_gone);
    EXPECT_TRUE(c->peer_gone());
    c->deinit();
}

TEST_P(channel_paths, a_handler_may_disconnect_its_client_from_inside_exec) {
    test_server ts("self-disconnect");
    auto c = client::init(ts.endpoint, options()).value();
    std::vector<std::byte> out(8);
    auto r = c->execute(op_disconnect, bytes_of("bye"), out);
    // The reply may or may not make it out before the cut; either way the call returns.
    if (!r) {
        EXPECT_EQ(r.error().code, errc::peer_gone);
    }
    for (int i = 0; i < 1000 && ts.closes.load() == 0; ++i) {
        std::this_thread::sleep_for(5ms);
    }
    EXPECT_EQ(ts.closes.load(), 1);
    for (int i = 0; i < 1000 && !c->peer_gone(); ++i) {
        std::this_thread::sleep_for(5ms);
    }
    auto after = c->execute(op_echo, bytes_of("x"), out);
    ASSERT_FALSE(after.has_value());
    EXPECT_EQ(after.error().code, errc::peer_gone);
    c->deinit();
    EXPECT_EQ(ts.closes.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(ipc, channel_paths, ::testing::Values("slot", "backup", "direct"));

TEST(channel, output_larger_than_a_slot_goes_over_the_socket_and_the_next_command_uses_a_slot_again) {
    test_server ts("big");
    client_options o = remote();
    o.input_capacity = 256;
    o.output_capacity = 256;
    auto c = client::init(ts.endpoint, o).value();
    std::string big(10000, 'q');
    std::vector<std::byte> out(big.size());
    auto r = c->execute(op_echo, bytes_of(big), out);
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_EQ(string_of(std::span(out).first(r->output_len)), big);
    EXPECT_EQ(c->stats().backup_commands, 1U);
    std::vector<std::byte> small(16);
    ASSERT_TRUE(c->execute(op_echo, bytes_of("small"), small).has_value());
    EXPECT_EQ(c->stats().slot_commands, 1U);
}

TEST(channel, larger_than_max_message_is_refused_with_a_clear_error) {
    test_server ts("huge");
    client_options o = remote();
    o.max_message = 1024;
    o.input_capacity = 128;
    auto c = client::init(ts.endpoint, o).value();
    std::string big(4096, 'x');
    std::vector<std::byte> out(8);
    auto r = c->execute(op_echo, bytes_of(big), out);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::invalid_argument);
}

TEST(channel, slot_exhaustion_falls_back_to_the_socket_and_returns_to_slots_by_itself) {
    test_server ts("exhaust");
    client_options o = remote();
    o.slots = 2;
    auto c = client::init(ts.endpoint, o).value();
    std::atomic<int> ok{0};
    callbacks cb;
    cb.context = &ok;
    cb.completion = [](void* ctx, outcome& r) {
        if (r) {
            static_cast<std::atomic<int>*>(ctx)->fetch_add(1);
        }
    };
    std::uint64_t outs[4] = {};
    // Two blocked commands hold both slots.
    for (int i = 0; i < 2; ++i) {
        ASSERT_TRUE(c->execute(op_block, bytes_of("s"), std::as_writable_bytes(std::span(&outs[i], 1)), cb,
                               {.on_worker = true})
                        .has_value());
    }
    ts.wait_blocked(2);
    EXPECT_EQ(c->stats().slot_commands, 2U);
    // No slot free: this one travels over the socket and completes while the others still wait.
    std::vector<std::byte> out(8);
    auto r = c->execute(op_echo, bytes_of("via socket"), out);
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_EQ(c->stats().backup_commands, 1U);
    ts.open_gate();
    for (int i = 0; i < 1000 && ok.load() < 2; ++i) {
        std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(ok.load(), 2);
    ASSERT_TRUE(c->execute(op_echo, bytes_of("slot again"), out).has_value());
    EXPECT_EQ(c->stats().slot_commands, 3U);
    EXPECT_EQ(c->stats().backup_commands, 1U);
}

TEST(channel, shared_memory_failure_means_backup_mode_and_commands_still_complete) {
    test_server ts("shmfail");
    client_options o = remote();
    o.simulate_shm_failure = true;
    o.shm_retry = 0ms;
    auto c = client::init(ts.endpoint, o).value();
    std::vector<std::byte> out(16);
    auto r = c->execute(op_echo, bytes_of("no shm"), out);
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_EQ(string_of(std::span(out).first(r->output_len)), "no shm");
    EXPECT_FALSE(c->stats().shared_memory);
    EXPECT_GE(c->stats().shm_setups_failed, 1U);
    EXPECT_EQ(c->stats().backup_commands, 1U);
}

TEST(channel, a_refused_segment_is_retried_while_commands_travel_over_the_socket) {
    // The server refuses segments beyond its slot limit: the client works over the socket.
    server_options so;
    so.max_slots = 4;
    test_server ts("refused", so);
    client_options o = remote();
    o.slots = 8;
    o.shm_retry = 0ms;
    auto c = client::init(ts.endpoint, o).value();
    EXPECT_FALSE(c->stats().shared_memory);
    std::vector<std::byte> out(16);
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(c->execute(op_echo, bytes_of("still works"), out).has_value());
    }
    EXPECT_EQ(c->stats().backup_commands, 3U);
    EXPECT_GE(ts.srv->stats().shm_refused, 2U);  // hello, then at least one retry
}

TEST(channel, an_overclaiming_handler_cannot_expose_bytes_past_the_output) {
    test_server ts("overclaim");
    auto c = client::init(ts.endpoint, remote()).value();
    std::vector<std::byte> out(4);
    auto r = c->execute(op_overclaim, bytes_of("abcdefgh"), out);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->output_len, 4U);
}

TEST(channel, a_restarted_server_is_reachable_by_new_clients) {
    const std::string path = "/tmp/datapump-ipc-restart-" + std::to_string(::getpid()) + ".sock";
    auto runtime = server_runtime::init().value();
    server_handlers h;
    h.exec = [](connection&, std::uint32_t, std::span<const std::byte> in, std::span<std::byte>) {
        return exec_result{static_cast<std::int32_t>(in.size()), 0};
    };
    auto first = runtime->create(path, h).value();
    // A second server on a live endpoint is refused.
    auto second = runtime->create(path, h);
    ASSERT_FALSE(second.has_value());
    EXPECT_EQ(second.error().code, errc::busy);
    first.reset();
    auto again = runtime->create(path, h);
    ASSERT_TRUE(again.has_value()) << describe(again.error());
    auto c = client::init(path, remote()).value();
    auto r = c->execute(1, bytes_of("abc"), {});
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 3);
}

TEST(channel, init_of_an_endpoint_nobody_serves_says_not_found) {
    auto c = client::init(unique_endpoint("nobody"), remote());
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, errc::not_found);
}

TEST(channel, concurrent_sync_callers_share_one_client) {
    test_server ts("threads");
    client_options o = remote();
    o.slots = 4;  // fewer slots than threads: some commands take the backup path
    auto c = client::init(ts.endpoint, o).value();
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 300; ++i) {
                const std::string in = std::to_string(t) + "/" + std::to_string(i);
                std::vector<std::byte> out(32);
                auto r = c->execute(op_echo, bytes_of(in), out, {}, {.on_worker = (i % 2) == 0});
                if (!r || string_of(std::span(out).first(r->output_len)) != in) {
                    bad.fetch_add(1);
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(c->stats().slot_commands + c->stats().backup_commands, 1800U);
}

}  // namespace
}  // namespace datapump::ipc
