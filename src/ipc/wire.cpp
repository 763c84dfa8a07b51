#include "datapump/ipc/internal/wire.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace datapump::ipc::internal {

result<void> send_message(int sock, const wire_header& header, std::span<const std::byte> payload,
                          std::span<const int> fds, bool nonblocking) {
    if (fds.size() > max_fds) {
        return fail(errc::invalid_argument, "ipc send: too many descriptors");
    }
    wire_header h = header;
    h.version = wire_version;
    h.payload_len = static_cast<std::uint32_t>(payload.size());
    iovec iov[2] = {{&h, sizeof(h)}, {const_cast<std::byte*>(payload.data()), payload.size()}};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = payload.empty() ? 1 : 2;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds)];
    if (!fds.empty()) {
        const std::size_t bytes = sizeof(int) * fds.size();
        m.msg_control = control;
        m.msg_controllen = CMSG_SPACE(bytes);
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(bytes);
        std::memcpy(CMSG_DATA(c), fds.data(), bytes);
    }
    for (;;) {
        const ssize_t n = ::sendmsg(sock, &m, MSG_NOSIGNAL | (nonblocking ? MSG_DONTWAIT : 0));
        if (n >= 0) {
            return {};
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
            return fail(errc::peer_gone, "ipc send", errno);
        }
        if (nonblocking && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return fail(errc::full, "ipc send: the peer is not reading (socket buffer full)", errno);
        }
        if (errno == EMSGSIZE) {
            return fail(errc::invalid_argument, "ipc send: message larger than the socket buffer", errno);
        }
        return fail_errno("ipc send");
    }
}

std::vector<unique_fd> take_fds(const msghdr& m) {
    std::vector<unique_fd> fds;
    for (const cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&m),
                                                                               const_cast<cmsghdr*>(c))) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                fds.emplace_back(fd);
            }
        }
    }
    return fds;
}

result<void> receive_message(int sock, std::size_t max_payload, received& into) {
    into.fds.clear();
    // Receive into storage that only ever grows (no zeroing of max_payload bytes per message),
    // then copy out just the payload.
    if (into.storage.size() < max_payload) {
        into.storage.resize(max_payload);
    }
    iovec iov[2] = {{&into.header, sizeof(into.header)}, {into.storage.data(), max_payload}};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = 2;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds)];
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    ssize_t n = 0;
    for (;;) {
        n = ::recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n >= 0 || errno != EINTR) {
            break;
        }
    }
    if (n < 0) {
        if (errno == ECONNRESET || errno == ENOTCONN || errno == EPIPE) {
            return fail(errc::peer_gone, "ipc receive", errno);
        }
        return fail_errno("ipc receive");
    }
    // Take ownership of every descriptor first, so none leaks whatever else is wrong; a message
    // refused here has its descriptors closed at once (MSG_CTRUNC: the kernel closed the ones
    // that did not fit, these are the ones that did).
    into.fds = take_fds(m);
    if (n == 0) {
        into.fds.clear();
        return fail(errc::peer_gone, "ipc receive: the peer closed the channel");
    }
    if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
        into.fds.clear();
        return fail(errc::protocol_error, "ipc receive: message or descriptors truncated");
    }
    const auto got = static_cast<std::size_t>(n);
    if (got < sizeof(wire_header) || into.header.version != wire_version ||
        into.header.payload_len != got - sizeof(wire_header)) {
        into.fds.clear();
        return fail(errc::protocol_error, "ipc receive: malformed message");
    }
    const auto payload_len = static_cast<std::ptrdiff_t>(got - sizeof(wire_header));
    into.payload.assign(into.storage.begin(), into.storage.begin() + payload_len);
    return {};
}

result<endpoint_address> parse_endpoint(std::string_view endpoint) {
    endpoint_address out;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (endpoint.empty() || endpoint == "@") {
        return fail(errc::invalid_argument, "ipc endpoint: empty name");
    }
    const bool abstract = endpoint.front() == '@';
    const std::string_view name = abstract ? endpoint.substr(1) : endpoint;
    // Abstract names start with a NUL byte; path names need a terminating NUL.
    if (name.size() + 1 > sizeof(addr.sun_path)) {
        return fail(errc::invalid_argument, "ipc endpoint: name longer than 107 bytes");
    }
    if (name.find('\0') != std::string_view::npos) {
        return fail(errc::invalid_argument, "ipc endpoint: NUL in the name");
    }
    const std::size_t at = abstract ? 1 : 0;
    std::memcpy(addr.sun_path + at, name.data(), name.size());
    out.abstract = abstract;
    out.length = static_cast<unsigned>(offsetof(sockaddr_un, sun_path) + at + name.size() + (abstract ? 0 : 1));
    out.bytes.resize(sizeof(addr));
    std::memcpy(out.bytes.data(), &addr, sizeof(addr));
    if (!abstract) {
        out.path = endpoint;
    }
    return out;
}

result<unique_fd> connect_endpoint(std::string_view endpoint) {
    auto addr = parse_endpoint(endpoint);
    if (!addr) {
        return std::unexpected(addr.error());
    }
    unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!sock) {
        return fail_errno("ipc connect: socket");
    }
    for (;;) {
        if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(addr->bytes.data()), addr->length) == 0) {
            return sock;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == ENOENT || errno == ECONNREFUSED) {
            return fail(errc::not_found, "ipc connect: nothing serves the endpoint", errno);
        }
        return fail_errno("ipc connect");
    }
}

void size_socket_buffers(int sock, std::size_t bytes) {
    const int want = static_cast<int>(bytes);
    // FORCE needs CAP_NET_ADMIN; without it the plain option is capped by net.core.*mem_max.
    if (::setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof(want)) != 0) {
        (void)::setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
    }
    if (::setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0) {
        (void)::setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
    }
}

}  // namespace datapump::ipc::internal
