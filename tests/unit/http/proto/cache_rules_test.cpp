#include "datapump/http/proto/cache_rules.hpp"

#include <gtest/gtest.h>

namespace datapump::http {
namespace {

TEST(cache_rules, none_and_empty_are_no_rules) {
    for (const char* text : {"", "  ", "none"}) {
        auto r = parse_cache_rules(text);
        ASSERT_TRUE(r) << text;
        EXPECT_TRUE(r->empty()) << text;
        EXPECT_EQ(match_cache_rule(*r, "/a.ts"), nullptr);
    }
}

// The first matching rule wins; '*' spans folders; max-age is read for Expires.
TEST(cache_rules, the_first_matching_glob_gives_the_value) {
    auto r = parse_cache_rules("*.m3u8 no-cache;  *.ts  max-age=31536000, immutable ; /live/* Max-Age=5, public;"
                               " * max-age=3600");
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r->size(), 4U);
    const cache_rule* m = match_cache_rule(*r, "/shows/s1/index.m3u8");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->value, "no-cache");
    EXPECT_FALSE(m->max_age);
    m = match_cache_rule(*r, "/shows/s1/seg-00001.ts");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->value, "max-age=31536000, immutable");
    EXPECT_EQ(m->max_age, 31536000U);
    m = match_cache_rule(*r, "/live/feed.ts");  // the .ts rule comes first
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->max_age, 31536000U);
    m = match_cache_rule(*r, "/live/feed.mp4");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->value, "Max-Age=5, public");
    EXPECT_EQ(m->max_age, 5U);
    m = match_cache_rule(*r, "/other.bin");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->max_age, 3600U);
    EXPECT_EQ(match_cache_rule(*r, "/A.M3U8")->max_age, 3600U);  // case-sensitive, as paths are
}

TEST(cache_rules, what_is_not_a_rule_is_refused_naming_it) {
    const std::pair<const char*, const char*> cases[] = {
        {"*.ts", "has no value"},
        {"*.ts max-age=1d", "max-age that is not a number"},
        {"*.ts max-age=", "max-age that is not a number"},
        {"*.ts no-cache\r\nX-Injected: 1", "control byte"},
    };
    for (const auto& [text, why] : cases) {
        auto r = parse_cache_rules(text);
        ASSERT_FALSE(r) << text;
        EXPECT_NE(r.error().find(why), std::string::npos) << r.error();
        EXPECT_NE(r.error().find("give PATTERN VALUE"), std::string::npos) << r.error();
    }
}

}  // namespace
}  // namespace datapump::http
