// File: src/http/proto/text.hpp
//
// The character classes of RFC 9110 that several proto pieces read by: optional whitespace,
// digits, hex digits, ASCII case. Internal to http/proto. Pure functions, any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace datapump::http::text {

// OWS: space or horizontal tab.
[[nodiscard]] inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

[[nodiscard]] inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The value of a hex digit, or -1 when `c` is not one.
[[nodiscard]] inline int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// ASCII case folding (header names, tokens, codings and extensions are ASCII; no locale).
[[nodiscard]] inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

[[nodiscard]] inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) {
            return false;
        }
    }
    return true;
}

[[nodiscard]] inline std::string ascii_lowercase(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        c = ascii_lower(c);
    }
    return out;
}

[[nodiscard]] inline std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && is_ows(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_ows(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace datapump::http::text
