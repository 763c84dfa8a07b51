#include "datapump/http/proto/validators.hpp"

#include <gtest/gtest.h>
#include <string>

namespace datapump::http {
namespace {

constexpr std::int64_t rfc_example = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT

TEST(make_etag, strong_hex_triple) {
    EXPECT_EQ(make_etag(0x1234, 1000, 1700000000123456789), "\"1234-3e8-17979cfe3d85cd15\"");
    EXPECT_EQ(make_etag(0, 0, 0), "\"0-0-0\"");
    EXPECT_EQ(make_etag(1, 2, -5), "\"1-2-fffffffffffffffb\"");
    EXPECT_EQ(make_etag(UINT64_MAX, UINT64_MAX, INT64_MIN), "\"ffffffffffffffff-ffffffffffffffff-8000000000000000\"");
    EXPECT_NE(make_etag(1, 2, 3), make_etag(1, 2, 4));
}

TEST(http_date, imf_fixdate) {
    EXPECT_EQ(http_date(rfc_example), "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_EQ(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    EXPECT_EQ(http_date(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
    EXPECT_EQ(http_date(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
    EXPECT_EQ(http_date(1700000000), "Tue, 14 Nov 2023 22:13:20 GMT");
}

TEST(http_date, clamps_to_four_digit_years) {
    EXPECT_EQ(http_date(253402300799), "Fri, 31 Dec 9999 23:59:59 GMT");
    EXPECT_EQ(http_date(INT64_MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    EXPECT_EQ(http_date(-62135596800), "Mon, 01 Jan 0001 00:00:00 GMT");
    EXPECT_EQ(http_date(INT64_MIN), "Mon, 01 Jan 0001 00:00:00 GMT");
}

TEST(parse_http_date, three_forms) {
    EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), rfc_example);
    EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), rfc_example);
    EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), rfc_example);
    EXPECT_EQ(parse_http_date("Sun Nov 06 08:49:37 1994"), rfc_example);
    EXPECT_EQ(parse_http_date("Tue Nov 14 22:13:20 2023"), 1700000000);
}

TEST(parse_http_date, rfc850_two_digit_years) {
    // More than 50 years ahead of now means the previous century.
    EXPECT_EQ(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT"),
              std::optional<std::int64_t>(parse_http_date("Thu, 01 Jan 2070 00:00:00 GMT")));
    EXPECT_EQ(parse_http_date("Wednesday, 02-Jan-30 03:04:05 GMT"), 1893553445);
    EXPECT_EQ(parse_http_date("Friday, 01-Jan-99 00:00:00 GMT"), 915148800);  // 1999
}

TEST(parse_http_date, round_trips) {
    for (std::int64_t t = -86400LL * 365 * 3; t < 4102444800; t += 7777777) {
        const std::string text = http_date(t);
        EXPECT_EQ(parse_http_date(text), t) << text;
    }
    // asctime and RFC 850 spellings of the same instants.
    EXPECT_EQ(parse_http_date("Tue Feb 29 00:00:00 2000"), 951782400);
    EXPECT_EQ(parse_http_date("Tuesday, 29-Feb-00 00:00:00 GMT"), 951782400);
    EXPECT_EQ(parse_http_date("Thu Jan  1 00:00:00 1970"), 0);
}

TEST(parse_http_date, leap_second_is_accepted) {
    EXPECT_EQ(parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT"), 1483228800);
}

TEST(parse_http_date, rejects_malformed_dates) {
    for (const std::string_view bad : {
             "",
             "Sun, 06 Nov 1994 08:49:37",  // no GMT
             "Sun, 06 Nov 1994 08:49:37 UTC",
             "Sun, 06 Nov 1994 08:49:37 GMT ",  // trailing space
             " Sun, 06 Nov 1994 08:49:37 GMT",
             "sun, 06 Nov 1994 08:49:37 GMT",  // names are case-sensitive
             "Sun, 06 nov 1994 08:49:37 GMT",
             "Sun, 6 Nov 1994 08:49:37 GMT",  // two-digit day
             "Sun, 06 Nov 94 08:49:37 GMT",
             "Sun, 31 Feb 1994 08:49:37 GMT",  // no such day
             "Sun, 29 Feb 1900 08:49:37 GMT",  // 1900 is not a leap year
             "Sun, 00 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 24:00:00 GMT",
             "Sun, 06 Nov 1994 08:60:00 GMT",
             "Sun, 06 Nov 1994 08:49:61 GMT",
             "Sun, 06 Nov 1994 8:49:37 GMT",
             "Sun, 06 Foo 1994 08:49:37 GMT",
             "Sunday, 06-Nov-1994 08:49:37 GMT",
             "Sun, 06-Nov-94 08:49:37 GMT",
             "Sun Nov 6 08:49:37 1994",  // asctime pads the day with a space
             "Sun Nov  6 08:49:37 94",
             "Sun Nov  6 08:49:37 1994 GMT",
             "1994-11-06T08:49:37Z",
             "784111777",
         }) {
        EXPECT_EQ(parse_http_date(bad), std::nullopt) << '"' << bad << '"';
    }
}

request make_request(method verb, std::vector<std::pair<std::string, std::string>> headers) {
    request req;
    req.verb = verb;
    req.headers = std::move(headers);
    return req;
}

const std::string etag = "\"1-2-3\"";
constexpr std::int64_t mtime = rfc_example;

conditional_result evaluate(method verb, std::vector<std::pair<std::string, std::string>> headers) {
    return evaluate_conditions(make_request(verb, std::move(headers)), etag, mtime);
}

TEST(evaluate_conditions, no_conditions) {
    const auto r = evaluate(method::get, {{"range", "bytes=0-1"}});
    EXPECT_FALSE(r.not_modified);
    EXPECT_TRUE(r.use_range);
}

TEST(evaluate_conditions, if_none_match) {
    EXPECT_TRUE(evaluate(method::get, {{"if-none-match", "\"1-2-3\""}}).not_modified);
    EXPECT_TRUE(evaluate(method::head, {{"if-none-match", "\"1-2-3\""}}).not_modified);
    EXPECT_TRUE(evaluate(method::get, {{"if-none-match", "W/\"1-2-3\""}}).not_modified);  // weak comparison
    EXPECT_TRUE(evaluate(method::get, {{"if-none-match", "\"x\", \"a,b\" ,W/\"1-2-3\""}}).not_modified);
    EXPECT_TRUE(evaluate(method::get, {{"if-none-match", "*"}}).not_modified);
    EXPECT_FALSE(evaluate(method::get, {{"if-none-match", "\"1-2-4\""}}).not_modified);
    EXPECT_FALSE(evaluate(method::get, {{"if-none-match", "\"1-2-3"}}).not_modified);  // unterminated
    EXPECT_FALSE(evaluate(method::get, {{"if-none-match", "1-2-3"}}).not_modified);    // unquoted
    EXPECT_FALSE(evaluate(method::get, {{"if-none-match", ""}}).not_modified);
    // A tag containing a comma is one tag, not two.
    EXPECT_FALSE(evaluate(method::get, {{"if-none-match", "\"x,\"1-2-3\""}}).not_modified);
    // Several If-None-Match fields form one list.
    EXPECT_TRUE(evaluate(method::get, {{"if-none-match", "\"a\""}, {"if-none-match", "\"1-2-3\""}}).not_modified);
    // Only GET and HEAD get 304.
    EXPECT_FALSE(evaluate(method::post, {{"if-none-match", "\"1-2-3\""}}).not_modified);
    EXPECT_FALSE(evaluate(method::put, {{"if-none-match", "*"}}).not_modified);
}

TEST(evaluate_conditions, our_weak_etag_matches_weakly) {
    const auto r =
        evaluate_conditions(make_request(method::get, {{"if-none-match", "\"1-2-3\""}}), "W/\"1-2-3\"", mtime);
    EXPECT_TRUE(r.not_modified);
}

TEST(evaluate_conditions, if_modified_since) {
    EXPECT_TRUE(evaluate(method::get, {{"if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"}}).not_modified);
    EXPECT_TRUE(evaluate(method::get, {{"if-modified-since", "Sun, 06 Nov 1994 08:49:38 GMT"}}).not_modified);
    EXPECT_TRUE(evaluate(method::head, {{"if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT"}}).not_modified);
    EXPECT_TRUE(evaluate(method::get, {{"if-modified-since", "Sun Nov  6 08:49:37 1994"}}).not_modified);
    EXPECT_FALSE(evaluate(method::get, {{"if-modified-since", "Sun, 06 Nov 1994 08:49:36 GMT"}}).not_modified);
    EXPECT_FALSE(evaluate(method::get, {{"if-modified-since", "yesterday"}}).not_modified);
    EXPECT_FALSE(evaluate(method::post, {{"if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"}}).not_modified);
}

TEST(evaluate_conditions, if_none_match_takes_precedence) {
    // A non-matching If-None-Match wins over an If-Modified-Since that would give 304...
    EXPECT_FALSE(
        evaluate(method::get, {{"if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"}, {"if-none-match", "\"other\""}})
            .not_modified);
    // ...and a matching one gives 304 even when the date says modified.
    EXPECT_TRUE(
        evaluate(method::get, {{"if-none-match", "\"1-2-3\""}, {"if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT"}})
            .not_modified);
    // A malformed If-None-Match still disables If-Modified-Since.
    EXPECT_FALSE(
        evaluate(method::get, {{"if-none-match", "garbage"}, {"if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"}})
            .not_modified);
}

TEST(evaluate_conditions, if_range_with_entity_tag) {
    EXPECT_TRUE(evaluate(method::get, {{"range", "bytes=0-1"}, {"if-range", "\"1-2-3\""}}).use_range);
    EXPECT_FALSE(evaluate(method::get, {{"range", "bytes=0-1"}, {"if-range", "\"1-2-4\""}}).use_range);
    EXPECT_FALSE(evaluate(method::get, {{"range", "bytes=0-1"}, {"if-range", "W/\"1-2-3\""}}).use_range);
    EXPECT_FALSE(evaluate(method::get, {{"range", "bytes=0-1"}, {"if-range", "\"1-2-3\", \"x\""}}).use_range);
    const auto ours_weak =
        evaluate_conditions(make_request(method::get, {{"if-range", "W/\"1-2-3\""}}), "W/\"1-2-3\"", mtime);
    EXPECT_FALSE(ours_weak.use_range);
}

TEST(evaluate_conditions, if_range_with_date) {
    EXPECT_TRUE(evaluate(method::get, {{"if-range", "Sun, 06 Nov 1994 08:49:37 GMT"}}).use_range);
    EXPECT_TRUE(evaluate(method::get, {{"if-range", "Sun Nov  6 08:49:37 1994"}}).use_range);
    EXPECT_FALSE(evaluate(method::get, {{"if-range", "Sun, 06 Nov 1994 08:49:38 GMT"}}).use_range);
    EXPECT_FALSE(evaluate(method::get, {{"if-range", "Sun, 06 Nov 1994 08:49:36 GMT"}}).use_range);
    EXPECT_FALSE(evaluate(method::get, {{"if-range", "not a date"}}).use_range);
    EXPECT_FALSE(evaluate(method::get, {{"if-range", ""}}).use_range);
}

TEST(evaluate_conditions, if_range_with_if_none_match) {
    const auto hit = evaluate(method::get, {{"if-none-match", "\"1-2-3\""}, {"if-range", "\"1-2-3\""}});
    EXPECT_TRUE(hit.not_modified);
    EXPECT_TRUE(hit.use_range);
    const auto miss = evaluate(method::get, {{"if-none-match", "\"old\""}, {"if-range", "\"old\""}});
    EXPECT_FALSE(miss.not_modified);
    EXPECT_FALSE(miss.use_range);
    const auto changed = evaluate(method::get, {{"if-none-match", "\"old\""}, {"if-range", "\"1-2-3\""}});
    EXPECT_FALSE(changed.not_modified);
    EXPECT_TRUE(changed.use_range);
}

}  // namespace
}  // namespace datapump::http
