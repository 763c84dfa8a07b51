// src/daemon/service: what a systemd service manager receives (a datagram per notification on
// $NOTIFY_SOCKET, here a socket of the test's) and nothing when NOTIFY_SOCKET is unset; and
// the sockets passed by socket activation (LISTEN_FDS), taken once, close-on-exec.
#include "service/listen_fds.hpp"
#include "service/notify.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>

namespace service = datapump::daemon::service;

namespace {

class notify_test : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/datapump-notify-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/notify.sock";
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ASSERT_GE(fd_, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path_.c_str(), path_.size());
        ASSERT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        timeval tv{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    }
    void TearDown() override {
        ::unsetenv("NOTIFY_SOCKET");
        ::close(fd_);
        std::filesystem::remove_all(dir_);
    }
    // The next datagram, or "" when none comes within 5 s (or at once, with `wait` false).
    std::string next(bool wait = true) {
        char buf[4096];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, wait ? 0 : MSG_DONTWAIT);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }

    std::string dir_;
    std::string path_;
    int fd_ = -1;
};

std::uint64_t monotonic_usec() {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1000000U + static_cast<std::uint64_t>(now.tv_nsec) / 1000U;
}

TEST_F(notify_test, each_notification_is_one_datagram_systemd_understands) {
    service::notify_ready();
    EXPECT_EQ(next(), "READY=1");
    service::notify_stopping();
    EXPECT_EQ(next(), "STOPPING=1");
    service::notify_status("serving /srv\nand more");
    EXPECT_EQ(next(), "STATUS=serving /srv and more");  // one line: a newline starts another assignment

    const std::uint64_t before = monotonic_usec();
    service::notify_reloading();
    const std::uint64_t after = monotonic_usec();
    const std::string reloading = next();
    const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
    ASSERT_EQ(reloading.rfind(prefix, 0), 0U) << reloading;
    const std::uint64_t usec = std::stoull(reloading.substr(prefix.size()));
    EXPECT_GE(usec, before);
    EXPECT_LE(usec, after);
}

TEST_F(notify_test, nothing_is_sent_without_notify_socket) {
    ::unsetenv("NOTIFY_SOCKET");
    service::notify_ready();
    service::notify_reloading();
    service::notify_stopping();
    service::notify_status("x");
    EXPECT_EQ(next(false), "");
}

TEST(listen_fds_test, no_listen_fds_means_no_sockets_and_no_error) {
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_PID");
    const auto got = service::take_listen_fds();
    EXPECT_TRUE(got.fds.empty());
    EXPECT_TRUE(got.error.empty());
}

TEST(listen_fds_test, the_passed_socket_is_taken_once_and_made_close_on_exec) {
    // Descriptor 3 is where socket activation puts the first socket: borrow it for the test.
    const int saved = ::fcntl(3, F_DUPFD_CLOEXEC, 10);
    const int sock = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(sock, 0);
    ASSERT_EQ(::dup2(sock, 3), 3);
    ::close(sock);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("LISTEN_FDS", "1", 1);

    const auto got = service::take_listen_fds();
    EXPECT_TRUE(got.error.empty()) << got.error;
    ASSERT_EQ(got.fds.size(), 1U);
    EXPECT_EQ(got.fds[0], 3);
    EXPECT_NE(::fcntl(3, F_GETFD) & FD_CLOEXEC, 0);
    // The variables are gone: a child (or a second call) does not take the socket for its own.
    EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
    EXPECT_TRUE(service::take_listen_fds().fds.empty());

    ::close(3);
    if (saved >= 0) {
        ::dup2(saved, 3);
        ::close(saved);
    }
}

TEST(listen_fds_test, listen_fds_for_another_process_is_ignored) {
    ::setenv("LISTEN_PID", std::to_string(::getpid() + 1).c_str(), 1);
    ::setenv("LISTEN_FDS", "1", 1);
    const auto got = service::take_listen_fds();
    EXPECT_TRUE(got.fds.empty());
    EXPECT_TRUE(got.error.empty());
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_PID");
}

}  // namespace
