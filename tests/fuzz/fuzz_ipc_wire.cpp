// libFuzzer target: the command channel's socket half (src/ipc/wire.cpp) on hostile messages. The
// input is cut into up to 8 messages (a 2-byte length before each); each is sent whole over a
// SEQPACKET socketpair, as a peer would, and read back with receive_message under a fuzzed
// payload limit. Also parse_endpoint on the raw input. Checked against wire.hpp's promises: a
// message accepted has our version and a payload of exactly payload_len bytes within the limit;
// a message refused leaves no descriptor behind; no endpoint longer than sun_path is accepted.
#include "datapump/ipc/internal/wire.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace {

using namespace datapump::ipc::internal;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_ipc_wire: broken promise: %s\n", what);
        std::abort();
    }
}

struct socket_pair {
    int fds[2] = {-1, -1};
    socket_pair() {
        check(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
    }
    ~socket_pair() {
        ::close(fds[0]);
        ::close(fds[1]);
    }
};

void fuzz_endpoint(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto addr = parse_endpoint(text);
    if (!addr) {
        return;
    }
    check(addr->length <= sizeof(sockaddr_un), "an endpoint address fits sockaddr_un");
    check(addr->abstract == (!text.empty() && text.front() == '@'), "abstract iff it starts with @");
    check(text.find('\0') == std::string_view::npos, "no NUL in an accepted endpoint");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_endpoint(data, size);
    if (size < 2) {
        return 0;
    }
    // The first two bytes: the receiver's payload limit.
    const std::size_t max_payload = (std::size_t{data[0]} << 8 | data[1]) % 2048;
    data += 2;
    size -= 2;
    socket_pair sp;
    int sent = 0;
    while (size >= 2 && sent < 8) {
        std::size_t len = std::size_t{data[0]} << 8 | data[1];
        data += 2;
        size -= 2;
        len = len > size ? size : len;
        if (::send(sp.fds[0], data, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            break;
        }
        data += len;
        size -= len;
        ++sent;
    }
    ::shutdown(sp.fds[0], SHUT_WR);  // the last receive sees EOF, never blocks
    received into;
    for (int i = 0; i <= sent; ++i) {
        auto got = receive_message(sp.fds[1], max_payload, into);
        if (!got) {
            check(into.fds.empty(), "no descriptor survives a refused message");
            if (got.error().code == datapump::errc::peer_gone) {
                break;
            }
            continue;
        }
        check(into.header.version == wire_version, "an accepted message has our version");
        check(into.payload.size() == into.header.payload_len, "payload_len is the payload's size");
        check(into.payload.size() <= max_payload, "the payload is within the limit");
        check(into.fds.empty(), "no descriptor was sent");
    }
    return 0;
}
