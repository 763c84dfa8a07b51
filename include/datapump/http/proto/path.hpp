// File: datapump/http/proto/path.hpp
//
// From a request's raw path to a path relative to the served root, and back to text for
// directory listings. decode_path is the first of two fences (the second is openat2 with
// RESOLVE_BENEATH in the file provider): it refuses every spelling of a step out of the root
// instead of trying to normalise it.
//
// Pure functions; thread-safe.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

// Percent-decodes `raw_path` (request::path) once and returns it relative to the root: segments
// joined by '/', empty and "." segments dropped, never a leading '/', "" for the root itself.
// "/a//./b/" -> "a/b". No '+' decoding (that is for queries).
// Errors:
//   escapes_root      a ".." segment, however spelled ("..", "%2e%2e", ".%2E", ...)
//   invalid_argument  a '%' not followed by two hex digits; an encoded '/' (%2F); a backslash,
//                     raw or encoded (%5C); a NUL byte (%00)
//   out_of_range      a decoded segment longer than NAME_MAX (255) bytes, or a result of PATH_MAX
//                     (4096) bytes or more: no file system opens it (ENAMETOOLONG); the server
//                     answers 414, as for a request line over its limit
// `error::what` says which.
[[nodiscard]] result<std::string> decode_path(std::string_view raw_path);

// Escapes & < > " ' for HTML text and attribute values.
[[nodiscard]] std::string html_escape(std::string_view text);

// Percent-encodes (uppercase hex) every byte of `path` except unreserved characters
// (A-Z a-z 0-9 - . _ ~) and '/', for links in directory listings and Location headers.
[[nodiscard]] std::string url_encode_path(std::string_view path);

}  // namespace datapump::http
DATAPUMP_API_END
