// File: datapump/ipc/internal/wire.hpp
//
// The socket half of a channel: an AF_UNIX SOCK_SEQPACKET connection (one message per send, kept
// whole, EOF when the peer dies). Set-up, backup commands, replies that carry descriptors and
// one-way notifications travel here; see docs/ipc.md.
//
//   message = wire_header | payload (payload_len bytes) [+ up to max_fds descriptors]
//
// Thread-safety: send_message may be called by several threads on one socket (SEQPACKET sends are
// atomic per message); one thread receives.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

namespace datapump::ipc::internal {

inline constexpr std::uint32_t wire_version = 1;
inline constexpr std::size_t max_fds = 16;

enum class msg : std::uint32_t {
    hello = 1,      // c->s: version, geometry (code=slots, a=input cap, b=output cap); fd: segment
    welcome = 2,    // s->c: status 0 = segment accepted, else refused (errno); a = max_message
    shm_offer = 3,  // c->s: a new segment after a refusal (same fields and fd as hello)
    command = 4,    // c->s: backup command: token, code, flags, a=input_len, b=output_cap; payload; fds
    reply = 5,      // s->c: token, status, a=output_len, flags=reply_flags; payload; fds
    notify = 6,     // either way: code; payload
};

// command flags (besides layout.hpp's flag_worker)
inline constexpr std::uint32_t flag_prepared_output = 1U << 2;  // payload = input area + output area

// welcome flags
// The server refused this peer (its credentials, peer_rule): status is -EACCES and the server
// closes the connection right after this message.
inline constexpr std::uint32_t welcome_refused = 1U << 0;

// reply flags
inline constexpr std::uint32_t reply_for_slot = 1U << 0;  // token is a slot index, not a backup token
inline constexpr std::uint32_t reply_bad = 1U << 1;       // the server refused the command itself

struct wire_header {
    std::uint32_t type;
    std::uint32_t version;
    std::uint32_t token;
    std::uint32_t code;
    std::uint32_t flags;
    std::int32_t status;
    std::uint32_t a;
    std::uint32_t b;
    std::uint32_t payload_len;
    std::uint32_t pid;
};
static_assert(std::is_trivially_copyable_v<wire_header>);
static_assert(sizeof(wire_header) == 40);

struct received {
    wire_header header{};
    std::vector<std::byte> payload;
    std::vector<unique_fd> fds;
    std::vector<std::byte> storage;  // receive buffer, reused
};

// Sends one message. Errors: peer_gone (EPIPE, ECONNRESET), invalid_argument (too large),
// full (nonblocking and no room), io_error.
// nonblocking: fail with errc::full instead of waiting when the peer's buffer is full.
[[nodiscard]] result<void> send_message(int sock, const wire_header& header, std::span<const std::byte> payload,
                                        std::span<const int> fds = {}, bool nonblocking = false);

// Receives one message into `into` (payload resized; up to max_fds descriptors in `fds`). Errors:
// peer_gone (EOF or reset), protocol_error (truncated message or descriptors, payload_len
// disagrees with the size, more than `max_payload`), io_error. EINTR is retried. On an error no
// descriptor of the message stays open.
[[nodiscard]] result<void> receive_message(int sock, std::size_t max_payload, received& into);

// Takes ownership of every descriptor a received message carried (SCM_RIGHTS), so none leaks.
[[nodiscard]] std::vector<unique_fd> take_fds(const msghdr& m);

// "/path" or "@abstract". Errors: invalid_argument (empty, too long for sun_path).
struct endpoint_address {
    std::vector<char> bytes;  // sockaddr_un
    unsigned length = 0;      // socklen
    bool abstract = false;
    std::string_view path;    // the file for path endpoints
};
[[nodiscard]] result<endpoint_address> parse_endpoint(std::string_view endpoint);

// A connected SEQPACKET socket to `endpoint`. Errors: not_found (nothing listens), io_error.
[[nodiscard]] result<unique_fd> connect_endpoint(std::string_view endpoint);

// Raises the socket's buffers so a message of `bytes` fits (SO_*BUFFORCE when permitted).
void size_socket_buffers(int sock, std::size_t bytes);

}  // namespace datapump::ipc::internal
