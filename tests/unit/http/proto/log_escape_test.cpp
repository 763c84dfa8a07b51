#include "datapump/http/proto/log_escape.hpp"

#include <gtest/gtest.h>
#include <string>

namespace datapump::http {
namespace {

TEST(log_escape, printable_ascii_is_kept) {
    EXPECT_EQ(log_escape("GET /a/b.mp4?rate=5M&x=1 ~!$'()*+,;=:@"), "GET /a/b.mp4?rate=5M&x=1 ~!$'()*+,;=:@");
    EXPECT_EQ(log_escape(""), "");
}

TEST(log_escape, control_bytes_quote_and_backslash_are_escaped) {
    EXPECT_EQ(log_escape("a\fb"), "a\\x0Cb");          // form feed
    EXPECT_EQ(log_escape("\x1b[31mred"), "\\x1B[31mred");  // ESC: a terminal sequence
    EXPECT_EQ(log_escape("x\r\ny"), "x\\x0D\\x0Ay");     // CR/LF: a forged log line
    EXPECT_EQ(log_escape(std::string("\0", 1)), "\\x00");
    EXPECT_EQ(log_escape("\t\x7f"), "\\x09\\x7F");
    EXPECT_EQ(log_escape("say \"hi\""), "say \\x22hi\\x22");  // cannot end a quoted field early
    EXPECT_EQ(log_escape("a\\x41"), "a\\x5Cx41");            // an escape cannot be forged either
}

TEST(log_escape, bytes_that_are_not_utf8_are_escaped) {
    EXPECT_EQ(log_escape("\x80"), "\\x80");
    EXPECT_EQ(log_escape("a\xff" "b"), "a\\xFFb");
    EXPECT_EQ(log_escape("\xc3"), "\\xC3");             // a lead byte cut short
    EXPECT_EQ(log_escape("\xc3(x"), "\\xC3(x");         // a lead byte without its continuation
    EXPECT_EQ(log_escape("\xc0\xaf"), "\\xC0\\xAF");    // overlong '/'
    EXPECT_EQ(log_escape("\xe0\x80\xaf"), "\\xE0\\x80\\xAF");
    EXPECT_EQ(log_escape("\xed\xa0\x80"), "\\xED\\xA0\\x80");  // a UTF-16 surrogate
    EXPECT_EQ(log_escape("\xf4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");  // past U+10FFFF
    EXPECT_EQ(log_escape("\xf5\x80\x80\x80"), "\\xF5\\x80\\x80\\x80");
    for (int b = 0x80; b <= 0xff; ++b) {
        const std::string one(1, static_cast<char>(b));
        const std::string escaped = log_escape(one);
        EXPECT_EQ(escaped.size(), 4u) << b;
        EXPECT_EQ(escaped.substr(0, 2), "\\x") << b;
    }
}

TEST(log_escape, well_formed_utf8_is_kept) {
    const std::string text = "hello w\xc3\xb6rld \xe2\x98\x83 \xf0\x9f\x8e\xac \xf4\x8f\xbf\xbf";  // ö ☃ 🎬 U+10FFFF
    EXPECT_EQ(log_escape(text), text);
    EXPECT_EQ(log_escape("\xc3\xb6\x0c\xc3\xb6"), "\xc3\xb6\\x0C\xc3\xb6");
}

}  // namespace
}  // namespace datapump::http
