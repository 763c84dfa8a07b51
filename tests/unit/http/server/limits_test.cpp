// Nothing a client can hold forever (docs/daemon.md, "Limits and timeouts"), on every send path:
// a client that reads nothing is cut after the send timeout (but a paced stream waiting for its
// credit is not), a paused stream is cut after the maximum pause, a stalled paced stream gives its
// capacity to others and takes it back when it reads again, and accepted sockets carry TCP
// keep-alive and TCP_USER_TIMEOUT.
#include "datapump/http/server.hpp"
#include "support/pattern.hpp"
#include "unit/http/server/client.hpp"

#include <gtest/gtest.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace datapump;
using namespace std::chrono_literals;
using test::get_request;
using test::http_client;
namespace fsys = std::filesystem;

constexpr std::uint32_t block_kib = 64;

std::string file_bytes(std::uint64_t seed, std::uint64_t size) {
    std::string s(size, '\0');
    for (std::uint64_t i = 0; i < size; ++i) {
        s[i] = static_cast<char>(datapump::testing::pattern_byte(seed, i));
    }
    return s;
}

// A client that asks for a body and never reads it: its receive buffer is tiny, so the server's
// socket fills at once and stays full.
class non_reader {
public:
    non_reader(std::uint16_t port, const std::string& request) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const int small = 4096;  // before connect: the window scale is fixed by the handshake
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
              ::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
    }
    non_reader(const non_reader&) = delete;
    non_reader& operator=(const non_reader&) = delete;
    ~non_reader() { ::close(fd_); }
    [[nodiscard]] bool ok() const { return ok_; }
    [[nodiscard]] int fd() const { return fd_; }

private:
    int fd_ = -1;
    bool ok_ = false;
};

struct path_setup {
    const char* provider;
    http::send_path path;
    const char* label;
};

class limits_test : public ::testing::TestWithParam<path_setup> {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/datapump-limits-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        big_ = file_bytes(7, 8 * 1024 * 1024 + 77);
        small_ = file_bytes(8, 3 * 1024 * 1024 + 5);
        std::ofstream(root_ / "big.bin", std::ios::binary) << big_;
        std::ofstream(root_ / "small.bin", std::ios::binary) << small_;
        config_.root = root_.string();
        config_.listen_port = 0;
        config_.loops = 2;
        config_.provider = GetParam().provider;
        config_.path = GetParam().path;
        config_.cache_mib = 2;
        config_.buffer_kib = block_kib;
        config_.access_log = std::getenv("DP_TEST_LOG") != nullptr;
    }
    void TearDown() override {
        if (server_) {
            server_->shutdown(0ms);
            server_.reset();
        }
        std::error_code ec;
        fsys::remove_all(root_, ec);
    }
    void start() {
        auto s = http::server::start(config_);
        ASSERT_TRUE(s) << describe(s.error());
        server_ = std::move(*s);
        port_ = server_->port();
    }
    template <class Pred>
    bool eventually(Pred pred, std::chrono::milliseconds within = 10s) {
        const auto until = std::chrono::steady_clock::now() + within;
        while (std::chrono::steady_clock::now() < until) {
            if (pred(server_->view())) {
                return true;
            }
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }
    std::optional<test::http_response> get(const std::string& target) {
        http_client c(port_);
        if (!c.send(get_request(target, "Connection: close\r\n"))) {
            return std::nullopt;
        }
        return c.read_response();
    }

    fsys::path root_;
    std::string big_;
    std::string small_;
    http::server_config config_;
    std::unique_ptr<http::server> server_;
    std::uint16_t port_ = 0;
};

TEST_P(limits_test, a_client_that_reads_nothing_is_cut_after_the_send_timeout) {
    config_.send_timeout_ms = 500;
    start();
    const auto t0 = std::chrono::steady_clock::now();
    non_reader stalled(port_, get_request("/big.bin"));
    ASSERT_TRUE(stalled.ok());
    ASSERT_TRUE(eventually([](const http::server_view& v) { return v.send_timeouts == 1; }))
        << "no send timeout; streams " << server_->view().active_streams;
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 450ms) << "cut before the send timeout";
    // Reset: the connection, its stream and (loan paths) its loans are gone at once.
    EXPECT_TRUE(eventually([](const http::server_view& v) {
        return v.connections == 0 && v.active_streams == 0 && v.cache.loans_out == 0;
    })) << "connections " << server_->view().connections << ", loans " << server_->view().cache.loans_out;
    auto ok = get("/small.bin");
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->body == small_);
}

