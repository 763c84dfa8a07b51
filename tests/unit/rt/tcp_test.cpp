// Inter-machine rt links over TCP, on loopback: two systems in this process, one serving TCP,
// both with the shared key. Byte-exact delivery, the far side's chain on its own buffer, its
// admission's refusal, hostile bytes on the listening port (before and after the key's proof), and
// the far side going away mid-stream. (The proof itself, the caps and timeouts: tcp_auth_test.cpp.)
#include "tcp_support.hpp"

#include "support/wait.hpp"

#include <mutex>
#include <thread>
#include <vector>

namespace datapump::rt::testing {
namespace {

class RtTcp : public ::testing::Test {
protected:
    void SetUp() override {
        a_ = make_system(keyed_config("rt-a"));
        b_ = make_system(keyed_config("rt-b"));
        ASSERT_TRUE(a_ && b_);
        sink_ = make_port(*b_, "sink", [this](upcall& up) {
            if (up.calibrating()) {
                return;
            }
            std::lock_guard lock(mutex_);
            received_.insert(received_.end(), up.data().begin(), up.data().begin() + static_cast<long>(up.length()));
            ++upcalls_;
        });
        flip_ = make_port(*b_, "flip", [](upcall& up) {
            for (std::size_t i = 0; i < up.length(); ++i) {
                up.data()[i] = ~up.data()[i];
            }
        });
        greedy_ = make_port(*b_, "greedy", [](upcall&) {}, 80ms);
        auto port = b_->serve_tcp("127.0.0.1", 0);
        ASSERT_TRUE(port.has_value());
        port_ = *port;
    }

    // The systems go first: B's reader and VP may still be delivering into received_.
    void TearDown() override {
        sink_.close();
        flip_.close();
        greedy_.close();
        b_.reset();
        a_.reset();
    }

    std::string at(std::string_view name) const { return "tcp@127.0.0.1:" + std::to_string(port_) + "/" + std::string(name); }

    // A source that records which buffers it filled: a release that finds every buffer busy (a
    // loaded machine) is skipped, and its sequence number never reaches the source.
    port source(std::uint64_t count, std::size_t size) {
        return make_port(*a_, "src", [this, count, size](upcall& up) {
            if (up.calibrating()) {
                return;
            }
            {
                std::lock_guard lock(mutex_);
                sourced_.push_back(up.sequence());
            }
            fill(up.data().subspan(0, size), up.sequence());
            up.set_length(size);
            if (up.sequence() + 1 >= count) {
                up.end_of_stream();
            }
        });
    }

    // What the sink must have received: the sourced buffers, in order. Call with mutex_ held.
    std::vector<std::byte> expected(std::size_t size, bool flipped) {
        std::vector<std::byte> all(sourced_.size() * size);
        for (std::size_t i = 0; i < sourced_.size(); ++i) {
            fill(std::span<std::byte>(all.data() + i * size, size), sourced_[i]);
        }
        if (flipped) {
            for (auto& b : all) {
                b = ~b;
            }
        }
        return all;
    }

    // Waits (bounded) until the sink has every sourced buffer of `size` bytes.
    bool received_all(std::size_t size) {
        return datapump::testing::wait_until([&] {
            std::lock_guard lock(mutex_);
            return received_.size() >= sourced_.size() * size;
        });
    }

