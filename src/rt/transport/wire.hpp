// File: src/rt/transport/wire.hpp
//
// The messages of inter-process rt connections on the ipc command channel (docs/rt.md "Across
// processes"). The connecting process (A) is the channel's client; the serving process (B) its
// server. Every message is a fixed-size, trivially copyable record checked field by field by its
// reader (B trusts nothing A wrote, A nothing B wrote).
//
//   A -> B  op_connect     (over the socket: carries A's pool memfd) connect_request + port names
//           op_buffer      (a slot command: shared memory, futex doorbell) buffer_note
//           op_end         link_note: A's source ended and every buffer came back
//           op_disconnect  link_note
//   B -> A  note_returned  (notification) returned_note: B is done with a buffer
// A dead peer ends the link through the channel's life line (peer_gone / close).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace datapump::rt::detail::wire {

inline constexpr std::uint32_t magic = 0x44505254;  // "DPRT"
inline constexpr std::uint32_t version = 1;

inline constexpr std::uint32_t op_connect = 0x52540001;
inline constexpr std::uint32_t op_buffer = 0x52540002;
inline constexpr std::uint32_t op_end = 0x52540003;
inline constexpr std::uint32_t op_disconnect = 0x52540004;
inline constexpr std::uint32_t note_returned = 0x52548001;

// Statuses of B's replies (besides 0).
inline constexpr std::int32_t refused = -1;     // output: the reason (text)
inline constexpr std::int32_t no_link = -2;     // the link is not this client's
inline constexpr std::int32_t bad_buffer = -3;  // a slot out of range or already at B, a bad length

inline constexpr std::size_t max_names = 4096;  // bytes of '\n'-separated port names
inline constexpr std::size_t max_reason = 1024;

struct connect_request {
    std::uint32_t magic;
    std::uint32_t version;
    double rate;
    std::int64_t delay_ns;
    std::int64_t jitter_ns;
    std::uint64_t buffer_size;
    std::uint64_t slot_size;
    std::uint64_t count;
    std::uint32_t on_late;
    std::uint32_t names_len;  // the names follow the record
};

struct connect_reply {
    std::uint64_t link;
};

struct buffer_note {
    std::uint64_t link;
    std::uint32_t slot;
    std::uint32_t reserved;
    std::uint64_t length;
    std::uint64_t sequence;
    std::int64_t ideal_ns;     // CLOCK_MONOTONIC: both processes are on one machine
    std::int64_t deadline_ns;
};

struct link_note {
    std::uint64_t link;
};

struct returned_note {
    std::uint64_t link;
    std::uint32_t slot;
    std::uint32_t reserved;
};

static_assert(std::is_trivially_copyable_v<connect_request> && sizeof(connect_request) == 64);
static_assert(std::is_trivially_copyable_v<buffer_note> && sizeof(buffer_note) == 48);
static_assert(std::is_trivially_copyable_v<returned_note> && sizeof(returned_note) == 16);
static_assert(sizeof(link_note) == 8 && sizeof(connect_reply) == 8);

// Inter-machine links (TCP). First the mutual proof of the shared key (tcp_auth.hpp):
//
//   A (connects)                                              B (serves)
//            <── challenge {auth_magic, tcp_version, flags, nonce_B}
//   answer {auth_magic, tcp_version, HMAC(key, nonce_B || "... A->B"), nonce_A} ──>
//            <── proof {status, HMAC(key, nonce_A || "... B->A")}
//
// (an insecure_no_auth server sends a challenge without auth_required, and nothing else of the
// three follows). Then the connecting side sends a hello (+ the '\n'-separated port names), the
// serving side answers with a welcome (+ a reason when refused), then frames follow, each a header
// and `length` bytes; a frame with frame_end ends the stream, one with frame_heartbeat (no bytes)
// says the sender is alive through a silence. The serving side copies each frame into a buffer of
// its own pool (bytes cross machines: no sharing) and releases it to its handlers at arrival.
// The records are parsed by the pure functions of tcp_wire.hpp.
inline constexpr std::uint32_t tcp_magic = 0x44505443;  // "DPTC"
inline constexpr std::uint32_t frame_magic = 0x44504652;  // "DPFR"
inline constexpr std::uint32_t auth_magic = 0x44505441;  // "DPTA"
// Version 1 had no authentication: its hello is refused (it comes where the answer is expected).
inline constexpr std::uint32_t tcp_version = 2;
inline constexpr std::uint32_t frame_end = 1;
inline constexpr std::uint32_t frame_heartbeat = 2;
inline constexpr std::uint32_t auth_required = 1;  // challenge flag
inline constexpr std::size_t nonce_size = 32;
inline constexpr std::size_t mac_size = 32;        // HMAC-SHA256
inline constexpr std::uint64_t max_tcp_buffer = std::uint64_t{64} << 20;
inline constexpr std::uint64_t max_tcp_count = 1024;

struct tcp_challenge {
    std::uint32_t magic;    // auth_magic
    std::uint32_t version;  // tcp_version
    std::uint32_t flags;    // auth_required, or 0 (insecure_no_auth)
    std::uint32_t reserved;
    std::uint8_t nonce[nonce_size];
};

struct tcp_answer {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint8_t mac[mac_size];  // over the challenge's nonce, direction A->B
    std::uint8_t nonce[nonce_size];
};

struct tcp_proof {
    std::int32_t status;  // 0: A proved the key; refused: it did not (B closes after this)
    std::uint32_t reserved;
    std::uint8_t mac[mac_size];  // over the answer's nonce, direction B->A (zero when refused)
};

struct tcp_hello {
    std::uint32_t magic;
    std::uint32_t version;
    double rate;
    std::int64_t delay_ns;
    std::int64_t jitter_ns;
    std::uint64_t buffer_size;
    std::uint64_t count;
    std::uint32_t on_late;
    std::uint32_t names_len;
};

struct tcp_welcome {
    std::int32_t status;  // 0, or refused (the reason follows)
    std::uint32_t text_len;
    std::uint64_t link;
};

struct tcp_frame {
    std::uint32_t magic;
    std::uint32_t flags;
    std::uint64_t sequence;
    std::uint64_t length;
};

static_assert(std::is_trivially_copyable_v<tcp_challenge> && sizeof(tcp_challenge) == 48);
static_assert(std::is_trivially_copyable_v<tcp_answer> && sizeof(tcp_answer) == 72);
static_assert(std::is_trivially_copyable_v<tcp_proof> && sizeof(tcp_proof) == 40);
static_assert(std::is_trivially_copyable_v<tcp_hello> && sizeof(tcp_hello) == 56);
static_assert(std::is_trivially_copyable_v<tcp_welcome> && sizeof(tcp_welcome) == 16);
static_assert(std::is_trivially_copyable_v<tcp_frame> && sizeof(tcp_frame) == 24);

}  // namespace datapump::rt::detail::wire
