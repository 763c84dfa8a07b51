// stream::sender's growing files and limits, without HTTP, over a TCP loopback pair and an AF_UNIX
// socketpair:
//   - a growing file (a load-and-play writer in memory) is followed while bytes are appended, to
//     its declared length or, chunked, to the writer's end; the wire bytes are exact;
//   - the writer failing mid-follow (or completing short of the declared length) fails the body;
//   - a follower whose client reads nothing waits on a full socket holding no arena buffer (only
//     the writer's own), then gets every byte when it reads;
//   - a client that takes no byte is cut after the send timeout, a paused stream after the maximum
//     pause (not by the send timeout), and a stalled stream gives its capacity back; each counted.
#include "datapump/stream/sender.hpp"

#include "datapump/fs/registry.hpp"
#include "support/loop_thread.hpp"
#include "support/memory_source.hpp"
#include "unit/fs/test_support.hpp"
#include "unit/stream/socket_pairs.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace datapump::test {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t block = 16 * 1024;
constexpr std::uint32_t buffer_count = 16;
constexpr auto limit = std::chrono::seconds(30);

// What the sender told its owner. Written on the loop thread; read by the test after `finished`.
class owner final : public stream::sender_owner {
public:
    stream::sender* s = nullptr;
    std::uint64_t progressed = 0;
    std::atomic<int> growth_waits{0};
    std::promise<std::string> finished;  // "" when done, else why it failed

    void sender_progress(std::uint64_t n) override { progressed += n; }
    void sender_paused() override {}
    void sender_resumed() override {}
    bool sender_admitted() override {
        if (s->admission_released()) {
            s->admit({}, {});  // taken again (with nothing to hold: the test's capacity is not asked again)
        }
        return true;
    }
    void sender_await_growth() override { growth_waits.fetch_add(1); }
    void sender_done() override { finished.set_value(""); }
    void sender_failed(std::string_view why) override {
        s->end();  // as the connection's close does
        finished.set_value(why.empty() ? std::string("(no reason)") : std::string(why));
    }
    void sender_debug(std::string_view /*detail*/) override {}
    void sender_settle() override {}
};

// Reads to EOF (or an error).
std::string read_all(int fd) {
    std::string got;
    char buf[65536];
    for (;;) {
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r <= 0) {
            return got;
        }
        got.append(buf, static_cast<std::size_t>(r));
    }
}

// Reads `n` bytes (or to EOF / an error).
std::string read_n(int fd, std::size_t n) {
    std::string got;
    char buf[65536];
    while (got.size() < n) {
        const ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - got.size()), 0);
        if (r <= 0) {
            break;
        }
        got.append(buf, static_cast<std::size_t>(r));
    }
    return got;
}

// The data of a chunked body, or "!" + why when its framing is wrong.
std::string unchunk(std::string_view wire) {
    std::string data;
    std::size_t at = 0;
    bool first = true;
    for (;;) {
        if (!first) {
            if (wire.substr(at, 2) != "\r\n") {
                return "!no CRLF after a chunk at " + std::to_string(at);
            }
            at += 2;
        }
        first = false;
        const std::size_t eol = wire.find("\r\n", at);
        if (eol == std::string_view::npos) {
            return "!no chunk line at " + std::to_string(at);
        }
        const std::size_t size = std::stoul(std::string(wire.substr(at, eol - at)), nullptr, 16);
        at = eol + 2;
        if (size == 0) {
            return wire.substr(at) == "\r\n" ? data : "!bad end";
        }
        if (at + size > wire.size()) {
            return "!short chunk";
        }
        data.append(wire.substr(at, size));
        at += size;
    }
}

struct net_case {
    bool tcp;
    const char* label;
};

