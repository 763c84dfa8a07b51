// Local peers on a channel endpoint: the peer rule (SO_PEERCRED uid/gid, checked at accept) on
// abstract and path endpoints, the mode of a path endpoint's socket file, and what the server does
// with a path that already exists. The cross-user cases fork a child before the server starts (so
// the child has one thread), drop it to another uid/gid, and let it connect with the real client
// library; they need root (as in CI) and skip otherwise.
#include "datapump/ipc/client.hpp"
#include "datapump/ipc/internal/peer.hpp"
#include "datapump/ipc/server.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

namespace datapump::ipc {
namespace {

using namespace std::chrono_literals;

constexpr uid_t nobody = 65534;
constexpr gid_t nogroup = 65534;

std::string unique_name(const char* what) {
    static std::atomic<int> n{0};
    return std::string("datapump-peer-") + std::to_string(::getpid()) + "-" + what + "-" +
           std::to_string(n.fetch_add(1));
}

std::string abstract_endpoint(const char* what) { return "@" + unique_name(what); }

// A directory everyone may enter, so that a path endpoint's own mode is what decides.
std::string path_endpoint(const char* what) {
    const auto dir = std::filesystem::temp_directory_path() / unique_name("dir");
    std::filesystem::create_directories(dir);
    ::chmod(dir.c_str(), 0755);
    return (dir / what).string();
}

std::unique_ptr<server> echo_server(server_runtime& rt, const std::string& endpoint, server_options options = {}) {
    server_handlers h;
    h.exec = [](connection&, std::uint32_t, std::span<const std::byte> in, std::span<std::byte> out) -> exec_result {
        const std::size_t n = std::min(in.size(), out.size());
        std::memcpy(out.data(), in.data(), n);
        return {0, static_cast<std::uint32_t>(n)};
    };
    auto s = rt.create(endpoint, std::move(h), std::move(options));
    EXPECT_TRUE(s.has_value()) << (s ? "" : describe(s.error()));
    return s ? std::move(*s) : nullptr;
}

// What the child saw.
enum outcome : int {
    worked = 0,         // init and one echo command succeeded
    refused = 10,       // init failed: the server's refusal (peer_gone, EACCES)
    connect_denied = 11,// init failed at connect(): the socket file's mode (EACCES)
    other_error = 12,
    no_switch = 13,     // could not change uid/gid
    timed_out = 14,
};

// A child, forked now, that waits for go(), becomes uid/gid, connects to `endpoint` and reports
// an outcome through its exit status.
class child_as {
public:
    child_as(uid_t uid, gid_t gid, std::string endpoint) {
        int p[2];
        EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(p[1]);
            char go = 0;
            if (::read(p[0], &go, 1) != 1) {
                ::_exit(other_error);
            }
            if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
                ::_exit(no_switch);
            }
            ::_exit(connect_and_echo(endpoint));
        }
        ::close(p[0]);
        go_fd_ = p[1];
    }
    child_as(const child_as&) = delete;
    child_as& operator=(const child_as&) = delete;
    ~child_as() {
        if (go_fd_ >= 0) {
            ::close(go_fd_);
        }
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    // Lets the child connect and waits (bounded) for its outcome.
    int run() {
        EXPECT_EQ(::write(go_fd_, "g", 1), 1);
        const auto until = std::chrono::steady_clock::now() + 20s;
        while (std::chrono::steady_clock::now() < until) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                reaped_ = true;
                return WIFEXITED(status) ? WEXITSTATUS(status) : other_error;
            }
            std::this_thread::sleep_for(2ms);
        }
        return timed_out;
    }

private:
    static int connect_and_echo(const std::string& endpoint) {
        client_options o;
        o.in_process = false;
        auto c = client::init(endpoint, o);
        if (!c) {
            if (c.error().code == errc::peer_gone && c.error().sys == EACCES) {
                return refused;
            }
            if (c.error().sys == EACCES) {
                return connect_denied;
            }
            std::fprintf(stderr, "child: init failed: %s\n", describe(c.error()).c_str());
            return other_error;
        }
        const std::string msg = "ping";
        char out[8] = {};
        auto r = (*c)->execute(1, std::as_bytes(std::span(msg.data(), msg.size())),
                               std::as_writable_bytes(std::span(out)));
        if (!r || r->output_len != 4 || std::memcmp(out, "ping", 4) != 0) {
            std::fprintf(stderr, "child: execute failed\n");
            return other_error;
        }
        return worked;
    }

    pid_t pid_ = -1;
    int go_fd_ = -1;
    bool reaped_ = false;
};

