#include "datapump/http/proto/query.hpp"

#include <gtest/gtest.h>
#include <string>

namespace datapump::http {
namespace {

TEST(query_param, finds_the_first_occurrence) {
    EXPECT_EQ(query_param("a=1&b=2", "a"), "1");
    EXPECT_EQ(query_param("a=1&b=2", "b"), "2");
    EXPECT_EQ(query_param("a=1&b=2&a=3", "a"), "1");
    EXPECT_EQ(query_param("a=1&b=2", "c"), std::nullopt);
    EXPECT_EQ(query_param("", "a"), std::nullopt);
    EXPECT_EQ(query_param("ab=1", "a"), std::nullopt);
    EXPECT_EQ(query_param("a=1", "ab"), std::nullopt);
}

TEST(query_param, empty_and_bare_values) {
    EXPECT_EQ(query_param("a&b=2", "a"), "");
    EXPECT_EQ(query_param("a=&b=2", "a"), "");
    EXPECT_EQ(query_param("&&a=1&&", "a"), "1");
    EXPECT_EQ(query_param("=1&a=2", ""), "1");
    EXPECT_EQ(query_param("a==1", "a"), "=1");
}

TEST(query_param, decodes_percent_and_plus) {
    EXPECT_EQ(query_param("file=a+b%20c%2Fd", "file"), "a b c/d");
    EXPECT_EQ(query_param("r%61te=5M", "rate"), "5M");
    EXPECT_EQ(query_param("x=%41%62", "x"), "Ab");
    EXPECT_EQ(query_param("x=100%", "x"), "100%");  // a bad escape stays literal
    EXPECT_EQ(query_param("x=%zz%4", "x"), "%zz%4");
    EXPECT_EQ(query_param("x=%2B", "x"), "+");
}

void expect_rate(std::string_view text, std::uint64_t value) {
    const auto r = parse_rate(text);
    ASSERT_TRUE(r.has_value()) << text << ": " << r.error().what;
    EXPECT_EQ(*r, value) << text;
}

std::string rate_error(std::string_view text) {
    const auto r = parse_rate(text);
    EXPECT_FALSE(r.has_value()) << text << " -> " << r.value_or(0);
    if (r.has_value()) {
        return {};
    }
    EXPECT_EQ(r.error().code, errc::invalid_argument);
    return r.error().what;
}

TEST(parse_rate, plain_and_suffixed) {
    expect_rate("0", 0);
    expect_rate("1", 1);
    expect_rate("123456", 123456);
    expect_rate("500k", 500000);
    expect_rate("500K", 500000);
    expect_rate("5M", 5000000);
    expect_rate("2G", 2000000000);
    expect_rate("007k", 7000);
}

TEST(parse_rate, decimals) {
    expect_rate("1.5M", 1500000);
    expect_rate("0.5k", 500);
    expect_rate("1.234567M", 1234567);
    expect_rate("2.000000001G", 2000000001);
    expect_rate("1.0G", 1000000000);
    EXPECT_NE(rate_error("1.2345k").find("too many decimals"), std::string::npos);
    EXPECT_NE(rate_error("1.5").find("too many decimals"), std::string::npos);
    EXPECT_NE(rate_error("1.0000000001G").find("too many decimals"), std::string::npos);
}

TEST(parse_rate, limits) {
    expect_rate("18446744073709551615", 18446744073709551615u);
    expect_rate("18446744073.709551615G", 18446744073709551615u);
    expect_rate("18446744073709551.615k", 18446744073709551615u);
    EXPECT_NE(rate_error("18446744073709551616").find("too large"), std::string::npos);
    EXPECT_NE(rate_error("18446744074G").find("too large"), std::string::npos);
    EXPECT_NE(rate_error("99999999999999999999999999M").find("too large"), std::string::npos);
}

TEST(parse_rate, garbage) {
    EXPECT_NE(rate_error("").find("empty"), std::string::npos);
    EXPECT_NE(rate_error("-5M").find("negative"), std::string::npos);
    EXPECT_NE(rate_error("-0").find("negative"), std::string::npos);
    for (const std::string_view bad : {"abc", "5m", "5g", "5MB", "5 M", " 5M", "5M ", "+5", ".5M", "5.M", "1.2.3M", "M",
                                       "k", "5kk", "0x10", "1e6", "５M"}) {
        EXPECT_NE(rate_error(bad).find("not a number"), std::string::npos) << bad;
    }
}

TEST(parse_uint, digits_only) {
    EXPECT_EQ(parse_uint("0").value(), 0u);
    EXPECT_EQ(parse_uint("1048576").value(), 1048576u);
    EXPECT_EQ(parse_uint("18446744073709551615").value(), 18446744073709551615u);
    EXPECT_EQ(parse_uint("18446744073709551616").error().code, errc::invalid_argument);
    EXPECT_EQ(parse_uint("").error().code, errc::invalid_argument);
    EXPECT_EQ(parse_uint("-1").error().code, errc::invalid_argument);
    EXPECT_EQ(parse_uint("1k").error().code, errc::invalid_argument);
    EXPECT_EQ(parse_uint(" 1").error().code, errc::invalid_argument);
}

}  // namespace
}  // namespace datapump::http
