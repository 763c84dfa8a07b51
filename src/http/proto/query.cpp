#include "datapump/http/proto/query.hpp"

#include "text.hpp"
#include <limits>

namespace datapump::http {

namespace {

using text::hex_value;
using text::is_digit;

constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

// application/x-www-form-urlencoded decoding, lenient: a bad escape stays literal.
std::string form_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '+') {
            out.push_back(' ');
        } else if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else {
            out.push_back(c);
        }
    }
    return out;
}

// value * 10 + digit, or nullopt on overflow.
std::optional<std::uint64_t> push_digit(std::uint64_t value, char digit) {
    const auto d = static_cast<std::uint64_t>(digit - '0');
    if (value > (u64_max - d) / 10) {
        return std::nullopt;
    }
    return value * 10 + d;
}

}  // namespace

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
    while (true) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        const std::size_t eq = pair.find('=');
        const std::string_view key = pair.substr(0, eq);
        if (!pair.empty() && form_decode(key) == name) {
            return eq == std::string_view::npos ? std::string() : form_decode(pair.substr(eq + 1));
        }
        if (amp == std::string_view::npos) {
            return std::nullopt;
        }
        query.remove_prefix(amp + 1);
    }
}

result<std::uint64_t> parse_rate(std::string_view text) {
    if (text.empty()) {
        return fail(errc::invalid_argument, "rate: empty; expected bytes per second such as 500k, 5M or 1.5G");
    }
    if (text.front() == '-') {
        return fail(errc::invalid_argument, "rate: negative rates are not allowed");
    }
    std::uint64_t multiplier = 1;
    std::size_t max_decimals = 0;
    switch (text.back()) {
        case 'k':
        case 'K':
            multiplier = 1000;
            max_decimals = 3;
            break;
        case 'M':
            multiplier = 1000000;
            max_decimals = 6;
            break;
        case 'G':
            multiplier = 1000000000;
            max_decimals = 9;
            break;
        default:
            break;
    }
    if (multiplier != 1) {
        text.remove_suffix(1);
    }
    const std::size_t dot = text.find('.');
    const std::string_view whole = text.substr(0, dot);
    const std::string_view decimals = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
    const auto all_digits = [](std::string_view s) {
        for (const char c : s) {
            if (!is_digit(c)) {
                return false;
            }
        }
        return true;
    };
    if (whole.empty() || !all_digits(whole) || (dot != std::string_view::npos && decimals.empty()) ||
        !all_digits(decimals)) {
        return fail(errc::invalid_argument,
                    "rate: not a number; expected digits, at most one '.', and an optional k, M or G suffix (e.g. 5M)");
    }
    if (decimals.size() > max_decimals) {
        return fail(errc::invalid_argument,
                    "rate: too many decimals for its unit (whole bytes: at most 3 for k, 6 for M, 9 for G, none "
                    "without a suffix)");
    }
    // The whole number with its decimals, scaled to the unit: "1.5M" -> 15 * 10^5.
    std::uint64_t value = 0;
    bool overflow = false;
    for (const char c : whole) {
        const auto next = push_digit(value, c);
        overflow = overflow || !next;
        value = next.value_or(0);
    }
    std::uint64_t scale = multiplier;
    for (const char c : decimals) {
        const auto next = push_digit(value, c);
        overflow = overflow || !next;
        value = next.value_or(0);
        scale /= 10;
    }
    if (overflow || (scale != 0 && value > u64_max / scale)) {
        return fail(errc::invalid_argument, "rate: too large (at most 18446744073709551615 bytes/s)");
    }
    return value * scale;
}

result<std::uint64_t> parse_uint(std::string_view text) {
    if (text.empty()) {
        return fail(errc::invalid_argument, "number: empty; expected decimal digits");
    }
    std::uint64_t value = 0;
    for (const char c : text) {
        if (!is_digit(c)) {
            return fail(errc::invalid_argument, "number: expected decimal digits only");
        }
        const auto next = push_digit(value, c);
        if (!next) {
            return fail(errc::invalid_argument, "number: too large (at most 18446744073709551615)");
        }
        value = *next;
    }
    return value;
}

}  // namespace datapump::http
