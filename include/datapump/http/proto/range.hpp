// File: datapump/http/proto/range.hpp
//
// RFC 9110 §14 byte ranges, restricted to what the server serves: one range per response. A
// request with several ranges, another unit or a malformed Range header gets the whole file
// (RFC 9110 lets a server ignore Range), never a multipart body.
//
// Pure functions; thread-safe.
#pragma once

#include "datapump/base/export.hpp"

#include <cstdint>
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

enum class range_kind : std::uint8_t {
    none,           // no Range header: 200 with the whole file
    full,           // Range ignored (malformed, several ranges, not bytes): 200 with the whole file
    partial,        // 206 with bytes [first, last] (inclusive) and content_range()
    unsatisfiable,  // 416 with content_range_unsatisfied()
};

struct range_result {
    range_kind kind = range_kind::none;
    std::uint64_t first = 0;  // partial only
    std::uint64_t last = 0;   // partial only; inclusive, always < size
};

// Evaluates the value of a Range header for a representation of `size` bytes:
//   bytes=a-b  -> partial a..min(b, size-1); a > b -> full; a >= size -> unsatisfiable
//   bytes=a-   -> partial a..size-1;         a >= size -> unsatisfiable
//   bytes=-n   -> partial of the last n bytes (the whole file when n >= size); n = 0 -> unsatisfiable
//   size 0     -> every well-formed range is unsatisfiable
// The unit is case-insensitive; OWS is allowed around the value and around list elements
// (empty list elements are skipped); a number of more than 19 digits makes the header malformed.
// Never returns none.
[[nodiscard]] range_result evaluate_range(std::string_view header_value, std::uint64_t size);

// As above, with nullptr meaning "no Range header" (returns none): takes request::header("range").
[[nodiscard]] range_result evaluate_range(const std::string* header_value, std::uint64_t size);

// "bytes first-last/size", the Content-Range of a 206.
[[nodiscard]] std::string content_range(std::uint64_t first, std::uint64_t last, std::uint64_t size);

// "bytes */size", the Content-Range of a 416.
[[nodiscard]] std::string content_range_unsatisfied(std::uint64_t size);

}  // namespace datapump::http
DATAPUMP_API_END