#define REQUIRE_ROOT()                                                         \
    do {                                                                       \
        if (::geteuid() != 0) {                                                \
            GTEST_SKIP() << "needs root to run a peer as another uid (CI runs as root)"; \
        }                                                                      \
    } while (false)

TEST(peer_rule, default_allows_the_same_uid_and_root_only) {
    const peer_rule rule;
    EXPECT_TRUE(internal::peer_allowed({1, 1000, 1000, true}, rule, 1000));
    EXPECT_TRUE(internal::peer_allowed({1, 0, 0, true}, rule, 1000));
    EXPECT_FALSE(internal::peer_allowed({1, 1001, 1000, true}, rule, 1000));
    EXPECT_FALSE(internal::peer_allowed({1, 1000, 1000, false}, rule, 1000));  // credentials unknown
}

TEST(peer_rule, listed_uids_and_primary_gids_are_allowed_and_root_can_be_excluded) {
    peer_rule rule;
    rule.uids = {2000};
    rule.gids = {3000};
    EXPECT_TRUE(internal::peer_allowed({1, 2000, 1, true}, rule, 1000));
    EXPECT_TRUE(internal::peer_allowed({1, 2001, 3000, true}, rule, 1000));
    EXPECT_FALSE(internal::peer_allowed({1, 2001, 3001, true}, rule, 1000));
    rule.allow_root = false;
    rule.allow_same_uid = false;
    EXPECT_FALSE(internal::peer_allowed({1, 0, 0, true}, rule, 1000));
    EXPECT_FALSE(internal::peer_allowed({1, 1000, 1000, true}, rule, 1000));
}

TEST(peer_credentials, an_abstract_endpoint_refuses_another_uid) {
    REQUIRE_ROOT();
    const std::string ep = abstract_endpoint("abstract-refused");
    child_as child(nobody, nogroup, ep);
    auto rt = server_runtime::init().value();
    auto srv = echo_server(*rt, ep);
    ASSERT_NE(srv, nullptr);
    EXPECT_EQ(child.run(), refused);
    EXPECT_EQ(srv->stats().peers_refused, 1U);
    EXPECT_EQ(srv->stats().clients_accepted, 0U);
}

TEST(peer_credentials, an_allowed_uid_still_works_on_an_abstract_endpoint) {
    REQUIRE_ROOT();
    const std::string ep = abstract_endpoint("abstract-allowed");
    child_as child(nobody, nogroup, ep);
    auto rt = server_runtime::init().value();
    server_options o;
    o.peers.uids = {nobody};
    auto srv = echo_server(*rt, ep, o);
    ASSERT_NE(srv, nullptr);
    EXPECT_EQ(child.run(), worked);
    EXPECT_EQ(srv->stats().peers_refused, 0U);
}

TEST(peer_credentials, a_listed_primary_gid_is_allowed) {
    REQUIRE_ROOT();
    const std::string ep = abstract_endpoint("gid-allowed");
    child_as child(12345, nogroup, ep);
    auto rt = server_runtime::init().value();
    server_options o;
    o.peers.gids = {nogroup};
    auto srv = echo_server(*rt, ep, o);
    ASSERT_NE(srv, nullptr);
    EXPECT_EQ(child.run(), worked);
}

TEST(peer_credentials, root_can_be_refused_too) {
    REQUIRE_ROOT();
    const std::string ep = abstract_endpoint("root-refused");
    child_as child(0, 0, ep);
    auto rt = server_runtime::init().value();
    server_options o;
    o.peers.allow_root = false;
    o.peers.allow_same_uid = false;
    o.peers.uids = {nobody};
    auto srv = echo_server(*rt, ep, o);
    ASSERT_NE(srv, nullptr);
    EXPECT_EQ(child.run(), refused);
}

