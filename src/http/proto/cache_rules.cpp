#include "datapump/http/proto/cache_rules.hpp"

#include "text.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <charconv>
#include <utility>

namespace datapump::http {
namespace {

bool printable(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string refusal(std::string_view rule, std::string_view why) {
    std::string out = "'";
    out.append(rule);
    out.append("' ");
    out.append(why);
    out.append(": give PATTERN VALUE, e.g. '*.m3u8 no-cache; *.ts max-age=31536000, immutable'");
    return out;
}

// The max-age=N directive of a Cache-Control value; nullopt when absent; an error when malformed.
std::expected<std::optional<std::uint64_t>, bool> max_age_of(std::string_view value) {
    std::string_view rest = value;
    while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        const std::string_view directive = text::trim_ows(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        constexpr std::string_view key = "max-age=";
        if (text::iequals(directive.substr(0, key.size()), key)) {
            const std::string_view digits = directive.substr(key.size());
            std::uint64_t n = 0;
            const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
            if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size()) {
                return std::unexpected(false);
            }
            return n;
        }
    }
    return std::nullopt;
}

}  // namespace

std::expected<std::vector<cache_rule>, std::string> parse_cache_rules(std::string_view text) {
    std::vector<cache_rule> rules;
    if (text::trim_ows(text).empty() || text::trim_ows(text) == "none") {
        return rules;
    }
    while (true) {
        const std::size_t semi = text.find(';');
        const std::string_view rule = text::trim_ows(text.substr(0, semi));
        if (!rule.empty()) {
            const std::size_t blank = rule.find_first_of(" \t");
            if (blank == std::string_view::npos) {
                return std::unexpected(refusal(rule, "has no value"));
            }
            const std::string_view pattern = rule.substr(0, blank);
            const std::string_view value = text::trim_ows(rule.substr(blank));
            if (!printable(pattern) || !printable(value)) {
                return std::unexpected(refusal(rule, "has a control byte"));
            }
            const auto max_age = max_age_of(value);
            if (!max_age) {
                return std::unexpected(refusal(rule, "has a max-age that is not a number of seconds"));
            }
            rules.push_back({std::string(pattern), std::string(value), *max_age});
        }
        if (semi == std::string_view::npos) {
            break;
        }
        text.remove_prefix(semi + 1);
    }
    return rules;
}

const cache_rule* match_cache_rule(const std::vector<cache_rule>& rules, std::string_view path) {
    if (rules.empty()) {
        return nullptr;
    }
    const std::string p(path);
    for (const cache_rule& r : rules) {
        if (::fnmatch(r.pattern.c_str(), p.c_str(), 0) == 0) {
            return &r;
        }
    }
    return nullptr;
}

}  // namespace datapump::http