TEST_P(limits_test, a_paced_stream_waiting_for_credit_is_not_timed_out) {
    // 100 kB/s in 64 KiB pieces: one piece every 0.66 s, each wait for credit longer than the
    // send timeout and than the stall release; the client reads everything at once.
    config_.send_timeout_ms = 300;
    start();
    http_client c(port_);
    ASSERT_TRUE(c.send(get_request("/small.bin?rate=100k&burst=65536")));
    auto head = c.read_response(true);
    ASSERT_TRUE(head);
    ASSERT_EQ(head->status, 200);
    std::string body;
    ASSERT_TRUE(c.read_body(3 * 65536, body)) << "cut after " << body.size() << " bytes";
    EXPECT_TRUE(body == small_.substr(0, body.size()));
    const auto v = server_->view();
    EXPECT_EQ(v.send_timeouts, 0U);
    EXPECT_EQ(v.stall_releases, 0U);
    EXPECT_EQ(v.active_streams, 1U);
}

TEST_P(limits_test, a_paused_stream_is_cut_after_the_maximum_pause_not_by_the_send_timeout) {
    config_.send_timeout_ms = 300;
    config_.max_pause_ms = 1500;
    start();
    http_client c(port_);
    ASSERT_TRUE(c.send(get_request("/big.bin?rate=400k&burst=16384")));
    auto head = c.read_response(true);
    ASSERT_TRUE(head);
    const std::uint64_t id = std::stoull(head->header("x-datapump-stream"));
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(server_->streams_table().pause(id));
    // The client reads whatever comes until the server closes (at most 10 s: the read timeout).
    EXPECT_TRUE(c.closed_by_server()) << "the paused stream was never cut";
    const auto paused_for = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(paused_for, 1400ms) << "cut before the maximum pause";
    const auto v = server_->view();
    EXPECT_EQ(v.pause_timeouts, 1U);
    EXPECT_EQ(v.send_timeouts, 0U);
}

