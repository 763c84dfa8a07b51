// File: tests/unit/stream/socket_pairs.hpp
//
// Connected stream sockets for the sender's tests: a TCP loopback pair and an AF_UNIX pair, the
// sender's end non-blocking (as the server's accepted sockets are), the reader's end blocking.
//
// Thread-safety: plain functions; each pair belongs to its test.
#pragma once

#include "datapump/base/unique_fd.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace datapump::test {

struct socket_pair {
    unique_fd ours;    // the sender's end, O_NONBLOCK
    unique_fd theirs;  // the reader's end, blocking
};

inline socket_pair tcp_pair() {
    socket_pair p;
    unique_fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener.get(), 1), 0);
    EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    p.theirs = unique_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(p.theirs.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    p.ours = unique_fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    EXPECT_TRUE(p.ours);
    return p;
}

inline socket_pair unix_pair() {
    int fds[2] = {-1, -1};
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    socket_pair p{unique_fd(fds[0]), unique_fd(fds[1])};
    EXPECT_EQ(::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK), 0);
    return p;
}

// Small socket buffers (`bytes` each way): the sender meets a full socket (short sends, EAGAIN)
// every few KiB.
inline void shrink_buffers(const socket_pair& p, int bytes) {
    ::setsockopt(p.ours.get(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    ::setsockopt(p.theirs.get(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

}  // namespace datapump::test
