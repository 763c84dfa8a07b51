#include "datapump/http/proto/mime.hpp"

#include <gtest/gtest.h>

#include <string>

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
        {"my file.mpg", "video/mpeg"},
        {"a.mpeg", "video/mpeg"},
        {"font.woff2", "font/woff2"},
        {"font.woff", "font/woff"},
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

// A system table in mime.types format fills in what the built-in one does not name.
TEST(mime_types, a_system_table_adds_the_extensions_the_built_in_one_lacks) {
    mime_types m;
    EXPECT_EQ(m.lookup("report.odt"), "application/octet-stream");  // built-in only
    const std::size_t added = m.add_system(
        "# comment line\n"
        "\n"
        "application/vnd.oasis.opendocument.text\todt\n"
        "text/x-markdown  md markdown   # a trailing comment\r\n"
        "application/x-no-extension\n"
        "image/x-tga\tTGA\n");
    EXPECT_EQ(added, 4U);
    EXPECT_EQ(m.system_entries(), 4U);
    EXPECT_EQ(m.lookup("docs/report.odt"), "application/vnd.oasis.opendocument.text");
    EXPECT_EQ(m.lookup("README.MarkDown"), "text/x-markdown");
    EXPECT_EQ(m.lookup("a.md"), "text/x-markdown");
    EXPECT_EQ(m.lookup("sprite.tga"), "image/x-tga");  // extensions compare case-insensitively
    EXPECT_EQ(m.lookup("a.unknown"), "application/octet-stream");
    EXPECT_EQ(m.lookup("no-extension"), "application/octet-stream");
}

// The built-in table wins: Debian's /etc/mime.types names `ts` as Qt Linguist's, which would break
// HLS segments; the first line naming an extension wins among the system's.
TEST(mime_types, the_built_in_table_wins_and_the_first_system_line_wins) {
    mime_types m;
    m.add_system("text/vnd.trolltech.linguist ts\n"
                 "text/html html htm\n"
                 "application/x-first dup\n"
                 "application/x-second dup\n");
    EXPECT_EQ(m.lookup("seg-1.ts"), "video/mp2t");
    EXPECT_EQ(m.lookup("index.html"), "text/html; charset=utf-8");
    EXPECT_EQ(m.lookup("a.dup"), "application/x-first");
}

// Lines a hostile or broken file may hold are skipped, never taken half.
TEST(mime_types, malformed_lines_are_skipped) {
    mime_types m;
    const std::string long_ext(33, 'x');
    const std::size_t added = m.add_system("notatype abc\n"
                                           "/slash-first abc\n"
                                           "two/slash/es abc\n"
                                           "bad type/ok abc\n"
                                           "text/ok " + long_ext + " ok1 bad/ext ok2\n"
                                           "text/semi;colon abc\n");
    EXPECT_EQ(added, 2U);
    EXPECT_EQ(m.lookup("a.abc"), "application/octet-stream");
    EXPECT_EQ(m.lookup("a." + long_ext), "application/octet-stream");
    EXPECT_EQ(m.lookup("a.ok1"), "text/ok");
    EXPECT_EQ(m.lookup("a.ok2"), "text/ok");
}

}  // namespace
}  // namespace datapump::http
