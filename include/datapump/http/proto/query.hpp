// File: datapump/http/proto/query.hpp
//
// Query-string parameters (`rate=5M&burst=256k`) and the numbers the daemon takes in them and in
// its configuration: rates with SI suffixes, plain unsigned integers.
//
// Pure functions; thread-safe.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

// Returns the value of the first `name=value` pair of `query` (request::query: raw, without '?',
// pairs separated by '&') whose decoded name equals `name`, percent-decoded with '+' as a space;
// "" for a bare `name` or `name=`; nullopt when the name does not occur. A '%' that does not start
// a valid escape is kept as is.
[[nodiscard]] std::optional<std::string> query_param(std::string_view query, std::string_view name);

// Parses a rate in bytes per second: decimal digits with at most one decimal point and an
// optional SI suffix k or K (x1000), M (x10^6), G (x10^9). "5M" -> 5000000, "1.5M" -> 1500000,
// "0" -> 0. The result must be a whole number of bytes: at most 3, 6 or 9 decimals for k, M or G,
// none without a suffix.
// Errors: invalid_argument, with a message saying why (empty, negative, not a number, too many
// decimals, above 2^64-1).
[[nodiscard]] result<std::uint64_t> parse_rate(std::string_view text);

// Parses 1 to 20 decimal digits into an unsigned 64-bit integer (offsets, factors).
// Errors: invalid_argument (empty, a non-digit, above 2^64-1).
[[nodiscard]] result<std::uint64_t> parse_uint(std::string_view text);

}  // namespace datapump::http
DATAPUMP_API_END
