#include "datapump/http/proto/mime.hpp"

#include "text.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace datapump::http {

namespace {

constexpr std::string_view octet_stream = "application/octet-stream";

// Extensions in lowercase.
constexpr std::array<std::pair<std::string_view, std::string_view>, 46> types = {{
    {"mp4", "video/mp4"},
    {"m4v", "video/mp4"},
    {"webm", "video/webm"},
    {"mkv", "video/x-matroska"},
    {"mov", "video/quicktime"},
    {"ts", "video/mp2t"},
    {"ogv", "video/ogg"},
    {"m3u8", "application/vnd.apple.mpegurl"},
    {"mpd", "application/dash+xml"},
    {"mp3", "audio/mpeg"},
    {"m4a", "audio/mp4"},
    {"aac", "audio/aac"},
    {"wav", "audio/wav"},
    {"ogg", "audio/ogg"},
    {"oga", "audio/ogg"},
    {"flac", "audio/flac"},
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css"},
    {"js", "text/javascript"},
    {"mjs", "text/javascript"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"wasm", "application/wasm"},
    {"bin", octet_stream},
    {"vtt", "text/vtt; charset=utf-8"},
    {"srt", "application/x-subrip"},
    {"m4s", "video/iso.segment"},
    {"avif", "image/avif"},
    {"opus", "audio/ogg"},
    {"mpg", "video/mpeg"},
    {"mpeg", "video/mpeg"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
}};

constexpr std::size_t longest_extension = 5;
constexpr std::size_t longest_system_extension = 32;

// The extension of the last segment of `path` (after its last '.'); empty when there is none.
std::string_view extension_of(std::string_view path) {
    const std::size_t slash = path.rfind('/');
    const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
    const std::size_t dot = name.rfind('.');
    return dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
}

bool extension_byte(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '_' || c == '.';
}

// RFC 6838's restricted-name characters, on either side of the one '/'.
bool type_byte(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || std::string_view("!#$&^_.+-").find(c) != std::string_view::npos;
}

bool valid_type(std::string_view t) {
    const std::size_t slash = t.find('/');
    return slash != std::string_view::npos && slash != 0 && slash + 1 != t.size() &&
           t.find('/', slash + 1) == std::string_view::npos &&
           std::all_of(t.begin(), t.end(), [](char c) { return c == '/' || type_byte(c); });
}

}  // namespace

std::string_view content_type_for(std::string_view path) {
    const std::string_view ext = extension_of(path);
    if (ext.empty() || ext.size() > longest_extension) {
        return octet_stream;
    }
    std::array<char, longest_extension> low{};
    for (std::size_t i = 0; i < ext.size() && i < low.size(); ++i) {
        low[i] = text::ascii_lower(ext[i]);
    }
    const std::string_view key(low.data(), ext.size());
    for (const auto& [extension, type] : types) {
        if (extension == key) {
            return type;
        }
    }
    return octet_stream;
}

std::size_t mime_types::add_system(std::string_view text) {
    std::size_t added = 0;
    while (!text.empty()) {
        const std::size_t eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        line = line.substr(0, line.find('#'));
        std::string_view type;
        const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
        while (!line.empty()) {
            std::size_t i = 0;
            while (i < line.size() && blank(line[i])) {
                ++i;
            }
            std::size_t j = i;
            while (j < line.size() && !blank(line[j])) {
                ++j;
            }
            const std::string_view word = line.substr(i, j - i);
            line = line.substr(j);
            if (word.empty()) {
                break;
            }
            if (type.empty()) {
                if (!valid_type(word)) {
                    break;
                }
                type = word;
                continue;
            }
            if (word.size() > longest_system_extension || !std::all_of(word.begin(), word.end(), extension_byte)) {
                continue;
            }
            if (system_.emplace(text::ascii_lowercase(word), std::string(type)).second) {
                ++added;
            }
        }
    }
    return added;
}

std::string_view mime_types::lookup(std::string_view path) const {
    const std::string_view fixed = content_type_for(path);
    if (fixed != octet_stream || system_.empty()) {
        return fixed;
    }
    const std::string_view ext = extension_of(path);
    if (ext.empty() || ext.size() > longest_system_extension) {
        return octet_stream;
    }
    const auto it = system_.find(text::ascii_lowercase(ext));
    return it == system_.end() ? octet_stream : std::string_view(it->second);
}

}  // namespace datapump::http