TEST_P(limits_test, a_stalled_paced_stream_lends_its_capacity_and_takes_it_back) {
    config_.capacity = 10'000'000;
    config_.send_timeout_ms = 8000;
    config_.stall_release_ms = 200;
    start();
    non_reader stalled(port_, get_request("/big.bin?rate=10M"));
    ASSERT_TRUE(stalled.ok());
    ASSERT_TRUE(eventually([](const http::server_view& v) { return v.active_streams == 1; }));
    // Within a few seconds the capacity the non-reader does not use is another client's.
    std::optional<test::http_response> second;
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < until) {
        second = get("/small.bin?rate=10M");
        if (second && second->status == 200) {
            break;
        }
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_TRUE(second);
    ASSERT_EQ(second->status, 200) << second->body;
    EXPECT_TRUE(second->body == small_);
    EXPECT_GE(server_->view().stall_releases, 1U);
    // The non-reader reads again: re-admitted, its body goes on byte-exact at its rate.
    std::string all;
    char chunk[65536];
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    timeval tv{1, 0};
    ::setsockopt(stalled.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (std::chrono::steady_clock::now() < deadline) {
        const ssize_t n = ::recv(stalled.fd(), chunk, sizeof chunk, 0);
        if (n <= 0) {
            break;
        }
        all.append(chunk, static_cast<std::size_t>(n));
        if (const auto end = all.find("\r\n\r\n"); end != std::string::npos && all.size() - end - 4 >= big_.size()) {
            break;
        }
    }
    const auto end = all.find("\r\n\r\n");
    ASSERT_NE(end, std::string::npos);
    EXPECT_EQ(all.substr(0, 12), "HTTP/1.1 200");
    EXPECT_TRUE(all.substr(end + 4) == big_) << "got " << all.size() - end - 4 << " of " << big_.size() << " bytes";
    EXPECT_EQ(server_->view().send_timeouts, 0U);
}

TEST_P(limits_test, a_stalled_stream_refused_readmission_waits_for_capacity_then_goes_on) {
    config_.capacity = 10'000'000;
    config_.send_timeout_ms = 8000;
    config_.stall_release_ms = 200;
    start();
    non_reader stalled(port_, get_request("/big.bin?rate=10M"));
    ASSERT_TRUE(stalled.ok());
    ASSERT_TRUE(eventually([](const http::server_view& v) { return v.stall_releases == 1 && v.reserved == 0; }));
    // Another stream takes the whole capacity (8 MiB at 10 MB/s: about 0.8 s)...
    http_client other(port_);
    ASSERT_TRUE(other.send(get_request("/big.bin?rate=10M", "Connection: close\r\n")));
    auto head = other.read_response(true);
    ASSERT_TRUE(head);
    ASSERT_EQ(head->status, 200);
    // ...while the stalled client reads again: it cannot be re-admitted until the other ends, and
    // the capacity is never exceeded meanwhile.
    std::thread other_reader([&other, this] {
        std::string body;
        EXPECT_TRUE(other.read_body(big_.size(), body));
        EXPECT_TRUE(body == big_);
    });
    std::string all;
    char chunk[65536];
    timeval tv{2, 0};
    ::setsockopt(stalled.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::uint64_t most_reserved = 0;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
        const ssize_t n = ::recv(stalled.fd(), chunk, sizeof chunk, 0);
        if (n <= 0) {
            break;
        }
        all.append(chunk, static_cast<std::size_t>(n));
        most_reserved = std::max(most_reserved, server_->view().reserved);
        if (const auto end = all.find("\r\n\r\n"); end != std::string::npos && all.size() - end - 4 >= big_.size()) {
            break;
        }
    }
    other_reader.join();
    const auto end = all.find("\r\n\r\n");
    ASSERT_NE(end, std::string::npos);
    EXPECT_TRUE(all.substr(end + 4) == big_) << "got " << all.size() - end - 4 << " of " << big_.size() << " bytes";
    EXPECT_LE(most_reserved, config_.capacity);
    const auto v = server_->view();
    EXPECT_EQ(v.send_timeouts, 0U);
    EXPECT_EQ(v.admission_refusals, 0U);  // asking again is not a refusal of a new stream
}

// The server's end of the connection whose peer is `client` (the server runs in this process).
int server_socket_of(int client, std::uint16_t server_port) {
    sockaddr_in mine{};
    socklen_t len = sizeof mine;
    ::getsockname(client, reinterpret_cast<sockaddr*>(&mine), &len);
    DIR* dir = ::opendir("/proc/self/fd");
    int found = -1;
    while (dirent* e = ::readdir(dir)) {
        const int fd = std::atoi(e->d_name);
        sockaddr_in local{};
        sockaddr_in peer{};
        socklen_t l1 = sizeof local;
        socklen_t l2 = sizeof peer;
        if (fd <= 2 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &l1) != 0 ||
            ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &l2) != 0 || local.sin_family != AF_INET) {
            continue;
        }
        if (ntohs(local.sin_port) == server_port && peer.sin_port == mine.sin_port) {
            found = fd;
        }
    }
    ::closedir(dir);
    return found;
}

TEST_P(limits_test, accepted_sockets_have_keepalive_and_a_user_timeout) {
    config_.send_timeout_ms = 7000;
    start();
    http_client c(port_);
    ASSERT_TRUE(c.send(get_request("/small.bin", "Range: bytes=0-9\r\n")));
    ASSERT_TRUE(c.read_response());  // accepted, configured and answered
    const int fd = server_socket_of(c.fd(), port_);
    ASSERT_GE(fd, 0);
    int value = 0;
    socklen_t len = sizeof value;
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &value, &len), 0);
    EXPECT_EQ(value, 1);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &value, &len), 0);
    EXPECT_EQ(value, 60);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &value, &len), 0);
    EXPECT_EQ(value, 10);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &value, &len), 0);
    EXPECT_EQ(value, 6);
    unsigned timeout = 0;
    len = sizeof timeout;
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, &len), 0);
    EXPECT_EQ(timeout, 8000U);  // the send timeout + 1 s: the daemon's own cut comes first
}

