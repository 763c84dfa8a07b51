#include "datapump/http/proto/cors.hpp"

#include <gtest/gtest.h>

namespace datapump::http {
namespace {

TEST(cors, empty_is_off_and_star_is_any) {
    auto off = parse_cors_origins("  ");
    ASSERT_TRUE(off);
    EXPECT_FALSE(off->enabled());
    auto none = parse_cors_origins("none");
    ASSERT_TRUE(none);
    EXPECT_FALSE(none->enabled());
    EXPECT_EQ(off->allow_origin("https://a.example"), "");

    auto any = parse_cors_origins("*");
    ASSERT_TRUE(any);
    EXPECT_TRUE(any->enabled());
    EXPECT_EQ(any->allow_origin("https://whatever.example:8443"), "*");
}

// The configured spelling is what goes into the header, never the request's bytes.
TEST(cors, a_list_allows_exactly_its_origins_case_insensitively) {
    auto p = parse_cors_origins(" https://Player.Example.com , http://localhost:3000,http://[::1]:8080");
    ASSERT_TRUE(p) << p.error();
    EXPECT_EQ(p->origins.size(), 3U);
    EXPECT_EQ(p->allow_origin("https://player.example.com"), "https://player.example.com");
    EXPECT_EQ(p->allow_origin("HTTPS://PLAYER.EXAMPLE.COM"), "https://player.example.com");
    EXPECT_EQ(p->allow_origin("http://localhost:3000"), "http://localhost:3000");
    EXPECT_EQ(p->allow_origin("http://[::1]:8080"), "http://[::1]:8080");
    EXPECT_EQ(p->allow_origin("http://player.example.com"), "");  // another scheme
    EXPECT_EQ(p->allow_origin("https://player.example.com:443"), "");
    EXPECT_EQ(p->allow_origin("https://player.example.com.evil.example"), "");
    EXPECT_EQ(p->allow_origin("null"), "");
    EXPECT_EQ(p->allow_origin(""), "");
}

TEST(cors, what_is_not_an_origin_is_refused_naming_it) {
    for (const char* bad : {"https://a.example/", "https://a.example/path", "ftp://a.example", "a.example",
                            "https://", "https://a.example:", "https://a.example:123456", "https://a b.example",
                            "https://a.example\r\nX-Injected: 1", "https://[zz]:1", "https://a.example,,"}) {
        auto p = parse_cors_origins(bad);
        ASSERT_FALSE(p) << bad;
        EXPECT_NE(p.error().find("is not an origin"), std::string::npos) << p.error();
    }
    auto mixed = parse_cors_origins("*, https://a.example");
    ASSERT_FALSE(mixed);
    EXPECT_NE(mixed.error().find("give it alone"), std::string::npos) << mixed.error();
}

}  // namespace
}  // namespace datapump::http
