// File: src/rt/transport/tcp_wire.hpp
//
// The parsing of what a TCP peer sends (wire.hpp's records, the port names, frame headers), as
// pure functions: no socket, no system, no allocation but the names. remote_tcp.cpp reads the
// bytes and hands them here; tests/fuzz/fuzz_rt_tcp_wire.cpp feeds them arbitrary bytes. Every
// field of a record is checked before any other code sees it; a refusal names what was wrong.
// Thread-safety: none needed (no state).
#pragma once

#include "wire.hpp"

#include "datapump/rt/qos.hpp"

#include <cstddef>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace datapump::rt::detail::wire {

// Why a record was refused: a fixed text (for the log), never the peer's bytes.
using malformed = std::string_view;

// Each takes exactly the record's bytes (sizeof the record; another size is malformed).
[[nodiscard]] std::expected<tcp_challenge, malformed> parse_challenge(std::span<const std::byte> raw);
[[nodiscard]] std::expected<tcp_answer, malformed> parse_answer(std::span<const std::byte> raw);
[[nodiscard]] std::expected<tcp_proof, malformed> parse_proof(std::span<const std::byte> raw);
// Magic, version and the length of the names that follow (at most max_names).
[[nodiscard]] std::expected<tcp_hello, malformed> parse_hello(std::span<const std::byte> raw);
// status 0 or refused; a reason of at most max_reason bytes.
[[nodiscard]] std::expected<tcp_welcome, malformed> parse_welcome(std::span<const std::byte> raw);

// A well-formed hello the serving side still refuses (its reason goes back in the welcome):
// buffers larger or more than a TCP link carries. nullopt: none of those.
[[nodiscard]] std::optional<std::string_view> hello_out_of_bounds(const tcp_hello& hello);
// The QoS a hello asks for (on_late: anything but drop is deliver_late).
[[nodiscard]] qos qos_of(const tcp_hello& hello);
// The '\n'-separated names that follow a hello (each checked later, by the port lookup).
[[nodiscard]] std::vector<std::string> split_names(std::string_view joined);

enum class frame_kind : std::uint8_t { data, end, heartbeat };
// A frame header for a link whose buffers hold `buffer_size` bytes: data (length bytes follow,
// at most buffer_size), end or heartbeat (no bytes follow, length 0).
[[nodiscard]] std::expected<frame_kind, malformed> parse_frame(std::span<const std::byte> raw,
                                                               std::uint64_t buffer_size);

}  // namespace datapump::rt::detail::wire