class sender_follow_test : public ::testing::TestWithParam<net_case> {
protected:
    void SetUp() override {
        auto c = cache::file_cache::create({.buffers = {.buffer_size = block, .buffer_count = buffer_count}});
        ASSERT_TRUE(c.has_value()) << describe(c.error());
        cache_ = std::move(*c);
        loop_ = std::make_unique<loop_thread>(&cache_->buffers().arena());
        ASSERT_TRUE(loop_->ok()) << loop_->error_text();
        file_ = std::make_shared<testing::memory_file>();
        writer_ = cache_->create_writer(file_, file_);
        pair_ = GetParam().tcp ? tcp_pair() : unix_pair();
        loop_->sync([this] {
            sender_ = std::make_unique<stream::sender>(stream::sender_env{.loop = &loop_->loop(),
                                                                          .cache = cache_.get(),
                                                                          .path = stream::send_path::send,
                                                                          .counters = &counters_,
                                                                          .bytes_sent = &bytes_sent_,
                                                                          .limits = &limits_},
                                                       pair_.ours.get(), owner_, "test");
            owner_.s = sender_.get();
        });
    }
    void TearDown() override {
        writer_.reset();  // an unfinished writer fails its file
        if (loop_ && sender_) {
            ::shutdown(pair_.ours.get(), SHUT_RDWR);  // as the connection's close: every send completes
            EXPECT_TRUE(wait_for([&] {
                bool idle = true;
                loop_->sync([&] { idle = sender_->idle(); });
                return idle;
            }, std::chrono::milliseconds(limit)));
            loop_->sync([this] { sender_.reset(); });
            cache_->quiesce();  // fallback reads post to the loop: every one before it goes
        }
        loop_.reset();
        if (cache_ != nullptr) {
            cache_->quiesce();
            EXPECT_EQ(cache_->buffers().pinned_buffers(), 0U) << "every loan is back";
        }
    }

    // Appends `n` pattern bytes to the growing file and tells the sender (as the upload's doorbell
    // does: a kick for a follower at the frontier; others ignore it).
    void append(std::uint64_t n) {
        const std::uint64_t to = writer_->committed() + n;
        while (writer_->committed() < to) {
            auto loan = writer_->loan_write(static_cast<std::size_t>(to - writer_->committed()));
            ASSERT_TRUE(loan) << describe(loan.error());
            auto space = loan->data();
            const std::uint64_t at = writer_->committed();
            for (std::size_t i = 0; i < space.size(); ++i) {
                space[i] = testing::pattern_byte(seed, at + i);
            }
            ASSERT_TRUE(std::move(*loan).commit(space.size()));
        }
        kick();
    }
    void kick() {
        loop_->loop().post([this] { sender_->grown(); });
    }
    void follow(std::optional<std::uint64_t> length, stream::body_framing framing) {
        loop_->sync([&] {
            sender_->begin(stream::growing_file{.view = writer_->file(), .length = length, .framing = framing,
                                                .name = "growing"});
            sender_->start();
        });
    }
    std::string outcome() {
        auto f = owner_.finished.get_future();
        if (f.wait_for(limit) != std::future_status::ready) {
            ADD_FAILURE() << "the transfer did not end";
            return "(hung)";
        }
        return f.get();
    }
    std::string expected(std::uint64_t n) const {
        std::string s(n, '\0');
        for (std::uint64_t i = 0; i < n; ++i) {
            s[i] = static_cast<char>(testing::pattern_byte(seed, i));
        }
        return s;
    }
    void watch(stream::send_limits limits) {
        loop_->sync([&] { sender_->watch(limits, "GET /x", 0); });
    }

    static constexpr std::uint64_t seed = 7;
    std::unique_ptr<cache::file_cache> cache_;
    std::unique_ptr<loop_thread> loop_;
    std::shared_ptr<testing::memory_file> file_;
    std::unique_ptr<cache::writer> writer_;
    socket_pair pair_;
    stream::send_counters counters_;
    stream::limit_counters limits_;
    std::atomic<std::uint64_t> bytes_sent_{0};
    owner owner_;
    std::unique_ptr<stream::sender> sender_;
};

