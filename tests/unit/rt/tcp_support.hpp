// Test support for rt's TCP links: the shared keys, and a raw peer on a plain socket that speaks
// the wire format byte by byte (wire.hpp), the way a hostile or old client would.
#pragma once

#include "rt_support.hpp"
#include "tcp_auth.hpp"
#include "wire.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <string_view>

namespace datapump::rt::testing {

inline constexpr std::string_view test_key = "rt tcp test key: thirty-two bytes or more";
inline constexpr std::string_view other_key = "another key, also thirty-two bytes long.";

// real_time_config with the shared key (or another one).
inline system_config keyed_config(const char* name, std::string_view key = test_key) {
    system_config config = real_time_config(name);
    config.tcp.key = std::string(key);
    return config;
}

// A connected socket to 127.0.0.1:port whose receives give up after 20 s (a test never hangs).
inline int dial_loopback(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{.tv_sec = 20, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

// Reads until the peer closes: true when it did (EOF or reset), false on a receive timeout.
// `extra` counts the bytes that came before the end.
inline bool closed_by_peer(int fd, std::size_t* extra = nullptr) {
    char buf[256];
    std::size_t got = 0;
    while (true) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            if (extra != nullptr) {
                *extra = got;
            }
            return n == 0 || errno == ECONNRESET;
        }
        got += static_cast<std::size_t>(n);
    }
}

template <class T>
bool recv_record(int fd, T& value) {
    return ::recv(fd, &value, sizeof value, MSG_WAITALL) == static_cast<ssize_t>(sizeof value);
}

template <class T>
bool send_record(int fd, const T& value) {
    return ::send(fd, &value, sizeof value, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof value);
}

// The connecting side's proof by hand: true when the server accepted `key` and proved it back.
inline bool raw_handshake(int fd, std::string_view key) {
    auto loaded = detail::tcp_key::load(key, "");
    detail::wire::tcp_challenge challenge{};
    if (!loaded || !recv_record(fd, challenge) || (challenge.flags & detail::wire::auth_required) == 0) {
        return false;
    }
    detail::wire::tcp_answer answer{.magic = detail::wire::auth_magic, .version = detail::wire::tcp_version,
                                    .mac = {}, .nonce = {}};
    auto mac = detail::prove(*loaded, challenge.nonce, detail::direction::to_server);
    std::memcpy(answer.mac, mac.data(), mac.size());
    std::memset(answer.nonce, 7, sizeof answer.nonce);
    detail::wire::tcp_proof proof{};
    if (!send_record(fd, answer) || !recv_record(fd, proof) || proof.status != 0) {
        return false;
    }
    return detail::verify(*loaded, answer.nonce, detail::direction::to_client, proof.mac);
}

// A hello for one port (buffers of `size` bytes, 4 of them, 100 Hz, delay 100 ms) and its welcome.
inline bool raw_hello(int fd, std::string_view port_name, std::uint64_t size, detail::wire::tcp_welcome& welcome,
                      std::uint32_t version = detail::wire::tcp_version) {
    detail::wire::tcp_hello hello{.magic = detail::wire::tcp_magic, .version = version, .rate = 100.0,
                                  .delay_ns = 100'000'000, .jitter_ns = 0, .buffer_size = size, .count = 4,
                                  .on_late = 0, .names_len = static_cast<std::uint32_t>(port_name.size())};
    return send_record(fd, hello) &&
           ::send(fd, port_name.data(), port_name.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(port_name.size()) &&
           recv_record(fd, welcome);
}

}  // namespace datapump::rt::testing