const path_setup setups[] = {
    {"posix", http::send_path::sendfile, "posix_sendfile"},
    {"posix", http::send_path::splice, "posix_splice"},
    {"direct", http::send_path::send_zc, "direct_send_zc"},
    {"direct", http::send_path::send, "direct_send"},
    {"posix", http::send_path::send_zc, "posix_send_zc"},
};

INSTANTIATE_TEST_SUITE_P(paths, limits_test, ::testing::ValuesIn(setups),
                         [](const ::testing::TestParamInfo<path_setup>& i) { return std::string(i.param.label); });

// The paths that send arena loans.
class loan_limits_test : public limits_test {};

TEST_P(loan_limits_test, stalled_clients_give_their_buffers_back) {
    config_.cache_mib = 1;  // 16 buffers of 64 KiB
    start();
    ASSERT_EQ(server_->view().cache.buffers, 16U);
    // More non-readers than buffers, each at its own block: if a stalled send kept its loan, they
    // would pin every buffer and nobody else could be served until their send timeout (60 s).
    constexpr std::uint64_t block = std::uint64_t{block_kib} * 1024;
    std::vector<std::unique_ptr<non_reader>> stalled;
    for (std::uint64_t i = 0; i < 24; ++i) {
        const std::string range = "Range: bytes=" + std::to_string(i * 2 * block) + "-\r\n";
        stalled.push_back(std::make_unique<non_reader>(port_, get_request("/big.bin", range)));
        ASSERT_TRUE(stalled.back()->ok());
    }
    ASSERT_TRUE(eventually([](const http::server_view& v) { return v.active_streams == 24; }));
    // They stall and hold no loan: the kernel copied what it took (SEND_ZC is used only for bytes
    // the peer's window takes, and theirs is shut).
    EXPECT_TRUE(eventually([](const http::server_view& v) { return v.cache.loans_out == 0; }))
        << "loans out " << server_->view().cache.loans_out;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = get("/small.bin");
    ASSERT_TRUE(r) << "no answer while " << server_->view().cache.loans_out << " loans were out";
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->body == small_) << r->body.size() << " bytes";
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
    EXPECT_EQ(server_->view().send_timeouts, 0U);
    // The stalled ones are still there (the normal stream's end may trail its client's last read).
    EXPECT_TRUE(eventually([](const http::server_view& v) { return v.active_streams == 24; }))
        << "active streams " << server_->view().active_streams;
}

const path_setup loan_setups[] = {
    {"direct", http::send_path::send_zc, "direct_send_zc"},
    {"direct", http::send_path::send, "direct_send"},
    {"posix", http::send_path::send_zc, "posix_send_zc"},
};

INSTANTIATE_TEST_SUITE_P(loan_paths, loan_limits_test, ::testing::ValuesIn(loan_setups),
                         [](const ::testing::TestParamInfo<path_setup>& i) { return std::string(i.param.label); });


// A GET that follows an upload in progress (load-and-play) and stops reading: its data sends go
// out with MSG_DONTWAIT, so the full socket gives its loan back at once instead of holding an
// arena buffer until the send timeout; when the client reads again, the bytes it is owed come
// from a fresh loan, byte-exact, with identity and with chunked framing.
class follow_limits_test : public limits_test {
protected:
    static std::string read_all(int fd) {
        const timeval tv{20, 0};  // a server that stops sending fails the test, not hangs it
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string out;
        std::vector<char> buf(65536);
        for (;;) {
            const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
            if (n <= 0) {
                return out;
            }
            out.append(buf.data(), static_cast<std::size_t>(n));
        }
    }
    // The body of a chunked message without trailers, or nullopt if its framing is broken.
    static std::optional<std::string> unchunk(std::string_view wire) {
        std::string out;
        for (;;) {
            const auto eol = wire.find("\r\n");
            if (eol == std::string_view::npos) {
                return std::nullopt;
            }
            const std::size_t size = std::stoul(std::string(wire.substr(0, eol)), nullptr, 16);
            wire.remove_prefix(eol + 2);
            if (size == 0) {
                return wire == "\r\n" ? std::optional(out) : std::nullopt;
            }
            if (wire.size() < size + 2 || wire.substr(size, 2) != "\r\n") {
                return std::nullopt;
            }
            out.append(wire.substr(0, size));
            wire.remove_prefix(size + 2);
        }
    }
    static std::string chunk(std::string_view data) {
        char line[32];
        const int n = std::snprintf(line, sizeof line, "%zx\r\n", data.size());
        return std::string(line, static_cast<std::size_t>(n)) + std::string(data) + "\r\n";
    }

