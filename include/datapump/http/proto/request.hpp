// File: datapump/http/proto/request.hpp
//
// One parsed HTTP/1.1 request, as request_parser hands it out: method, target (raw and split into
// path and query, neither decoded), version, keep-alive decision, headers and body.
//
// Ownership: a plain value that owns all its strings; nothing points into the receive buffer it
// was parsed from, so it outlives that buffer and may be moved to any thread.
//
// Header names are lowercased and values trimmed of surrounding spaces and tabs by the parser, so
// lookups are by lowercase name. Repeated headers keep their order (the parser has already
// refused a repeated Host or Content-Length).
#pragma once

#include "datapump/base/export.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::http {

// The methods the server tells apart; every other method http-parser knows is `other` (its name
// is in request::method_name), which the server answers with 405.
enum class method : std::uint8_t { get, head, post, put, delete_, options, other };

struct request {
    method verb = method::other;
    std::string method_name;  // as on the wire: "GET", "PROPFIND", ...
    std::string target;       // the request target as sent: origin-form, absolute-form, '*' or authority
    std::string path;         // path part of the target, still percent-encoded ("/" when absent)
    std::string query;        // after '?', without it, still percent-encoded ("" when absent)
    unsigned version_major = 1;
    unsigned version_minor = 1;
    bool keep_alive = false;                                   // http_should_keep_alive: false means answer, then close
    std::vector<std::pair<std::string, std::string>> headers;  // lowercase names, trimmed values
    std::string body;
    // A PUT under parser_limits::defer_put_bodies: the parser stopped after the head, and the
    // body (body_length bytes, or chunked) follows on the connection for the caller to read.
    bool body_follows = false;
    bool body_chunked = false;
    std::uint64_t body_length = 0;

    // Returns the value of the first header named `lowercase_name`, or nullptr when there is none.
    // The pointer stays valid until `headers` is modified or the request is destroyed.
    [[nodiscard]] const std::string* header(std::string_view lowercase_name) const;
};

}  // namespace datapump::http
DATAPUMP_API_END
