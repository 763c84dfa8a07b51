// File: datapump/http/proto/validators.hpp
//
// RFC 9110 validators and conditional requests for static files: the strong ETag the server
// derives from a file's identity, HTTP dates (formatting and the three accepted parse forms), and
// the evaluation of If-None-Match, If-Modified-Since and If-Range.
//
// Pure functions, no locale and no shared state (parse_http_date reads the clock for RFC 850's
// two-digit years only); thread-safe.
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/http/proto/request.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

// Strong ETag `"<inode>-<size>-<mtime_ns>"`, each part in lowercase hex (mtime_ns as its 64-bit
// two's complement), quotes included. Changes whenever the file is replaced, resized or touched.
[[nodiscard]] std::string make_etag(std::uint64_t inode, std::uint64_t size, std::int64_t mtime_ns);

// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT", for Date and Last-Modified. Times before
// year 1 or after year 9999 are clamped to those years' first and last second.
[[nodiscard]] std::string http_date(std::int64_t unix_seconds);

// Parses an HTTP-date in any of the forms RFC 9110 §5.6.7 makes recipients accept:
//   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
//   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"  (a year more than 50 years ahead of now is
//                                                   taken from the previous century)
//   asctime      "Sun Nov  6 08:49:37 1994"
// Returns seconds since the Unix epoch, or nullopt for anything else (including an impossible
// day, hour or minute). Names are case-sensitive, as in the RFC; a leap second (:60) is accepted.
[[nodiscard]] std::optional<std::int64_t> parse_http_date(std::string_view text);

struct conditional_result {
    bool not_modified = false;  // answer 304 (GET and HEAD only)
    bool use_range = true;      // honour the Range header (false: If-Range did not match)
};

// Evaluates the request's preconditions against the file's current validators (`etag` as made
// by make_etag, `mtime_seconds` the Last-Modified time sent), in RFC 9110 §13.2.2 order:
//   If-None-Match (every such header; "*", or any listed tag equal by weak comparison) -> 304;
//     when present, If-Modified-Since is ignored;
//   If-Modified-Since (ignored when not a valid date) -> 304 when mtime <= that date;
//   If-Range: an entity tag keeps the range only on a strong match (a weak tag never does); a
//     date keeps it only when it equals Last-Modified exactly; a malformed value drops it.
// Methods other than GET and HEAD never get not_modified.
[[nodiscard]] conditional_result evaluate_conditions(const request& req, std::string_view etag,
                                                     std::int64_t mtime_seconds);

}  // namespace datapump::http
DATAPUMP_API_END
