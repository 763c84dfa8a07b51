#include "datapump/http/proto/log_escape.hpp"

#include <cstddef>
#include <cstdint>

namespace datapump::http {

namespace {

// The length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629 table 3-7), or 0.
std::size_t utf8_sequence(std::string_view s) {
    const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(s[i]); };
    const auto tail = [&](std::size_t i) { return i < s.size() && (byte(i) & 0xC0U) == 0x80U; };
    const std::uint8_t lead = byte(0);
    if (lead >= 0xC2 && lead <= 0xDF) {
        return tail(1) ? 2 : 0;
    }
    if (lead >= 0xE0 && lead <= 0xEF) {
        if (s.size() < 3 || !tail(1) || !tail(2)) {
            return 0;
        }
        const std::uint8_t second = byte(1);
        if ((lead == 0xE0 && second < 0xA0) || (lead == 0xED && second > 0x9F)) {
            return 0;  // overlong, or a UTF-16 surrogate
        }
        return 3;
    }
    if (lead >= 0xF0 && lead <= 0xF4) {
        if (s.size() < 4 || !tail(1) || !tail(2) || !tail(3)) {
            return 0;
        }
        const std::uint8_t second = byte(1);
        if ((lead == 0xF0 && second < 0x90) || (lead == 0xF4 && second > 0x8F)) {
            return 0;  // overlong, or past U+10FFFF
        }
        return 4;
    }
    return 0;  // a continuation byte alone, 0xC0/0xC1 (overlong) or 0xF5-0xFF
}

}  // namespace

std::string log_escape(std::string_view text) {
    constexpr std::string_view hex = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<std::uint8_t>(text[i]);
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            out.push_back(static_cast<char>(c));
            ++i;
            continue;
        }
        if (c >= 0x80) {
            if (const std::size_t n = utf8_sequence(text.substr(i)); n > 0) {
                out.append(text.substr(i, n));
                i += n;
                continue;
            }
        }
        out += "\\x";
        out.push_back(hex[c >> 4U]);
        out.push_back(hex[c & 0x0FU]);
        ++i;
    }
    return out;
}

}  // namespace datapump::http