    std::unique_ptr<system> a_;
    std::unique_ptr<system> b_;
    port sink_;
    port flip_;
    port greedy_;
    std::uint16_t port_ = 0;
    std::mutex mutex_;
    std::vector<std::byte> received_;  // guarded by mutex_
    std::size_t upcalls_ = 0;          // guarded by mutex_
    std::vector<std::uint64_t> sourced_;  // guarded by mutex_
};

TEST_F(RtTcp, DeliversByteExactAtTheRequestedRate) {
    const std::uint64_t count = 100;
    const std::size_t size = 8192;
    port src = source(count, size);
    auto start = std::chrono::steady_clock::now();
    auto c = a_->connect({"src", at("sink")}, make_qos(500, 100ms, late_policy::deliver_late, 8, size));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    ASSERT_TRUE(received_all(size));
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_GE(elapsed, static_cast<double>(count - 1) / 500);  // releases never precede their instants
    auto stats = c->stats();
    EXPECT_EQ(stats.errors, 0U);
    EXPECT_EQ(stats.buffers_free, stats.buffers);
    EXPECT_GE(stats.completed + stats.starved, count);
    std::lock_guard lock(mutex_);
    EXPECT_EQ(stats.completed, sourced_.size());
    EXPECT_EQ(received_, expected(size, false));
    EXPECT_EQ(upcalls_, sourced_.size());
}

TEST_F(RtTcp, TheFarChainRunsOnOneBufferOfItsOwn) {
    const std::uint64_t count = 30;
    const std::size_t size = 4096;
    port src = source(count, size);
    auto c = a_->connect({"src", at("flip"), at("sink")}, make_qos(1000, 100ms, late_policy::deliver_late, 8, size));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    ASSERT_TRUE(received_all(size));
    std::lock_guard lock(mutex_);
    EXPECT_EQ(received_, expected(size, true));
}

TEST_F(RtTcp, TheFarAdmissionRefusesWithItsReasonAndTheSourceIsFreeAgain) {
    port src = source(10, 1024);
    auto greedy = a_->connect({"src", at("greedy")}, make_qos(100, 100ms));
    ASSERT_FALSE(greedy.has_value());
    EXPECT_EQ(greedy.error().code, errc::full);
    EXPECT_NE(greedy.error().reason.find("refused"), std::string::npos) << greedy.error().reason;
    EXPECT_NE(greedy.error().reason.find("density"), std::string::npos) << greedy.error().reason;
    auto unknown = a_->connect({"src", at("nobody")}, make_qos(100, 100ms));
    ASSERT_FALSE(unknown.has_value());
    EXPECT_NE(unknown.error().reason.find("no port named 'nobody'"), std::string::npos) << unknown.error().reason;
    auto bad = a_->connect({"src", "tcp@127.0.0.1/sink"}, make_qos(100));
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, errc::invalid_argument);
    auto ok = a_->connect({"src", at("sink")}, make_qos(100, 100ms));
    ASSERT_TRUE(ok.has_value()) << ok.error().reason;
    EXPECT_TRUE(ok->wait_finished(60s));
}

TEST_F(RtTcp, NobodyListeningIsNotFound) {
    port src = source(10, 1024);
    int probe = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    ::getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len);
    std::uint16_t unused = ntohs(addr.sin_port);
    ::close(probe);  // bound then closed: nobody listens there
    auto c = a_->connect({"src", "tcp@127.0.0.1:" + std::to_string(unused) + "/sink"}, make_qos(100));
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, errc::not_found);
}

// Raw bytes to the listening port: garbage instead of an answer, then a peer that proves the key,
// sends a well-formed hello and then a bad frame.
TEST_F(RtTcp, HostileBytesLoseTheirLinkAndNothingElse) {
    int garbage = dial_loopback(port_);
    std::vector<char> junk(200, 'x');
    ASSERT_EQ(::send(garbage, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
    EXPECT_TRUE(closed_by_peer(garbage));
    ::close(garbage);

    // A well-formed hello for "sink", then a frame longer than the buffer.
    int bad = dial_loopback(port_);
    ASSERT_TRUE(raw_handshake(bad, test_key));
    detail::wire::tcp_welcome welcome{};
    ASSERT_TRUE(raw_hello(bad, "sink", 1024, welcome));
    EXPECT_EQ(welcome.status, 0);
    detail::wire::tcp_frame frame{.magic = detail::wire::frame_magic, .flags = 0, .sequence = 0,
                                  .length = 1 << 20};  // 1 MiB into a 1 KiB buffer
    ASSERT_TRUE(send_record(bad, frame));
    EXPECT_TRUE(closed_by_peer(bad));
    ::close(bad);

    // The port it held is free again and the server still serves.
    port src = source(20, 1024);
    std::optional<connection> c;
    ASSERT_TRUE(datapump::testing::wait_until([&] {
        auto r = a_->connect({"src", at("sink")}, make_qos(1000, 100ms, late_policy::deliver_late, 4, 1024));
        if (r) {
            c = std::move(*r);
        }
        return c.has_value();
    }));
    ASSERT_TRUE(c->wait_finished(60s));
    ASSERT_TRUE(received_all(1024));
    std::lock_guard lock(mutex_);
    EXPECT_EQ(received_, expected(1024, false));
}

TEST_F(RtTcp, TheFarSideGoingAwayEndsTheConnectionWithAnError) {
    port src = source(1'000'000, 1024);
    auto c = a_->connect({"src", at("sink")}, make_qos(1000, 100ms, late_policy::deliver_late, 4, 1024));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(datapump::testing::wait_until([&] { return c->stats().completed >= 10; }));
    sink_.close();
    flip_.close();
    greedy_.close();
    b_.reset();  // the serving system goes: its sockets close
    ASSERT_TRUE(c->wait_finished(60s));
    auto stats = c->stats();
    EXPECT_GE(stats.errors, 1U);
    EXPECT_EQ(stats.buffers_free, stats.buffers);
}

}  // namespace
}  // namespace datapump::rt::testing
