// directory_listing_html: names are text for the page (HTML-escaped) and parts of a URL
// (percent-encoded), and the two escapings are never mixed up.
#include "datapump/http/views.hpp"

namespace datapump::http {
namespace {

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c; break;
        }
    }
    return out;
}

bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

// Percent-encodes everything but RFC 3986 unreserved characters and, when `keep_slash`, '/'.
// The result is plain ASCII, safe inside a quoted HTML attribute.
std::string percent_encode(std::string_view text, bool keep_slash) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (unreserved(c) || (keep_slash && c == '/')) {
            out += ch;
        } else {
            out += '%';
            out += hex[c >> 4U];
            out += hex[c & 0xFU];
        }
    }
    return out;
}

std::string size_text(std::uint64_t bytes) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        return std::to_string(bytes) + " B";
    }
    // One decimal, computed in integers: tenths of the unit.
    std::size_t unit = 0;
    std::uint64_t whole = bytes;
    std::uint64_t rest = 0;
    while (whole >= 1024 && unit + 1 < std::size(units)) {
        rest = whole % 1024;
        whole /= 1024;
        ++unit;
    }
    return std::to_string(whole) + "." + std::to_string(rest * 10 / 1024) + " " + units[unit];
}

}  // namespace

std::string directory_listing_html(std::string_view url_path,
                                   const std::vector<std::pair<std::string, std::uint64_t>>& entries) {
    std::string base = percent_encode(url_path, true);
    if (base.empty() || base.back() != '/') {
        base += '/';
    }
    if (base.front() != '/') {
        base.insert(base.begin(), '/');
    }
    const std::string title = "Index of " + html_escape(url_path);
    std::string out =
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + title +
        "</title>\n<style>body{font:14px system-ui,sans-serif;margin:2em}td{padding:2px 1.5em 2px 0}"
        "td.size{text-align:right;color:#555}</style></head>\n<body><h1>" +
        title + "</h1>\n<table>\n";
    if (base != "/") {
        const std::size_t parent_end = base.rfind('/', base.size() - 2);
        out += "<tr><td><a href=\"" + base.substr(0, parent_end + 1) + "\">../</a></td><td></td></tr>\n";
    }
    for (const auto& [name, size] : entries) {
        const bool is_dir = !name.empty() && name.back() == '/';
        const std::string_view bare = is_dir ? std::string_view(name).substr(0, name.size() - 1) : name;
        out += "<tr><td><a href=\"" + base + percent_encode(bare, false) + (is_dir ? "/" : "") + "\">" +
               html_escape(name) + "</a></td><td class=\"size\">" + (is_dir ? "-" : size_text(size)) +
               "</td></tr>\n";
    }
    out += "</table>\n</body></html>\n";
    return out;
}

}  // namespace datapump::http
