#include "datapump/http/proto/mime.hpp"

#include <array>
#include <utility>

namespace datapump::http {

namespace {

constexpr std::string_view octet_stream = "application/octet-stream";

// Extensions in lowercase.
constexpr std::array<std::pair<std::string_view, std::string_view>, 42> types = {{
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
}};

constexpr std::size_t longest_extension = 4;

}  // namespace

std::string_view content_type_for(std::string_view path) {
    const std::size_t slash = path.rfind('/');
    const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
    const std::size_t dot = name.rfind('.');
    if (dot == std::string_view::npos || dot + 1 == name.size() || name.size() - dot - 1 > longest_extension) {
        return octet_stream;
    }
    std::array<char, longest_extension> lower{};
    const std::string_view ext = name.substr(dot + 1);
    for (std::size_t i = 0; i < ext.size(); ++i) {
        const char c = ext[i];
        lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    const std::string_view key(lower.data(), ext.size());
    for (const auto& [extension, type] : types) {
        if (extension == key) {
            return type;
        }
    }
    return octet_stream;
}

}  // namespace datapump::http