TEST_P(sender_follow_test, a_fixed_length_body_follows_the_writer_to_its_length) {
    const std::uint64_t total = 3 * block + 777;
    append(1000);  // some bytes before the follower comes
    auto reader = std::async(std::launch::async, [&] { return read_all(pair_.theirs.get()); });
    follow(total, stream::body_framing::none);
    for (std::uint64_t at = 1000; at < total;) {
        const std::uint64_t step = std::min<std::uint64_t>(4321, total - at);
        std::this_thread::sleep_for(2ms);  // the follower catches up and waits at the frontier
        append(step);
        at += step;
    }
    EXPECT_EQ(outcome(), "") << "done at the declared length, before the writer finishes";
    ::shutdown(pair_.ours.get(), SHUT_WR);
    const std::string got = reader.get();
    EXPECT_EQ(got.size(), total);
    EXPECT_TRUE(got == expected(total)) << "the wire bytes are the file's";
    EXPECT_EQ(owner_.progressed, total);
    EXPECT_EQ(counters_.send_bytes.load(), total) << "plain sends, whatever the path";
    EXPECT_EQ(bytes_sent_.load(), total);
    EXPECT_GT(owner_.growth_waits.load(), 0) << "it did wait at the frontier";
}

TEST_P(sender_follow_test, a_chunked_body_frames_each_send_and_ends_with_the_writer) {
    const std::uint64_t total = 2 * block + 5;
    auto reader = std::async(std::launch::async, [&] { return read_all(pair_.theirs.get()); });
    follow(std::nullopt, stream::body_framing::chunked);
    for (std::uint64_t at = 0; at < total;) {
        const std::uint64_t step = std::min<std::uint64_t>(3000, total - at);
        std::this_thread::sleep_for(2ms);
        append(step);
        at += step;
    }
    ASSERT_TRUE(writer_->finish());
    kick();
    EXPECT_EQ(outcome(), "");
    ::shutdown(pair_.ours.get(), SHUT_WR);
    const std::string wire = reader.get();
    EXPECT_TRUE(unchunk(wire) == expected(total)) << unchunk(wire).substr(0, 80);
    EXPECT_EQ(owner_.progressed, total) << "body bytes: the data, not the framing";
    EXPECT_EQ(counters_.send_bytes.load(), wire.size()) << "the framing counts as bytes sent";
}

TEST_P(sender_follow_test, an_empty_chunked_upload_is_the_last_chunk_alone) {
    follow(std::nullopt, stream::body_framing::chunked);
    ASSERT_TRUE(writer_->finish());
    kick();
    EXPECT_EQ(outcome(), "");
    ::shutdown(pair_.ours.get(), SHUT_WR);
    EXPECT_EQ(read_all(pair_.theirs.get()), "0\r\n\r\n");
}

TEST_P(sender_follow_test, the_writer_failing_mid_follow_fails_the_body) {
    auto reader = std::async(std::launch::async, [&] { return read_all(pair_.theirs.get()); });
    follow(std::nullopt, stream::body_framing::chunked);
    append(block + 10);
    ASSERT_TRUE(wait_for([&] {
        std::uint64_t sent = 0;
        loop_->sync([&] { sent = owner_.progressed; });
        return sent == block + 10;
    }));
    writer_->fail(error{errc::io_error, 0, "test: the upload broke"});
    kick();
    EXPECT_EQ(outcome(), "the upload this body follows failed");
    ::shutdown(pair_.ours.get(), SHUT_RDWR);
    const std::string wire = reader.get();
    EXPECT_EQ(wire.find("0\r\n\r\n"), std::string::npos) << "no last chunk: the client sees a truncated body";
}

TEST_P(sender_follow_test, a_writer_complete_short_of_the_declared_length_fails_the_body) {
    auto reader = std::async(std::launch::async, [&] { return read_all(pair_.theirs.get()); });
    follow(2 * block, stream::body_framing::none);
    append(block);
    ASSERT_TRUE(writer_->finish());
    kick();
    EXPECT_EQ(outcome(), "the upload ended before its declared length");
    ::shutdown(pair_.ours.get(), SHUT_RDWR);
    EXPECT_EQ(reader.get().size(), block);
}

