#include "datapump/http/proto/path.hpp"

#include "text.hpp"

#include <climits>

namespace datapump::http {

namespace {

using text::hex_value;

// Decodes one segment (no raw '/' in it) and applies the byte-level refusals.
result<std::string> decode_segment(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        if (c == '%') {
            const bool has_two = i + 2 < raw.size();
            const int hi = has_two ? hex_value(raw[i + 1]) : -1;
            const int lo = has_two ? hex_value(raw[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                return fail(errc::invalid_argument, "decode path: '%' not followed by two hex digits");
            }
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
            if (c == '/') {
                return fail(errc::invalid_argument, "decode path: encoded '/' (%2F) is refused");
            }
        }
        if (c == '\\') {
            return fail(errc::invalid_argument, "decode path: backslash is refused");
        }
        if (c == '\0') {
            return fail(errc::invalid_argument, "decode path: NUL byte is refused");
        }
        out.push_back(c);
    }
    return out;
}

bool is_unreserved(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

}  // namespace

result<std::string> decode_path(std::string_view raw_path) {
    std::string out;
    out.reserve(raw_path.size());
    while (true) {
        const std::size_t slash = raw_path.find('/');
        auto segment = decode_segment(raw_path.substr(0, slash));
        if (!segment) {
            return std::unexpected(segment.error());
        }
        if (*segment == "..") {
            return fail(errc::escapes_root, "decode path: '..' segment leaves the served root");
        }
        if (segment->size() > NAME_MAX) {
            return fail(errc::out_of_range, "decode path: a name longer than 255 bytes (NAME_MAX)");
        }
        if (!segment->empty() && *segment != ".") {
            if (!out.empty()) {
                out.push_back('/');
            }
            out += *segment;
        }
        if (slash == std::string_view::npos) {
            break;
        }
        raw_path.remove_prefix(slash + 1);
    }
    if (out.size() >= PATH_MAX) {
        return fail(errc::out_of_range, "decode path: longer than 4095 bytes (PATH_MAX)");
    }
    return out;
}

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out.push_back(c);
                break;
        }
    }
    return out;
}

std::string url_encode_path(std::string_view path) {
    constexpr std::string_view hex = "0123456789ABCDEF";
    std::string out;
    out.reserve(path.size());
    for (const char c : path) {
        if (is_unreserved(c) || c == '/') {
            out.push_back(c);
        } else {
            const auto byte = static_cast<unsigned char>(c);
            out.push_back('%');
            out.push_back(hex[byte >> 4U]);
            out.push_back(hex[byte & 0x0FU]);
        }
    }
    return out;
}

}  // namespace datapump::http
