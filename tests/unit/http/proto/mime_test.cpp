#include "datapump/http/proto/mime.hpp"

#include <gtest/gtest.h>

namespace datapump::http {
namespace {

TEST(mime, table) {
    const std::pair<std::string_view, std::string_view> cases[] = {
        {"a.mp4", "video/mp4"},
        {"a.m4v", "video/mp4"},
        {"a.webm", "video/webm"},
        {"a.mkv", "video/x-matroska"},
        {"a.mov", "video/quicktime"},
        {"a.ts", "video/mp2t"},
        {"a.m3u8", "application/vnd.apple.mpegurl"},
        {"a.mpd", "application/dash+xml"},
        {"a.mp3", "audio/mpeg"},
        {"a.m4a", "audio/mp4"},
        {"a.aac", "audio/aac"},
        {"a.wav", "audio/wav"},
        {"a.ogg", "audio/ogg"},
        {"a.oga", "audio/ogg"},
        {"a.ogv", "video/ogg"},
        {"a.flac", "audio/flac"},
        {"a.html", "text/html; charset=utf-8"},
        {"a.htm", "text/html; charset=utf-8"},
        {"a.css", "text/css"},
        {"a.js", "text/javascript"},
        {"a.json", "application/json"},
        {"a.txt", "text/plain; charset=utf-8"},
        {"a.xml", "application/xml"},
        {"a.svg", "image/svg+xml"},
        {"a.png", "image/png"},
        {"a.jpg", "image/jpeg"},
        {"a.jpeg", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"a.webp", "image/webp"},
        {"a.ico", "image/x-icon"},
        {"a.pdf", "application/pdf"},
        {"a.zip", "application/zip"},
        {"a.gz", "application/gzip"},
        {"a.tar", "application/x-tar"},
        {"a.wasm", "application/wasm"},
        {"a.bin", "application/octet-stream"},
        {"a.vtt", "text/vtt; charset=utf-8"},
        {"a.m4s", "video/iso.segment"},
    };
    for (const auto& [path, type] : cases) {
        EXPECT_EQ(content_type_for(path), type) << path;
    }
}

TEST(mime, case_insensitive) {
    EXPECT_EQ(content_type_for("MOVIE.MP4"), "video/mp4");
    EXPECT_EQ(content_type_for("Index.HtMl"), "text/html; charset=utf-8");
    EXPECT_EQ(content_type_for("live.M3U8"), "application/vnd.apple.mpegurl");
}

TEST(mime, uses_the_last_segment_and_last_dot) {
    EXPECT_EQ(content_type_for("videos/season.1/ep.2.mkv"), "video/x-matroska");
    EXPECT_EQ(content_type_for("archive.tar.gz"), "application/gzip");
    EXPECT_EQ(content_type_for("a.mp4/readme"), "application/octet-stream");
    EXPECT_EQ(content_type_for("/x/.mp4"), "video/mp4");
}

TEST(mime, unknown_is_octet_stream) {
    EXPECT_EQ(content_type_for(""), "application/octet-stream");
    EXPECT_EQ(content_type_for("README"), "application/octet-stream");
    EXPECT_EQ(content_type_for("a."), "application/octet-stream");
    EXPECT_EQ(content_type_for("a.exe"), "application/octet-stream");
    EXPECT_EQ(content_type_for("a.mp4x"), "application/octet-stream");
    EXPECT_EQ(content_type_for("a.mpeg4"), "application/octet-stream");
    EXPECT_EQ(content_type_for("dir/"), "application/octet-stream");
}

}  // namespace
}  // namespace datapump::http
