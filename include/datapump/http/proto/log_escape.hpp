// File: datapump/http/proto/log_escape.hpp
//
// Request-derived text made safe for a log line, as nginx writes its access log: every byte that
// could forge a line, a field or a terminal sequence is written as `\xHH` (uppercase hex).
//
//   escaped:  control bytes 0x00-0x1F and 0x7F (CR, LF, form feed, ESC, ...), '"' and '\',
//             and every byte that is not part of a well-formed UTF-8 sequence (a lone 0x80-0xFF,
//             overlong forms, surrogates, code points past U+10FFFF, a truncated sequence)
//   kept:     printable ASCII, and well-formed multi-byte UTF-8 ("wörld ☃" stays readable)
//
// So a logged value never holds a raw control byte, never ends its quoted field early, and
// decodes back unambiguously ('\' itself is escaped).
//
// Pure function; thread-safe.
#pragma once

#include "datapump/base/export.hpp"
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

[[nodiscard]] std::string log_escape(std::string_view text);

}  // namespace datapump::http
DATAPUMP_API_END
