#include "datapump/http/proto/range.hpp"

#include <gtest/gtest.h>
#include <string>

namespace datapump::http {
namespace {

void expect_partial(std::string_view header, std::uint64_t size, std::uint64_t first, std::uint64_t last) {
    const range_result r = evaluate_range(header, size);
    EXPECT_EQ(r.kind, range_kind::partial) << header;
    EXPECT_EQ(r.first, first) << header;
    EXPECT_EQ(r.last, last) << header;
}

void expect_kind(std::string_view header, std::uint64_t size, range_kind kind) {
    EXPECT_EQ(evaluate_range(header, size).kind, kind) << '"' << header << "\" size " << size;
}

// RFC 9110 §14.1.2 examples, for a representation of 10000 bytes.
TEST(range, rfc9110_examples) {
    expect_partial("bytes=0-499", 10000, 0, 499);
    expect_partial("bytes=500-999", 10000, 500, 999);
    expect_partial("bytes=-500", 10000, 9500, 9999);
    expect_partial("bytes=9500-", 10000, 9500, 9999);
    expect_partial("bytes=0-0", 10000, 0, 0);
    expect_partial("bytes=-1", 10000, 9999, 9999);
    // Several ranges are served whole.
    expect_kind("bytes=0-0,-1", 10000, range_kind::full);
    expect_kind("bytes=500-600,601-999", 10000, range_kind::full);
    expect_kind("bytes=500-700,601-999", 10000, range_kind::full);
}

TEST(range, no_header_is_none) {
    EXPECT_EQ(evaluate_range(static_cast<const std::string*>(nullptr), 100).kind, range_kind::none);
    const std::string value = "bytes=1-2";
    const range_result r = evaluate_range(&value, 100);
    EXPECT_EQ(r.kind, range_kind::partial);
    EXPECT_EQ(r.first, 1u);
    EXPECT_EQ(r.last, 2u);
}

TEST(range, last_is_clamped) {
    expect_partial("bytes=0-99999", 10000, 0, 9999);
    expect_partial("bytes=9999-10000", 10000, 9999, 9999);
    expect_partial("bytes=0-9999999999999999999", 10, 0, 9);
}

TEST(range, suffix) {
    expect_partial("bytes=-10000", 10000, 0, 9999);
    expect_partial("bytes=-20000", 10000, 0, 9999);  // longer than the file: all of it
    expect_partial("bytes=-9999", 10000, 1, 9999);
    expect_kind("bytes=-0", 10000, range_kind::unsatisfiable);
    expect_kind("bytes=-00", 10000, range_kind::unsatisfiable);
}

TEST(range, first_past_end_is_unsatisfiable) {
    expect_kind("bytes=10000-", 10000, range_kind::unsatisfiable);
    expect_kind("bytes=10000-10001", 10000, range_kind::unsatisfiable);
    expect_kind("bytes=9999999999999999999-", 10000, range_kind::unsatisfiable);
    expect_partial("bytes=9999-", 10000, 9999, 9999);
}

TEST(range, empty_file_is_always_unsatisfiable) {
    expect_kind("bytes=0-", 0, range_kind::unsatisfiable);
    expect_kind("bytes=0-0", 0, range_kind::unsatisfiable);
    expect_kind("bytes=-5", 0, range_kind::unsatisfiable);
    expect_kind("bytes=-0", 0, range_kind::unsatisfiable);
    // Malformed is still ignored rather than refused.
    expect_kind("bytes=x", 0, range_kind::full);
}

TEST(range, first_after_last_is_ignored) {
    expect_kind("bytes=500-499", 10000, range_kind::full);
    expect_kind("bytes=20000-10", 10000, range_kind::full);
}

TEST(range, whitespace) {
    expect_partial("  bytes=0-1\t ", 100, 0, 1);
    expect_partial("bytes= 0-1", 100, 0, 1);
    expect_partial("bytes=0-1 ,", 100, 0, 1);  // empty list elements are skipped
    expect_partial("bytes=, ,0-1", 100, 0, 1);
    expect_kind("bytes=0 -1", 100, range_kind::full);  // no whitespace inside a range-spec
    expect_kind("bytes=0- 1", 100, range_kind::full);
    expect_kind("bytes =0-1", 100, range_kind::full);
}

TEST(range, unit_and_syntax) {
    expect_partial("BYTES=0-1", 100, 0, 1);
    expect_partial("Bytes=0-1", 100, 0, 1);
    expect_kind("items=0-1", 100, range_kind::full);
    expect_kind("bytesx=0-1", 100, range_kind::full);
    expect_kind("bytes 0-1", 100, range_kind::full);
    expect_kind("", 100, range_kind::full);
    expect_kind("bytes=", 100, range_kind::full);
    expect_kind("bytes=,", 100, range_kind::full);
    expect_kind("bytes=-", 100, range_kind::full);
    expect_kind("bytes=1", 100, range_kind::full);
    expect_kind("bytes=a-1", 100, range_kind::full);
    expect_kind("bytes=1-b", 100, range_kind::full);
    expect_kind("bytes=+1-2", 100, range_kind::full);
    expect_kind("bytes=1-2-3", 100, range_kind::full);
    expect_kind("bytes=--1", 100, range_kind::full);
}

TEST(range, digits_beyond_nineteen_are_malformed) {
    expect_kind("bytes=0-18446744073709551615", 100, range_kind::full);  // 20 digits
    expect_kind("bytes=18446744073709551616-", 100, range_kind::full);
    expect_kind("bytes=-99999999999999999999", 100, range_kind::full);
    expect_kind("bytes=00000000000000000001-2", 100, range_kind::full);  // 20 digits, even if small
    expect_partial("bytes=0000000000000000001-2", 100, 1, 2);            // 19 digits
}

TEST(range, content_range_text) {
    EXPECT_EQ(content_range(0, 499, 10000), "bytes 0-499/10000");
    EXPECT_EQ(content_range(18446744073709551614u, 18446744073709551614u, 18446744073709551615u),
              "bytes 18446744073709551614-18446744073709551614/18446744073709551615");
    EXPECT_EQ(content_range_unsatisfied(10000), "bytes */10000");
    EXPECT_EQ(content_range_unsatisfied(0), "bytes */0");
}

}  // namespace
}  // namespace datapump::http
