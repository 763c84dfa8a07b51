// File: datapump/http/proto/cors.hpp
//
// Which web pages on other origins may read the served files (CORS, the Fetch standard): the
// server's `cors_origins` setting parsed once into a policy, and the policy's answer for a
// request's `Origin`. The server adds the headers (docs/daemon.md, "Pages on other origins").
//
// Pure functions over values; thread-safe.
#pragma once

#include "datapump/base/expected.hpp"
#include "datapump/base/export.hpp"

#include <string>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::http {

struct cors_policy {
    bool any = false;                  // "*": every origin (public media, no credentials)
    std::vector<std::string> origins;  // else these, lowercase, as browsers serialize them

    [[nodiscard]] bool enabled() const { return any || !origins.empty(); }
    // The value of Access-Control-Allow-Origin for a request with this Origin: "*", the
    // configured origin it matches (never the request's own bytes), or empty (not allowed).
    [[nodiscard]] std::string_view allow_origin(std::string_view origin) const;
};

// Parses "" or "none" (off), "*", or a comma-separated list of origins "scheme://host[:port]" (http or
// https; blanks around the commas are ignored; compared case-insensitively). For anything else —
// a path, a trailing '/', another scheme, "*" beside others, a character that may not appear in
// a host — the error is a sentence naming the entry.
[[nodiscard]] std::expected<cors_policy, std::string> parse_cors_origins(std::string_view text);

}  // namespace datapump::http
DATAPUMP_API_END
