// File: datapump/http/proto/accept_encoding.hpp
//
// Whether a request's Accept-Encoding (RFC 9110 §12.5.3) accepts a content coding, for serving a
// file's precompressed sibling (`file.js.br`, `file.js.gz`) as nginx's gzip_static does.
//
// Pure function; thread-safe.
#pragma once

#include "datapump/base/export.hpp"

#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

// True when `header` (the Accept-Encoding value; empty when absent) names `coding` ("br",
// "gzip"; case-insensitive) with a weight above 0, or names "*" above 0 and not `coding` itself.
// "x-gzip" counts as "gzip". A malformed weight counts as 0 for its entry. An absent header
// accepts nothing here: without it a client gets the file as it is.
[[nodiscard]] bool accepts_coding(std::string_view header, std::string_view coding);

}  // namespace datapump::http
DATAPUMP_API_END
