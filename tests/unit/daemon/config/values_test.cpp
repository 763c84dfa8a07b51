#include "config/values.hpp"

#include <gtest/gtest.h>

namespace datapump::daemon::detail {
namespace {

TEST(parse_rate, plain_and_si_suffixes) {
    EXPECT_EQ(parse_rate("0").value(), 0U);
    EXPECT_EQ(parse_rate("250000").value(), 250000U);
    EXPECT_EQ(parse_rate("5k").value(), 5000U);
    EXPECT_EQ(parse_rate("5M").value(), 5000000U);
    EXPECT_EQ(parse_rate("2G").value(), 2000000000U);
    EXPECT_EQ(parse_rate("1.5G").value(), 1500000000U);
    EXPECT_EQ(parse_rate("0.5k").value(), 500U);
    EXPECT_EQ(parse_rate("2.25M").value(), 2250000U);
    // The grammar of the rate= query parameter, so a flag and a request read "5K" alike.
    EXPECT_EQ(parse_rate("5K").value(), 5000U);
    EXPECT_EQ(parse_rate("18446744073709551615").value(), 18446744073709551615U);
}

TEST(parse_rate, rejects_bad_text_with_a_hint) {
    for (const char* bad : {"", "M", "5X", "5m", "-5M", "1.5", "1.", ".5M", "1.2.3M", "5 M", "5MB", "1e6",
                            "1.0000000001G", "18446744073709551616", "18446744073709552G"}) {
        const auto r = parse_rate(bad);
        EXPECT_FALSE(r.has_value()) << bad;
    }
    EXPECT_NE(parse_rate("5X").error().find("k, M or G"), std::string::npos);
    EXPECT_NE(parse_rate("1.5").error().find("whole bytes"), std::string::npos);
    EXPECT_EQ(parse_rate("5X").error().rfind("'5X' is not a rate: ", 0), 0U);
    EXPECT_NE(parse_rate("99999999999G").error().find("too large"), std::string::npos);
}

TEST(parse_unsigned, digits_only_within_max) {
    EXPECT_EQ(parse_unsigned("0", 10).value(), 0U);
    EXPECT_EQ(parse_unsigned("10", 10).value(), 10U);
    EXPECT_FALSE(parse_unsigned("11", 10).has_value());
    EXPECT_NE(parse_unsigned("11", 10).error().find("at most 10"), std::string::npos);
    for (const char* bad : {"", "-1", "+1", " 1", "1 ", "0x10", "1.0", "abc"}) {
        EXPECT_FALSE(parse_unsigned(bad, 100).has_value()) << bad;
    }
}

TEST(parse_decimal, digits_and_one_point) {
    EXPECT_DOUBLE_EQ(parse_decimal("0.9").value(), 0.9);
    EXPECT_DOUBLE_EQ(parse_decimal("1").value(), 1.0);
    EXPECT_DOUBLE_EQ(parse_decimal("0.0005").value(), 0.0005);
    for (const char* bad : {"", ".5", "1.", "-0.5", "+1", "1e-3", "0.5.1", " 1", "0,5", "abc"}) {
        EXPECT_FALSE(parse_decimal(bad).has_value()) << bad;
    }
    EXPECT_NE(parse_decimal("x").error().find("'x' is not a decimal number"), std::string::npos);
}

TEST(parse_switch, on_off_spellings) {
    for (const char* on : {"on", "true", "yes", "1"}) {
        EXPECT_TRUE(parse_switch(on).value()) << on;
    }
    for (const char* off : {"off", "false", "no", "0"}) {
        EXPECT_FALSE(parse_switch(off).value()) << off;
    }
    EXPECT_FALSE(parse_switch("maybe").has_value());
    EXPECT_FALSE(parse_switch("ON").has_value());
}

TEST(parse_admin_listen, forms) {
    EXPECT_TRUE(parse_admin_listen("off").value().off);
    auto a = parse_admin_listen("unix:/run/d/admin.sock").value();
    EXPECT_FALSE(a.off);
    EXPECT_EQ(a.socket, "/run/d/admin.sock");
    a = parse_admin_listen("127.0.0.1:0").value();
    EXPECT_EQ(a.address.host, "127.0.0.1");
    EXPECT_EQ(a.address.port, 0);
    EXPECT_FALSE(parse_admin_listen("unix:").has_value());
    EXPECT_FALSE(parse_admin_listen("Off").has_value());
    EXPECT_FALSE(parse_listen("127.0.0.1:0").has_value()) << "a public port is never 0";
}

TEST(parse_listen, accepted_forms) {
    auto a = parse_listen("127.0.0.1:8080").value();
    EXPECT_EQ(a.host, "127.0.0.1");
    EXPECT_EQ(a.port, 8080);
    a = parse_listen("[::1]:8080").value();
    EXPECT_EQ(a.host, "::1");
    EXPECT_EQ(a.port, 8080);
    a = parse_listen("0.0.0.0:80").value();
    EXPECT_EQ(a.host, "0.0.0.0");
    EXPECT_EQ(a.port, 80);
    a = parse_listen(":8080").value();
    EXPECT_EQ(a.host, "0.0.0.0");
    a = parse_listen("localhost:65535").value();
    EXPECT_EQ(a.host, "localhost");
    EXPECT_EQ(a.port, 65535);
    a = parse_listen("[fe80::1%eth0]:1").value();
    EXPECT_EQ(a.host, "fe80::1%eth0");
    EXPECT_EQ(a.port, 1);
}

TEST(parse_listen, rejected_forms) {
    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http",
                            "127.0.0.1:-1", "::1:8080", "[::1]", "[::1]8080", "[::1:8080", "[]:8080", ":", "host:80 "}) {
        EXPECT_FALSE(parse_listen(bad).has_value()) << bad;
    }
    EXPECT_NE(parse_listen("127.0.0.1").error().find("no port"), std::string::npos);
    EXPECT_NE(parse_listen("::1:8080").error().find("brackets"), std::string::npos);
    EXPECT_NE(parse_listen("h:0").error().find("1 to 65535"), std::string::npos);
}

}  // namespace
}  // namespace datapump::daemon::detail
