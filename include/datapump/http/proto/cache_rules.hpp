// File: datapump/http/proto/cache_rules.hpp
//
// Caching headers for served files by path pattern (nginx's `expires` and `add_header
// Cache-Control` per location): the server's `cache_control` setting parsed into rules, and the
// first rule a file's path matches. The server adds Cache-Control, and Expires when the value has
// a max-age (docs/daemon.md, "Caching headers").
//
// Pure functions over values; thread-safe.
#pragma once

#include "datapump/base/expected.hpp"
#include "datapump/base/export.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::http {

struct cache_rule {
    std::string pattern;                   // fnmatch(3) glob over "/" + the path ('*' spans '/')
    std::string value;                     // the Cache-Control value, as given
    std::optional<std::uint64_t> max_age;  // its max-age, for Expires (none: no Expires)
};

// Parses "" or "none" (no rules), or rules separated by ';', each "PATTERN VALUE": a glob
// ("*.m3u8", "/live/*", "*") and a Cache-Control value ("no-cache", "max-age=31536000,
// immutable"). For a rule without a value, a pattern that is not a glob of printable bytes, a
// value with a control byte, or a max-age that is not a number, the error is a sentence naming
// the rule.
[[nodiscard]] std::expected<std::vector<cache_rule>, std::string> parse_cache_rules(std::string_view text);

// The first rule whose pattern matches `path` ("/" + the path under the root, e.g. "/a/b.ts"),
// compared case-sensitively as paths are; null when none does.
[[nodiscard]] const cache_rule* match_cache_rule(const std::vector<cache_rule>& rules, std::string_view path);

}  // namespace datapump::http
DATAPUMP_API_END
