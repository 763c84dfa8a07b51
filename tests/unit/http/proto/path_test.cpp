#include "datapump/http/proto/path.hpp"

#include <gtest/gtest.h>
#include <string>

namespace datapump::http {
namespace {

void expect_path(std::string_view raw, std::string_view expected) {
    const auto decoded = decode_path(raw);
    ASSERT_TRUE(decoded.has_value()) << raw << ": " << decoded.error().what;
    EXPECT_EQ(*decoded, expected) << raw;
}

void expect_refused(std::string_view raw, errc code) {
    const auto decoded = decode_path(raw);
    ASSERT_FALSE(decoded.has_value()) << raw << " -> " << *decoded;
    EXPECT_EQ(decoded.error().code, code) << raw << ": " << decoded.error().what;
}

TEST(decode_path, plain_paths) {
    expect_path("/", "");
    expect_path("", "");
    expect_path("/a", "a");
    expect_path("/a/b/c.mp4", "a/b/c.mp4");
    expect_path("/a//./b/", "a/b");
    expect_path("//a/.//b//.", "a/b");
    expect_path("a/b", "a/b");
    expect_path("/a/.../b", "a/.../b");  // three dots is an ordinary name
    expect_path("/..a/b..", "..a/b..");
    expect_path("/.hidden", ".hidden");
}

TEST(decode_path, percent_decoding_happens_once) {
    expect_path("/a%20b", "a b");
    expect_path("/%41%62%63", "Abc");
    expect_path("/caf%C3%A9", "caf\xC3\xA9");
    expect_path("/a%2520b", "a%20b");  // %25 decodes to '%', not decoded again
    expect_path("/a+b", "a+b");        // '+' is not a space in a path
    expect_path("/%2e", "");           // "." spelled encoded is still dropped
    expect_path("/%2e%2e%2e", "...");
}

TEST(decode_path, traversal_is_refused) {
    expect_refused("/../etc/passwd", errc::escapes_root);
    expect_refused("/a/../../etc/passwd", errc::escapes_root);
    expect_refused("/a/..", errc::escapes_root);
    expect_refused("..", errc::escapes_root);
    expect_refused("/a/%2e%2e/b", errc::escapes_root);
    expect_refused("/%2e%2E/", errc::escapes_root);
    expect_refused("/.%2e/x", errc::escapes_root);
    expect_refused("/%2E./x", errc::escapes_root);
}

TEST(decode_path, encoded_slash_backslash_and_nul_are_refused) {
    expect_refused("/a/..%2f", errc::invalid_argument);
    expect_refused("/a%2Fb", errc::invalid_argument);
    expect_refused("/a%2fb", errc::invalid_argument);
    expect_refused("/%00", errc::invalid_argument);
    expect_refused("/a%00.mp4", errc::invalid_argument);
    expect_refused("/a%5c..%5cb", errc::invalid_argument);
    expect_refused("/a%5C..", errc::invalid_argument);
    expect_refused("/a\\..\\b", errc::invalid_argument);
    EXPECT_EQ(std::string_view(decode_path("/a%5cb").error().what), "decode path: backslash is refused");
    EXPECT_EQ(std::string_view(decode_path("/%00").error().what), "decode path: NUL byte is refused");
}

TEST(decode_path, bad_escapes_are_refused) {
    expect_refused("/%", errc::invalid_argument);
    expect_refused("/%4", errc::invalid_argument);
    expect_refused("/a%", errc::invalid_argument);
    expect_refused("/%zz", errc::invalid_argument);
    expect_refused("/%g0", errc::invalid_argument);
    expect_refused("/%0g", errc::invalid_argument);
    expect_refused("/%%41", errc::invalid_argument);
    EXPECT_EQ(std::string_view(decode_path("/%4").error().what), "decode path: '%' not followed by two hex digits");
}

// Longer than any file system takes (ENAMETOOLONG): refused before the file layer (414).
TEST(decode_path, over_long_names_are_refused) {
    expect_path("/" + std::string(255, 'n'), std::string(255, 'n'));
    expect_refused("/" + std::string(256, 'n'), errc::out_of_range);
    expect_refused("/a/" + std::string(256, 'n') + "/b", errc::out_of_range);
    std::string encoded;  // 256 decoded bytes, spelled in 768
    for (int i = 0; i < 256; ++i) {
        encoded += "%6E";
    }
    expect_refused("/" + encoded, errc::out_of_range);
    std::string deep;  // 4095 bytes decoded: the most a relative path can be
    while (deep.size() + 101 <= 4095) {
        deep += std::string(100, 'd') + "/";
    }
    deep += std::string(4095 - deep.size(), 'e');
    ASSERT_EQ(deep.size(), 4095u);
    expect_path("/" + deep, deep);
    expect_refused("/" + deep + "e", errc::out_of_range);
    expect_path("/" + deep + "//./", deep);  // what is dropped does not count
}

TEST(html_escape, escapes_the_five_characters) {
    EXPECT_EQ(html_escape("a<b>&\"c'd"), "a&lt;b&gt;&amp;&quot;c&#39;d");
    EXPECT_EQ(html_escape(""), "");
    EXPECT_EQ(html_escape("plain text/ü"), "plain text/ü");
}

TEST(url_encode_path, keeps_unreserved_and_slash) {
    EXPECT_EQ(url_encode_path("a/b-c_d.e~f/XYZ09"), "a/b-c_d.e~f/XYZ09");
    EXPECT_EQ(url_encode_path("a b/c%d?e#f&g+h"), "a%20b/c%25d%3Fe%23f%26g%2Bh");
    EXPECT_EQ(url_encode_path("caf\xC3\xA9"), "caf%C3%A9");
    EXPECT_EQ(url_encode_path(std::string_view("\0\x7f", 2)), "%00%7F");
}

TEST(url_encode_path, round_trips_through_decode_path) {
    const std::string name = "dir/some file (1) [x]#?%.mp4";
    const auto back = decode_path("/" + url_encode_path(name));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, name);
}

}  // namespace
}  // namespace datapump::http