TEST_P(sender_follow_test, a_follower_on_a_full_socket_holds_no_buffer_then_gets_every_byte) {
    shrink_buffers(pair_, 8192);
    const std::uint64_t total = 6 * block + 99;
    follow(total, stream::body_framing::none);
    append(total);  // the writer pins its current (last, partial) block
    // The client reads nothing: the sender ends up waiting for room with nothing of its own pinned.
    const auto settled = [&] {
        bool waiting = false;
        loop_->sync([&] { waiting = sender_->waiting_on_client(); });
        return waiting && cache_->buffers().pinned_buffers() == 1U;
    };
    ASSERT_TRUE(wait_for(settled, 10s)) << "pinned: " << cache_->buffers().pinned_buffers();
    std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(settled()) << "a stalled follower stays without a buffer";
    EXPECT_EQ(buffer_count - cache_->buffers().pinned_buffers(), buffer_count - 1) << "free buffers";
    loop_->sync([&] { EXPECT_LT(owner_.progressed, total) << "the socket was full"; });
    auto reader = std::async(std::launch::async, [&] { return read_all(pair_.theirs.get()); });
    EXPECT_EQ(outcome(), "");
    ::shutdown(pair_.ours.get(), SHUT_WR);
    EXPECT_TRUE(reader.get() == expected(total)) << "the owed bytes went first, from fresh loans";
}

TEST_P(sender_follow_test, a_client_that_reads_nothing_is_cut_after_the_send_timeout) {
    shrink_buffers(pair_, 8192);
    watch({.send_timeout = 300ms, .max_pause = 60s, .stall_release = 2s});
    const auto began = std::chrono::steady_clock::now();
    follow(std::nullopt, stream::body_framing::none);
    append(8 * block);  // far more than the socket holds
    EXPECT_EQ(outcome(), "send timeout");
    const auto took = std::chrono::steady_clock::now() - began;
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 10s);
    EXPECT_EQ(limits_.send_timeouts.load(), 1U);
    EXPECT_EQ(limits_.pause_timeouts.load(), 0U);
}

TEST_P(sender_follow_test, a_follower_waiting_for_the_writer_is_not_timed_out) {
    watch({.send_timeout = 100ms, .max_pause = 60s, .stall_release = 2s});
    auto reader = std::async(std::launch::async, [&] { return read_all(pair_.theirs.get()); });
    follow(std::nullopt, stream::body_framing::none);
    append(100);
    std::this_thread::sleep_for(400ms);  // the writer is slow: the client owes nothing
    append(100);
    ASSERT_TRUE(writer_->finish());
    kick();
    EXPECT_EQ(outcome(), "");
    EXPECT_EQ(limits_.send_timeouts.load(), 0U);
    ::shutdown(pair_.ours.get(), SHUT_WR);
    EXPECT_EQ(reader.get().size(), 200U);
}

INSTANTIATE_TEST_SUITE_P(nets, sender_follow_test,
                         ::testing::Values(net_case{true, "tcp"}, net_case{false, "unix"}),
                         [](const ::testing::TestParamInfo<net_case>& c) { return std::string(c.param.label); });

// The limits of a file range (the posix provider's page cache: sendfile).
class sender_limits_test : public ::testing::Test {
protected:
    void SetUp() override {
        auto c = cache::file_cache::create({.buffers = {.buffer_size = 64 * 1024, .buffer_count = 8}});
        ASSERT_TRUE(c.has_value()) << describe(c.error());
        cache_ = std::move(*c);
        auto inst = providers_.instantiate("posix", {.root = dir_.str(), .cache = nullptr, .flags = 0});
        ASSERT_TRUE(inst.has_value()) << describe(inst.error());
        instance_ = std::move(*inst);
        loop_ = std::make_unique<loop_thread>(&cache_->buffers().arena());
        ASSERT_TRUE(loop_->ok()) << loop_->error_text();
        pair_ = tcp_pair();
        shrink_buffers(pair_, 8192);
        write_file(dir_.file("f"), pattern(size, 41));
    }
    void TearDown() override {
        ::shutdown(pair_.ours.get(), SHUT_RDWR);
        if (sender_) {
            EXPECT_TRUE(wait_for([&] {
                bool idle = true;
                loop_->sync([&] { idle = sender_->idle(); });
                return idle;
            }));
            loop_->sync([this] { sender_.reset(); });
        }
        loop_.reset();
    }
    // Watches a response with `limits` and sends the file with `controls` and `capacity`.
    void send(stream::send_limits limits, std::shared_ptr<stream::control> controls = nullptr,
              stream::reservation capacity = {}) {
        loop_->sync([&] {
            sender_ = std::make_unique<stream::sender>(stream::sender_env{.loop = &loop_->loop(),
                                                                          .cache = cache_.get(),
                                                                          .path = stream::send_path::sendfile,
                                                                          .counters = &counters_,
                                                                          .bytes_sent = &bytes_sent_,
                                                                          .limits = &limits_},
                                                       pair_.ours.get(), owner_, "test");
            owner_.s = sender_.get();
            sender_->watch(limits, "GET /f", 0);
            auto f = instance_.open("f");
            ASSERT_TRUE(f) << describe(f.error());
            auto begun = sender_->begin({.file = std::make_shared<fs::file>(std::move(*f)),
                                         .start = 0,
                                         .length = size,
                                         .file_size = size,
                                         .controls = std::move(controls),
                                         .pacing = {},
                                         .capacity = std::move(capacity)});
            ASSERT_TRUE(begun) << describe(begun.error());
            sender_->start();
        });
    }
    std::string outcome() {
        auto f = owner_.finished.get_future();
        if (f.wait_for(limit) != std::future_status::ready) {
            ADD_FAILURE() << "the transfer did not end";
            return "(hung)";
        }
        return f.get();
    }