    void follow_and_stall(bool chunked) {
        const std::string path = chunked ? "/live-chunked.bin" : "/live.bin";
        const std::string data = file_bytes(chunked ? 12 : 11, 8 * 1024 * 1024 + 13);
        const std::size_t first = 1024 * 1024;
        http_client up(port_, 30000);
        ASSERT_TRUE(up.connected());
        const std::string head = "PUT " + path + " HTTP/1.1\r\nHost: t\r\n" +
                                 (chunked ? std::string("Transfer-Encoding: chunked\r\n")
                                          : "Content-Length: " + std::to_string(data.size()) + "\r\n") +
                                 "\r\n";
        ASSERT_TRUE(up.send(head + (chunked ? chunk(std::string_view(data).substr(0, first)) : data.substr(0, first))));
        // Until a HEAD sees the upload in progress: a GET then follows it.
        ASSERT_TRUE(eventually([&](const http::server_view&) {
            http_client h(port_);
            return h.send("HEAD " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") &&
                   h.read_response(true).transform([](const test::http_response& r) {
                       return r.header("x-datapump-upload") == "in-progress";
                   }).value_or(false);
        }));
        const std::uint64_t sent_before = server_->view().bytes_sent;
        non_reader follower(port_, get_request(path, "Connection: close\r\n"));
        ASSERT_TRUE(follower.ok());
        // Following: its body started (the HEADs' answers carry no body bytes).
        ASSERT_TRUE(eventually([&](const http::server_view& v) { return v.bytes_sent > sent_before + 4096; }));
        // The rest of the upload, far more than the follower's socket holds: it fills and stays full.
        for (std::size_t at = first; at < data.size(); at += 256 * 1024) {
            const auto piece = std::string_view(data).substr(at, 256 * 1024);
            ASSERT_TRUE(up.send(chunked ? chunk(piece) : std::string(piece)));
        }
        if (chunked) {
            ASSERT_TRUE(up.send("0\r\n\r\n"));
        }
        auto done = up.read_response();
        ASSERT_TRUE(done);
        EXPECT_EQ(done->status, 201);
        // The stalled follower holds no loan while its socket is full, and is still being served.
        EXPECT_TRUE(eventually([](const http::server_view& v) { return v.cache.loans_out == 0; }))
            << "loans out " << server_->view().cache.loans_out;
        EXPECT_EQ(server_->view().send_timeouts, 0U);
        // It reads again: every byte arrives, in order, framed as announced.
        const std::string wire = read_all(follower.fd());
        const auto end = wire.find("\r\n\r\n");
        ASSERT_NE(end, std::string::npos) << wire.substr(0, 200);
        const std::string body = wire.substr(end + 4);
        if (chunked) {
            const auto decoded = unchunk(body);
            ASSERT_TRUE(decoded) << "broken chunked framing in " << body.size() << " bytes";
            EXPECT_TRUE(*decoded == data) << decoded->size() << " of " << data.size() << " bytes";
        } else {
            EXPECT_TRUE(body == data) << body.size() << " of " << data.size() << " bytes";
        }
    }
};

TEST_P(follow_limits_test, a_stalled_follower_gives_its_buffer_back_and_gets_every_byte_later) {
    config_.writable = true;
    config_.send_timeout_ms = 60000;
    start();
    follow_and_stall(false);
    follow_and_stall(true);
}

const path_setup follow_setups[] = {
    {"posix", http::send_path::sendfile, "posix"},
};

INSTANTIATE_TEST_SUITE_P(follow, follow_limits_test, ::testing::ValuesIn(follow_setups),
                         [](const ::testing::TestParamInfo<path_setup>& i) { return std::string(i.param.label); });

}  // namespace