TEST(peer_credentials, a_path_endpoint_whose_mode_denies_another_uid_refuses_its_connect) {
    REQUIRE_ROOT();
    const std::string ep = path_endpoint("mode-denies.sock");
    child_as child(nobody, nogroup, ep);
    auto rt = server_runtime::init().value();
    server_options o;
    o.peers.uids = {nobody};  // the rule would allow it: the mode alone keeps it out
    auto srv = echo_server(*rt, ep, o);
    ASSERT_NE(srv, nullptr);
    EXPECT_EQ(child.run(), connect_denied);
    EXPECT_EQ(srv->stats().clients_accepted, 0U);
}

TEST(peer_credentials, a_path_endpoint_open_to_all_still_refuses_a_uid_the_rule_does_not_allow) {
    REQUIRE_ROOT();
    const std::string ep = path_endpoint("open-mode.sock");
    child_as child(nobody, nogroup, ep);
    auto rt = server_runtime::init().value();
    server_options o;
    o.endpoint_mode = 0666;
    auto srv = echo_server(*rt, ep, o);
    ASSERT_NE(srv, nullptr);
    EXPECT_EQ(child.run(), refused);
    EXPECT_EQ(srv->stats().peers_refused, 1U);
}

TEST(endpoint_mode, a_path_endpoint_has_the_mode_asked_for_whatever_the_umask) {
    auto rt = server_runtime::init().value();
    for (const mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}}) {
        for (const mode_t mode : {mode_t{0600}, mode_t{0660}, mode_t{0666}}) {
            const mode_t old = ::umask(mask);
            const std::string ep = path_endpoint("mode.sock");
            server_options o;
            o.endpoint_mode = mode;
            auto srv = echo_server(*rt, ep, o);
            ::umask(old);
            ASSERT_NE(srv, nullptr);
            struct stat st {};
            ASSERT_EQ(::lstat(ep.c_str(), &st), 0);
            EXPECT_TRUE(S_ISSOCK(st.st_mode));
            EXPECT_EQ(st.st_mode & 0777, mode) << "umask " << mask;
        }
    }
}

TEST(endpoint_mode, the_default_is_0600) {
    auto rt = server_runtime::init().value();
    const mode_t old = ::umask(0);
    const std::string ep = path_endpoint("default.sock");
    auto srv = echo_server(*rt, ep);
    ::umask(old);
    ASSERT_NE(srv, nullptr);
    struct stat st {};
    ASSERT_EQ(::lstat(ep.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600U);
}

TEST(endpoint_mode, a_mode_beyond_permission_bits_is_refused) {
    auto rt = server_runtime::init().value();
    server_options o;
    o.endpoint_mode = 04755;
    server_handlers h;
    h.exec = [](connection&, std::uint32_t, std::span<const std::byte>, std::span<std::byte>) -> exec_result {
        return {};
    };
    auto s = rt->create(path_endpoint("setuid.sock"), std::move(h), o);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code, errc::invalid_argument);
}

TEST(stale_endpoint, a_file_that_is_not_a_socket_is_never_removed) {
    auto rt = server_runtime::init().value();
    const std::string ep = path_endpoint("regular");
    {
        std::FILE* f = std::fopen(ep.c_str(), "w");
        ASSERT_NE(f, nullptr);
        std::fputs("keep me", f);
        std::fclose(f);
    }
    server_handlers h;
    h.exec = [](connection&, std::uint32_t, std::span<const std::byte>, std::span<std::byte>) -> exec_result {
        return {};
    };
    auto s = rt->create(ep, std::move(h));
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code, errc::busy);
    struct stat st {};
    ASSERT_EQ(::lstat(ep.c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_size, 7);
}

TEST(stale_endpoint, a_dead_servers_socket_is_replaced_and_a_live_ones_is_not) {
    auto rt = server_runtime::init().value();
    const std::string ep = path_endpoint("stale.sock");
    {
        // A socket bound and never listened on: what a crashed server leaves (connect refused).
        int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, ep.c_str(), sizeof(a.sun_path) - 1);
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        ::close(fd);
    }
    auto first = echo_server(*rt, ep);
    ASSERT_NE(first, nullptr);
    server_handlers h;
    h.exec = [](connection&, std::uint32_t, std::span<const std::byte>, std::span<std::byte>) -> exec_result {
        return {};
    };
    auto second = rt->create(ep, std::move(h));
    ASSERT_FALSE(second.has_value());
    EXPECT_EQ(second.error().code, errc::busy);
}

}  // namespace
}  // namespace datapump::ipc