    static constexpr std::uint64_t size = 512 << 10;  // far more than the small socket holds
    temp_dir dir_;
    std::unique_ptr<cache::file_cache> cache_;
    fs::registry providers_;
    fs::provider_instance instance_;
    std::unique_ptr<loop_thread> loop_;
    socket_pair pair_;
    stream::send_counters counters_;
    stream::limit_counters limits_;
    std::atomic<std::uint64_t> bytes_sent_{0};
    owner owner_;
    std::unique_ptr<stream::sender> sender_;
};

TEST_F(sender_limits_test, a_client_that_reads_nothing_is_cut_after_the_send_timeout) {
    const auto began = std::chrono::steady_clock::now();
    send({.send_timeout = 250ms, .max_pause = 60s, .stall_release = 2s});
    EXPECT_EQ(outcome(), "send timeout");
    const auto took = std::chrono::steady_clock::now() - began;
    EXPECT_GE(took, 250ms);
    EXPECT_LT(took, 10s);
    EXPECT_EQ(limits_.send_timeouts.load(), 1U);
}

TEST_F(sender_limits_test, a_paused_stream_is_cut_after_the_maximum_pause_not_by_the_send_timeout) {
    auto controls = std::make_shared<stream::control>();
    controls->pause_requested.store(true);
    const auto began = std::chrono::steady_clock::now();
    send({.send_timeout = 100ms, .max_pause = 400ms, .stall_release = 2s}, controls);
    EXPECT_EQ(outcome(), "paused for longer than max_pause_ms");
    const auto took = std::chrono::steady_clock::now() - began;
    EXPECT_GE(took, 400ms);
    EXPECT_LT(took, 10s);
    EXPECT_EQ(limits_.pause_timeouts.load(), 1U);
    EXPECT_EQ(limits_.send_timeouts.load(), 0U);
}

TEST_F(sender_limits_test, a_stalled_stream_gives_its_capacity_back_and_goes_on_when_read) {
    stream::admission capacity(1000000);
    auto reserved = capacity.reserve(600000);
    ASSERT_TRUE(reserved);
    send({.send_timeout = 5s, .max_pause = 60s, .stall_release = 100ms}, nullptr, std::move(*reserved));
    ASSERT_TRUE(wait_for([&] { return limits_.stall_releases.load() == 1 && capacity.reserved() == 0; }, 5s))
        << "a client that takes nothing lends its capacity to others";
    bool released = false;
    loop_->sync([&] { released = sender_->admission_released(); });
    EXPECT_TRUE(released);
    const std::string got = read_n(pair_.theirs.get(), size);
    EXPECT_EQ(outcome(), "");
    EXPECT_EQ(got.size(), size);
    EXPECT_EQ(limits_.send_timeouts.load(), 0U);
}

}  // namespace
}  // namespace datapump::test
