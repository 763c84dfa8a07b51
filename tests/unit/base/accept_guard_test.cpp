// base/accept_guard: the pause per error kind, the spare descriptor that sheds one waiting
// connection with the farewell, and one log line per interval with the count.
#include "datapump/base/accept_guard.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

namespace datapump {
namespace {

using namespace std::chrono_literals;

struct loopback_listener {
    unique_fd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    sockaddr_in address{};

    loopback_listener() {
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof address;
        EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
        EXPECT_EQ(::listen(fd.get(), 16), 0);
        EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &len), 0);
    }
    unique_fd connect() const {
        unique_fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        EXPECT_EQ(::connect(c.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
        return c;
    }
};

TEST(accept_guard, exhaustion_pauses_and_sheds_one_waiting_connection_with_the_farewell) {
    loopback_listener l;
    accept_guard guard({.name = "test", .pause = 300ms, .log_every = 10s, .farewell = "bye\n", .advice = {}});
    unique_fd waiting = l.connect();
    EXPECT_EQ(guard.failed(l.fd.get(), EMFILE), 300ms);
    EXPECT_EQ(guard.shed(), 1U);
    timeval tv{5, 0};
    ::setsockopt(waiting.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16] = {};
    EXPECT_EQ(::recv(waiting.get(), buf, sizeof buf, 0), 4);
    EXPECT_EQ(std::string(buf, 4), "bye\n");
    EXPECT_EQ(::recv(waiting.get(), buf, sizeof buf, 0), 0) << "the shed connection is closed";
    // Nothing waits now: the shed accept must not block on the (blocking) listener.
    EXPECT_EQ(guard.failed(l.fd.get(), ENFILE), 300ms);
    EXPECT_EQ(guard.shed(), 1U);
}

TEST(accept_guard, transient_errors_accept_again_at_once_and_others_pause) {
    loopback_listener l;
    accept_guard guard({.name = "test", .pause = 100ms, .log_every = 10s, .farewell = {}, .advice = {}});
    EXPECT_EQ(guard.failed(l.fd.get(), ECONNABORTED), 0ms);
    EXPECT_EQ(guard.failed(l.fd.get(), EPROTO), 0ms);
    EXPECT_EQ(guard.failed(l.fd.get(), EBADF), 100ms) << "a broken listener must not spin either";
    EXPECT_EQ(guard.failures(), 3U);
}

TEST(accept_guard, a_storm_of_failures_is_one_log_line_per_interval) {
    loopback_listener l;
    accept_guard storm({.name = "test", .pause = 1ms, .log_every = 60s, .farewell = {}, .advice = {}});
    for (int i = 0; i < 10'000; ++i) {
        (void)storm.failed(l.fd.get(), EMFILE);
    }
    EXPECT_EQ(storm.log_lines(), 1U);
    EXPECT_EQ(storm.failures(), 10'000U);

    accept_guard later({.name = "test", .pause = 1ms, .log_every = 100ms, .farewell = {}, .advice = {}});
    (void)later.failed(l.fd.get(), EMFILE);
    (void)later.failed(l.fd.get(), EMFILE);
    EXPECT_EQ(later.log_lines(), 1U);
    std::this_thread::sleep_for(150ms);
    (void)later.failed(l.fd.get(), EMFILE);
    EXPECT_EQ(later.log_lines(), 2U) << "the next line comes once the interval has passed";
}

}  // namespace
}  // namespace datapump
