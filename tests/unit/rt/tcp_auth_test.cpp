// What keeps a hostile network out of rt's TCP links (issue 14): a peer proves the shared key
// before it reaches a port (an old hello, no key or a wrong key is closed and counted), the server
// proves it back, links and handshakes are capped, a silent peer is closed after the handshake
// timeout and a silent link after the idle timeout (heartbeats keep a slow stream alive), and
// serve_tcp binds loopback unless told otherwise and refuses to serve without a key elsewhere.
#include "tcp_support.hpp"

#include "support/wait.hpp"

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace datapump::rt::testing {
namespace {

// A serving system B with a "sink" port that counts its upcalls, and a connecting system A with a
// "src" port; each test picks B's link config and serve options.
class RtTcpAuth : public ::testing::Test {
protected:
    void TearDown() override {
        sink_.close();
        src_.close();
        b_.reset();
        a_.reset();
    }

    // B serving with `config` (key included) and `options`; false when serve_tcp refused.
    bool serve(system_config config, tcp_serve_options options = {}) {
        b_ = make_system(config);
        if (!b_) {
            return false;
        }
        sink_ = make_port(*b_, "sink", [this](upcall& up) {
            if (!up.calibrating()) {
                upcalls_.fetch_add(1);
            }
        });
        auto bound = b_->serve_tcp(options);
        if (!bound) {
            refused_ = bound.error();
            return false;
        }
        port_ = *bound;
        return true;
    }

    // A with `config` and a source of `count` buffers of 1 KiB.
    void client(system_config config, std::uint64_t count = 20) {
        a_ = make_system(config);
        ASSERT_TRUE(a_);
        src_ = make_port(*a_, "src", [count](upcall& up) {
            if (up.calibrating()) {
                return;
            }
            up.set_length(1024);
            if (up.sequence() + 1 >= count) {
                up.end_of_stream();
            }
        });
    }

    std::string at(std::string_view name) const {
        return "tcp@127.0.0.1:" + std::to_string(port_) + "/" + std::string(name);
    }

    std::expected<connection, refusal> connect(double rate = 1000) {
        return a_->connect({"src", at("sink")}, make_qos(rate, 100ms, late_policy::deliver_late, 4, 1024));
    }

    std::unique_ptr<system> a_;
    std::unique_ptr<system> b_;
    port sink_;
    port src_;
    std::uint16_t port_ = 0;
    error refused_{errc::io_error, 0, ""};
    std::atomic<std::uint64_t> upcalls_{0};
};

TEST_F(RtTcpAuth, TheSameKeyConnectsAndBothSidesProvedIt) {
    ASSERT_TRUE(serve(keyed_config("rt-b")));
    client(keyed_config("rt-a"));
    auto c = connect();
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    EXPECT_EQ(c->stats().errors, 0U);
    EXPECT_TRUE(datapump::testing::wait_until([&] { return upcalls_.load() == c->stats().completed; }));
    auto stats = b_->tcp_stats();
    EXPECT_EQ(stats.accepted, 1U);
    EXPECT_EQ(stats.auth_failures, 0U);
}

// A version 1 client (no proof: its hello comes where the answer is due) never gets a welcome,
// nor the port it named.
TEST_F(RtTcpAuth, AnUnauthenticatedHelloIsClosedBeforeItReachesAPort) {
    ASSERT_TRUE(serve(keyed_config("rt-b")));
    int old = dial_loopback(port_);
    detail::wire::tcp_challenge challenge{};
    ASSERT_TRUE(recv_record(old, challenge));
    EXPECT_EQ(challenge.flags, detail::wire::auth_required);
    detail::wire::tcp_welcome welcome{};
    EXPECT_FALSE(raw_hello(old, "sink", 1024, welcome, 1));
    std::size_t after = 0;
    EXPECT_TRUE(closed_by_peer(old, &after));
    EXPECT_EQ(after, 0U);  // no welcome, no proof: nothing but the close
    ::close(old);
    ASSERT_TRUE(datapump::testing::wait_until([&] { return b_->tcp_stats().auth_failures == 1; }));
    EXPECT_EQ(b_->tcp_stats().links, 0U);

    // "sink" was never claimed: a client with the key gets it.
    client(keyed_config("rt-a"));
    auto c = connect();
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    EXPECT_TRUE(c->wait_finished(60s));
}

TEST_F(RtTcpAuth, AWrongKeyOrNoKeyIsRefusedWithTheReason) {
    ASSERT_TRUE(serve(keyed_config("rt-b")));
    client(keyed_config("rt-a", other_key));
    auto wrong = connect();
    ASSERT_FALSE(wrong.has_value());
    EXPECT_NE(wrong.error().reason.find("keys differ"), std::string::npos) << wrong.error().reason;
    src_.close();
    a_.reset();
    client(real_time_config("rt-a"));
    auto none = connect();
    ASSERT_FALSE(none.has_value());
    EXPECT_NE(none.error().reason.find("requires the shared key"), std::string::npos) << none.error().reason;
    // The keyless client hung up instead of answering: counted too.
    ASSERT_TRUE(datapump::testing::wait_until([&] { return b_->tcp_stats().auth_failures == 2; }));
    EXPECT_EQ(b_->tcp_stats().links, 0U);
    EXPECT_EQ(upcalls_.load(), 0U);

    // A raw peer that answers with the wrong key gets a refusal, not a proof, and is closed.
    int raw = dial_loopback(port_);
    EXPECT_FALSE(raw_handshake(raw, other_key));
    EXPECT_TRUE(closed_by_peer(raw));
    ::close(raw);
    EXPECT_TRUE(datapump::testing::wait_until([&] { return b_->tcp_stats().auth_failures == 3; }));
}

// The client checks the server too: a server that answers without proving the key is refused.
TEST_F(RtTcpAuth, AServerWithoutTheKeyIsRefusedByTheClient) {
    system_config b = real_time_config("rt-b");
    tcp_serve_options insecure;
    insecure.insecure_no_auth = true;
    ASSERT_TRUE(serve(b, insecure));
    client(keyed_config("rt-a"));
    auto c = connect();
    ASSERT_FALSE(c.has_value());
    EXPECT_NE(c.error().reason.find("without a key"), std::string::npos) << c.error().reason;
    EXPECT_EQ(upcalls_.load(), 0U);
}

TEST_F(RtTcpAuth, APeerThatSaysNothingIsClosedAfterTheHandshakeTimeout) {
    system_config b = keyed_config("rt-b");
    b.tcp.handshake_timeout = 300ms;
    ASSERT_TRUE(serve(b));
    auto start = std::chrono::steady_clock::now();
    int silent = dial_loopback(port_);
    std::size_t before_close = 0;
    EXPECT_TRUE(closed_by_peer(silent, &before_close));  // the receive itself gives up after 20 s
    auto waited = std::chrono::steady_clock::now() - start;
    ::close(silent);
    EXPECT_EQ(before_close, sizeof(detail::wire::tcp_challenge));
    EXPECT_GE(waited, 300ms);
    EXPECT_LT(waited, 15s);
    EXPECT_TRUE(datapump::testing::wait_until([&] { return b_->tcp_stats().handshake_timeouts == 1; }));
    EXPECT_TRUE(datapump::testing::wait_until([&] { return b_->tcp_stats().handshakes == 0; }));
}

// A link that proved the key and then falls silent is closed after the idle timeout; a slow
// stream (a period longer than that) lives on through the client's heartbeats.
TEST_F(RtTcpAuth, ASilentLinkIsClosedButHeartbeatsKeepASlowOneAlive) {
    system_config b = keyed_config("rt-b");
    b.tcp.idle_timeout = 400ms;
    b.tcp.heartbeat = 100ms;
    ASSERT_TRUE(serve(b));
    int quiet = dial_loopback(port_);
    ASSERT_TRUE(raw_handshake(quiet, test_key));
    detail::wire::tcp_welcome welcome{};
    ASSERT_TRUE(raw_hello(quiet, "sink", 1024, welcome));
    ASSERT_EQ(welcome.status, 0);
    EXPECT_TRUE(closed_by_peer(quiet));
    ::close(quiet);
    ASSERT_TRUE(datapump::testing::wait_until([&] { return b_->tcp_stats().idle_timeouts == 1; }));

    system_config a = keyed_config("rt-a");
    a.tcp.heartbeat = 100ms;
    client(a, 3);
    ASSERT_TRUE(datapump::testing::wait_until([&] { return b_->tcp_stats().links == 0; }));
    auto c = connect(1.5);  // a period of 667 ms: longer than B's idle timeout
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    EXPECT_EQ(c->stats().errors, 0U);
    EXPECT_EQ(b_->tcp_stats().idle_timeouts, 1U);
    EXPECT_TRUE(datapump::testing::wait_until([&] { return upcalls_.load() == c->stats().completed; }));
}

TEST_F(RtTcpAuth, LinksAndHandshakesOverTheirCapsAreClosedRightAfterAccept) {
    tcp_serve_options capped;
    capped.max_links = 1;
    capped.max_handshakes = 1;
    ASSERT_TRUE(serve(keyed_config("rt-b"), capped));

    // One handshake in progress (silent): a second connection is closed without a challenge.
    int first = dial_loopback(port_);
    detail::wire::tcp_challenge challenge{};
    ASSERT_TRUE(recv_record(first, challenge));
    int second = dial_loopback(port_);
    std::size_t got = 0;
    EXPECT_TRUE(closed_by_peer(second, &got));
    EXPECT_EQ(got, 0U);
    ::close(second);
    ::close(first);
    EXPECT_GE(b_->tcp_stats().over_cap, 1U);

    // One link established (a long stream): the next client is refused.
    client(keyed_config("rt-a"), 1'000'000);
    std::optional<connection> c;
    ASSERT_TRUE(datapump::testing::wait_until([&] {
        auto r = connect(100);
        if (r) {
            c = std::move(*r);
        }
        return c.has_value();  // until the first connection's handshake slot is free again
    }));
    ASSERT_EQ(b_->tcp_stats().links, 1U);
    auto other = make_system(keyed_config("rt-c"));
    ASSERT_TRUE(other);
    port src2 = make_port(*other, "src2", [](upcall& up) { up.set_length(16); });
    auto refused = other->connect({"src2", at("sink")}, make_qos(100, 100ms, late_policy::deliver_late, 4, 1024));
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.error().reason.find("link cap"), std::string::npos) << refused.error().reason;
    c->disconnect();
    src2.close();
    other.reset();
}

// /proc/net/tcp (and tcp6): whether a socket listens on `port`, and on which address (hex, as
// the kernel writes it).
std::vector<std::string> listeners_on(std::uint16_t port) {
    std::vector<std::string> found;
    char want[8];
    std::snprintf(want, sizeof want, "%04X", port);
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line;
        std::getline(in, line);
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string slot, local, remote, state;
            fields >> slot >> local >> remote >> state;
            auto colon = local.find(':');
            if (state == "0A" && colon != std::string::npos && local.substr(colon + 1) == want) {
                found.push_back(local.substr(0, colon));
            }
        }
    }
    return found;
}

