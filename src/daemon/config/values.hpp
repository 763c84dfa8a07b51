// File: config/values.hpp (target datapump_daemon_config, internal)
//
// The text forms of option values: rates with SI suffixes, listen addresses, whole and decimal
// numbers and on/off switches. Used for flags, and for the TOML values that are text (rates, addresses).
// Not part of the config API: visible only to config.cpp and the tests. Rates use the HTTP
// protocol's parser, the one `rate=` query parameters go through: one grammar everywhere.
//
// Each parser returns the value or a message saying what is wrong with the text and what the
// right form is; the caller prefixes the flag or key. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
// After a standard header: expected.hpp's clang workaround keys on __GLIBCXX__.
#include "datapump/base/expected.hpp"

namespace datapump::daemon::detail {

template <class T>
using parsed = std::expected<T, std::string>;

// Bytes per second (http::parse_rate): digits, at most one decimal point, an optional suffix k or
// K (×1000), M (×10⁶) or G (×10⁹): "0", "250000", "5M", "1.5G". Errors: empty text, other
// characters or suffixes, more decimals than whole bytes allow ("1.5", "1.0001k"), or a value
// above 2^64-1; the message starts "'TEXT' is not a rate: ".
[[nodiscard]] parsed<std::uint64_t> parse_rate(std::string_view text);

// A decimal whole number no greater than `max`, digits only (no sign, no spaces).
[[nodiscard]] parsed<std::uint64_t> parse_unsigned(std::string_view text, std::uint64_t max);

// A decimal number: digits with at most one decimal point between digits ("0.9", "1", "0.0005").
// No sign, exponent or spaces.
[[nodiscard]] parsed<double> parse_decimal(std::string_view text);

// on/off, true/false, yes/no, 1/0 (lower case).
[[nodiscard]] parsed<bool> parse_switch(std::string_view text);

struct listen_address {
    std::string host;  // as written, without the brackets of an IPv6 address
    std::uint16_t port = 0;
};

// "HOST:PORT", "[IPv6]:PORT" or ":PORT" (host 0.0.0.0: every IPv4 address). Port 1..65535
// (0 too with `allow_port_zero`: the kernel picks).
// The host text is checked only for being non-empty and, outside brackets, free of ':'; whether
// it is an address is the socket layer's call. Errors name the part that is wrong.
[[nodiscard]] parsed<listen_address> parse_listen(std::string_view text, bool allow_port_zero = false);

// private control plane: --admin-listen's value. "off"; "unix:PATH" (an absolute path below
// 108 bytes); or HOST:PORT as parse_listen, port 0 allowed (the kernel picks).
struct admin_listen {
    bool off = false;
    std::string socket;     // unix:PATH
    listen_address address; // when neither off nor a socket
};
[[nodiscard]] parsed<admin_listen> parse_admin_listen(std::string_view text);

}  // namespace datapump::daemon::detail
