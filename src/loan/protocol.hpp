// File: src/loan/protocol.hpp
//
// The loan protocol on top of the ipc command channel (docs/ipc.md, "Loans across the process
// boundary"). Commands are ipc executes (client -> server, with a reply); notes are ipc one-way
// notifications (either way).
//
//   command     input                          output (reply)                     fds
//   map         map_request                    map_reply                          -
//   open        open_request + path bytes      open_reply                         -
//   borrow      borrow_request                 borrow_reply + extent[count]       buffer memfds (read-only)
//   give_back   give_back_request              -                                  -
//   close       close_request                  -                                  -
//   put         put_request + path bytes       put_reply                          c -> s: the source
//
//   note        direction   payload
//   reclaim     s -> c      reclaim_note + extent[count]
//   reclaimed   c -> s      reclaimed_note
//
// Reply status: 0 = done; 1 + errc = failed with that errc (see status_of / error_of). The ipc
// layer's own bad_command (negative) means the channel refused the command before it ran.
//
// put carries exactly one descriptor, client to server (ipc exec_flags::fds): the stream the
// file's bytes are read from. It runs on a worker of the server's pool (exec_flags::on_worker)
// and its reply comes once the file is published or the put failed. A server of this version
// without writing enabled answers unsupported; an older one, invalid_argument (unknown command).
//
// Every struct is trivially copyable with fixed-size fields and an asserted size; both sides copy
// a message into a local struct (memcpy) before reading it, and check every field. Little-endian
// hosts only (both ends are on one machine).
#pragma once

#include "datapump/base/error.hpp"

#include <cstdint>
#include <type_traits>

namespace datapump::loan::protocol {

inline constexpr std::uint32_t magic = 0x4e414f4cU;  // "LOAN"
// 2: one memfd per arena buffer, sent with the borrows that first need it (was: the whole arena's
// memfd with the map reply).
inline constexpr std::uint32_t version = 2;

enum class command : std::uint32_t { map = 1, open = 2, borrow = 3, give_back = 4, close = 5, put = 6 };
enum class note : std::uint32_t { reclaim = 1, reclaimed = 2 };

inline constexpr std::uint32_t max_path = 4096;  // bytes of an open path

struct map_request {
    std::uint32_t magic;
    std::uint32_t version;
};

struct map_reply {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint64_t arena_bytes;   // = buffer_size * buffer_count: the address range a client reserves
    std::uint64_t buffer_size;   // a multiple of 4096
    std::uint32_t buffer_count;
    std::uint32_t reserved;
};

struct open_request {
    std::uint32_t path_len;  // path bytes follow; no NUL
    std::uint32_t reserved;
};

struct open_reply {
    std::uint64_t handle;
    std::uint64_t size;
};

struct borrow_request {
    std::uint64_t handle;
    std::uint64_t offset;
    std::uint64_t length;
};

// One piece of a lease: `length` bytes at `arena_offset` of the arena, holding the file's bytes
// from `file_offset`. Never crosses a buffer boundary. The buffer's bytes live in a memfd of
// their own (buffer_size bytes, offset 0 = the buffer's start): `fd` = k + 1 when the reply's
// k-th descriptor is that memfd (a buffer this connection has not received in its current
// incarnation), 0 when the client already holds it. In a reclaim note, always 0.
struct extent {
    std::uint64_t arena_offset;
    std::uint64_t file_offset;
    std::uint32_t length;
    std::uint32_t fd;
};

// Lease 0 with no extents: the range was empty (offset at the end of the file).
struct borrow_reply {
    std::uint64_t lease;
    std::uint64_t file_offset;
    std::uint64_t size;
    std::uint32_t extent_count;
    std::uint32_t reserved;
};

struct give_back_request {
    std::uint64_t lease;
};

struct close_request {
    std::uint64_t handle;
};

// put_request::flags
inline constexpr std::uint32_t put_replace = 1U << 0;  // an existing file may be replaced
inline constexpr std::uint32_t put_known_flags = put_replace;

struct put_request {
    std::uint64_t length;    // exact byte count to read from the source
    std::uint32_t path_len;  // path bytes follow; no NUL
    std::uint32_t flags;     // put_replace; other bits must be 0
};

struct put_reply {
    std::uint64_t bytes;     // = the request's length
    std::uint32_t created;   // 1: the name was new; 0: an existing file was replaced
    std::uint32_t reserved;
};

struct reclaim_note {
    std::uint64_t lease;
    std::uint32_t extent_count;
    std::uint32_t reserved;
};

struct reclaimed_note {
    std::uint64_t lease;
};

static_assert(std::is_trivially_copyable_v<map_request> && sizeof(map_request) == 8);
static_assert(std::is_trivially_copyable_v<map_reply> && sizeof(map_reply) == 32);
static_assert(std::is_trivially_copyable_v<open_request> && sizeof(open_request) == 8);
static_assert(std::is_trivially_copyable_v<open_reply> && sizeof(open_reply) == 16);
static_assert(std::is_trivially_copyable_v<borrow_request> && sizeof(borrow_request) == 24);
static_assert(std::is_trivially_copyable_v<extent> && sizeof(extent) == 24);
static_assert(std::is_trivially_copyable_v<borrow_reply> && sizeof(borrow_reply) == 32);
static_assert(std::is_trivially_copyable_v<give_back_request> && sizeof(give_back_request) == 8);
static_assert(std::is_trivially_copyable_v<close_request> && sizeof(close_request) == 8);
static_assert(std::is_trivially_copyable_v<put_request> && sizeof(put_request) == 16);
static_assert(std::is_trivially_copyable_v<put_reply> && sizeof(put_reply) == 16);
static_assert(std::is_trivially_copyable_v<reclaim_note> && sizeof(reclaim_note) == 16);
static_assert(std::is_trivially_copyable_v<reclaimed_note> && sizeof(reclaimed_note) == 8);

inline constexpr std::uint32_t last_errc = static_cast<std::uint32_t>(errc::no_space);

[[nodiscard]] inline constexpr std::int32_t status_of(errc code) {
    return 1 + static_cast<std::int32_t>(code);
}

// The error a reply status stands for (status != 0). Statuses no server of this version sends
// (the ipc layer's bad_command among them) read as protocol_error.
[[nodiscard]] inline error error_of(std::int32_t status, const char* what) {
    if (status >= 1 && static_cast<std::uint32_t>(status - 1) <= last_errc) {
        return error{static_cast<errc>(status - 1), 0, what};
    }
    return error{errc::protocol_error, 0, what};
}

}  // namespace datapump::loan::protocol