TEST_F(RtTcpAuth, TheDefaultBindIsLoopback) {
    ASSERT_TRUE(serve(keyed_config("rt-b")));  // tcp_serve_options{}: no host given
    auto where = listeners_on(port_);
    ASSERT_EQ(where.size(), 1U);
    EXPECT_EQ(where[0], "0100007F");  // 127.0.0.1
}

TEST_F(RtTcpAuth, WithoutAKeyServeTcpRefusesUnlessInsecureAndLoopback) {
    auto keyless = make_system(real_time_config("rt-x"));
    ASSERT_TRUE(keyless);
    auto refused = keyless->serve_tcp(tcp_serve_options{});
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, errc::invalid_argument);
    tcp_serve_options everywhere;
    everywhere.host = "";
    everywhere.insecure_no_auth = true;
    refused = keyless->serve_tcp(everywhere);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, errc::invalid_argument);
    keyless.reset();

    // insecure_no_auth on loopback: a keyless client connects.
    tcp_serve_options insecure;
    insecure.insecure_no_auth = true;
    ASSERT_TRUE(serve(real_time_config("rt-b"), insecure));
    client(real_time_config("rt-a"));
    auto c = connect();
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    EXPECT_TRUE(c->wait_finished(60s));
}

TEST(RtTcpKey, AKeyFileWorksAndAShortKeyOrBothAreRefused) {
    system_config config = real_time_config("rt-k");
    config.tcp.key = "too short";
    EXPECT_FALSE(system::create(config).has_value());
    char path[] = "/tmp/rt-key-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string line = std::string(test_key) + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    ::close(fd);
    config.tcp.key_file = path;
    EXPECT_FALSE(system::create(config).has_value());  // both
    config.tcp.key.clear();
    auto from_file = detail::tcp_key::load("", path);
    ASSERT_TRUE(from_file.has_value());
    EXPECT_EQ(from_file->bytes().size(), test_key.size());  // the trailing newline dropped
    EXPECT_TRUE(system::create(config).has_value());
    config.tcp.key_file = std::string(path) + ".missing";
    EXPECT_FALSE(system::create(config).has_value());
    ::unlink(path);
}

}  // namespace
}  // namespace datapump::rt::testing
