// logs: the access log's line formats, field by field (src/http/server/access_line.hpp).
#include "access_line.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <ctime>

namespace datapump::http {
namespace {

class access_line_test : public ::testing::Test {
protected:
    void SetUp() override {
        // A zone two hours east of UTC without summer time: the offset must show as +0200.
        ::setenv("TZ", "XST-2", 1);
        ::tzset();
    }
    void TearDown() override {
        ::unsetenv("TZ");
        ::tzset();
    }

    static access_record sample() {
        access_record r;
        r.remote_addr = "192.0.2.7";
        // 2026-12-07T03:14:15.042Z
        r.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796613255042));
        r.method = "GET";
        r.target = "/clips/a b.bin?x=1";
        r.protocol = "HTTP/1.1";
        r.status = 206;
        r.body_bytes = 100;
        r.referer = "http://example.org/page";
        r.user_agent = "agent \\x22quoted\\x22";
        r.range = "bytes=0-99";
        r.duration = std::chrono::microseconds(1'234'567);
        r.first_byte = std::chrono::microseconds(250);
        return r;
    }
};

TEST_F(access_line_test, combined_is_nginx_combined_then_range_and_duration) {
    EXPECT_EQ(format_access_line(sample(), access_log_format::combined),
              "192.0.2.7 - - [07/Dec/2026:05:14:15 +0200] \"GET /clips/a b.bin?x=1 HTTP/1.1\" 206 100 "
              "\"http://example.org/page\" \"agent \\x22quoted\\x22\" \"bytes=0-99\" 1.235");
}

TEST_F(access_line_test, combined_dashes_for_absent_fields_and_unparsed_requests) {
    access_record r = sample();
    r.referer = r.user_agent = r.range = {};
    r.method = r.target = r.protocol = {};
    r.status = 400;
    EXPECT_EQ(format_access_line(r, access_log_format::combined),
              "192.0.2.7 - - [07/Dec/2026:05:14:15 +0200] \"-\" 400 100 \"-\" \"-\" \"-\" 1.235");
}

TEST_F(access_line_test, json_has_every_field) {
    access_record r = sample();
    r.completed = false;
    const auto j = nlohmann::json::parse(format_access_line(r, access_log_format::json));
    EXPECT_EQ(j.at("time"), "2026-12-07T05:14:15.042+02:00");
    EXPECT_EQ(j.at("remote_addr"), "192.0.2.7");
    EXPECT_EQ(j.at("method"), "GET");
    EXPECT_EQ(j.at("target"), "/clips/a b.bin?x=1");
    EXPECT_EQ(j.at("protocol"), "HTTP/1.1");
    EXPECT_EQ(j.at("status"), 206);
    EXPECT_EQ(j.at("body_bytes_sent"), 100);
    EXPECT_EQ(j.at("referer"), "http://example.org/page");
    EXPECT_EQ(j.at("user_agent"), "agent \\x22quoted\\x22");  // the log_escape()d text, decoded
    EXPECT_EQ(j.at("range"), "bytes=0-99");
    EXPECT_DOUBLE_EQ(j.at("duration_s").get<double>(), 1.234567);
    EXPECT_DOUBLE_EQ(j.at("first_byte_s").get<double>(), 0.00025);
    EXPECT_EQ(j.at("completed"), false);
}

TEST_F(access_line_test, json_nulls_for_absent_fields) {
    access_record r = sample();
    r.referer = r.user_agent = r.range = {};
    r.method = r.target = r.protocol = {};
    r.first_byte = std::chrono::microseconds(-1);
    const auto j = nlohmann::json::parse(format_access_line(r, access_log_format::json));
    for (const char* key : {"referer", "user_agent", "range", "method", "target", "protocol", "first_byte_s"}) {
        EXPECT_TRUE(j.at(key).is_null()) << key;
    }
    EXPECT_EQ(j.at("completed"), true);
}

TEST(access_line, address_without_port) {
    EXPECT_EQ(address_of("192.0.2.1:5000"), "192.0.2.1");
    EXPECT_EQ(address_of("[2001:db8::1]:80"), "2001:db8::1");
    EXPECT_EQ(address_of("unix"), "unix");
}

}  // namespace
}  // namespace datapump::http
