#include "datapump/http/proto/request_parser.hpp"

#include <algorithm>
#include <cstdio>
#include <gtest/gtest.h>
#include <string>
#include <string_view>
#include <vector>

namespace datapump::http {
namespace {

std::span<const char> bytes_of(std::string_view s) {
    return {s.data(), s.size()};
}

parse_outcome feed_all(request_parser& parser, std::string_view text) {
    return parser.feed(bytes_of(text));
}

// Feeds one byte at a time; stops at the first outcome other than need_more. Returns it with
// `consumed` counted over the whole text.
parse_outcome feed_bytewise(request_parser& parser, std::string_view text) {
    parse_outcome last;
    std::size_t used = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        last = parser.feed(bytes_of(text.substr(i, 1)));
        used += last.consumed;
        if (last.status != parse_status::need_more) {
            break;
        }
        EXPECT_EQ(last.consumed, 1u);
    }
    last.consumed = used;
    return last;
}

// Parses `text` whole and byte by byte, expects the same error both ways, and returns it.
parse_outcome expect_error_both_ways(std::string_view text, int status, parser_limits limits = {}) {
    request_parser whole(limits);
    const parse_outcome a = feed_all(whole, text);
    EXPECT_EQ(a.status, parse_status::error) << text.substr(0, 200);
    EXPECT_EQ(a.http_status, status) << a.reason;
    request_parser split(limits);
    const parse_outcome b = feed_bytewise(split, text);
    EXPECT_EQ(b.status, parse_status::error);
    EXPECT_EQ(b.http_status, status) << b.reason;
    EXPECT_EQ(a.reason, b.reason);
    return a;
}

// Parses `text` whole and byte by byte, expects one complete request using all of it.
request expect_complete_both_ways(std::string_view text, parser_limits limits = {}) {
    request_parser split(limits);
    const parse_outcome b = feed_bytewise(split, text);
    EXPECT_EQ(b.status, parse_status::complete) << b.http_status << " " << b.reason;
    EXPECT_EQ(b.consumed, text.size());
    request_parser whole(limits);
    const parse_outcome a = feed_all(whole, text);
    EXPECT_EQ(a.status, parse_status::complete) << a.http_status << " " << a.reason;
    EXPECT_EQ(a.consumed, text.size());
    if (a.status != parse_status::complete || b.status != parse_status::complete) {
        return {};
    }
    request from_split = split.take();
    request from_whole = whole.take();
    EXPECT_EQ(from_split.target, from_whole.target);
    EXPECT_EQ(from_split.headers, from_whole.headers);
    EXPECT_EQ(from_split.body, from_whole.body);
    return from_whole;
}

TEST(request_parser, simple_get) {
    const std::string text =
        "GET /videos/a.mp4?rate=5M&x=1 HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "User-Agent:   curl/8.0  \r\n"
        "X-Empty:\r\n"
        "\r\n";
    const request req = expect_complete_both_ways(text);
    EXPECT_EQ(req.verb, method::get);
    EXPECT_EQ(req.method_name, "GET");
    EXPECT_EQ(req.target, "/videos/a.mp4?rate=5M&x=1");
    EXPECT_EQ(req.path, "/videos/a.mp4");
    EXPECT_EQ(req.query, "rate=5M&x=1");
    EXPECT_EQ(req.version_major, 1u);
    EXPECT_EQ(req.version_minor, 1u);
    EXPECT_TRUE(req.keep_alive);
    ASSERT_EQ(req.headers.size(), 3u);
    EXPECT_EQ(req.headers[0], (std::pair<std::string, std::string>{"host", "example.com"}));
    EXPECT_EQ(req.headers[1], (std::pair<std::string, std::string>{"user-agent", "curl/8.0"}));
    EXPECT_EQ(req.headers[2], (std::pair<std::string, std::string>{"x-empty", ""}));
    ASSERT_NE(req.header("user-agent"), nullptr);
    EXPECT_EQ(*req.header("user-agent"), "curl/8.0");
    EXPECT_EQ(req.header("User-Agent"), nullptr);  // lookups are by lowercase name
    EXPECT_EQ(req.header("accept"), nullptr);
    EXPECT_TRUE(req.body.empty());
}

TEST(request_parser, header_names_are_case_folded_and_values_trimmed) {
    const request req =
        expect_complete_both_ways("GET / HTTP/1.1\r\nHost: h\r\nCoNtEnT-TyPe:\t text/plain \t\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    ASSERT_EQ(req.headers.size(), 4u);
    EXPECT_EQ(req.headers[1].first, "content-type");
    EXPECT_EQ(req.headers[1].second, "text/plain");
    ASSERT_NE(req.header("x-a"), nullptr);
    EXPECT_EQ(*req.header("x-a"), "1");  // first of repeated fields
    EXPECT_EQ(req.headers[3].second, "2");
}

TEST(request_parser, methods) {
    const std::pair<std::string_view, method> cases[] = {
        {"GET", method::get},        {"HEAD", method::head},      {"POST", method::post},
        {"PUT", method::put},        {"DELETE", method::delete_}, {"OPTIONS", method::options},
        {"PROPFIND", method::other}, {"PATCH", method::other},
    };
    for (const auto& [name, verb] : cases) {
        const std::string text = std::string(name) + " /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
        const request req = expect_complete_both_ways(text);
        EXPECT_EQ(req.verb, verb) << name;
        EXPECT_EQ(req.method_name, name);
        EXPECT_EQ(req.path, "/x");
    }
}

TEST(request_parser, unknown_method_is_400) {
    const parse_outcome out = expect_error_both_ways("FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_EQ(out.reason, "invalid HTTP method");
}

TEST(request_parser, content_length_body) {
    const request req = expect_complete_both_ways("POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT_EQ(req.verb, method::post);
    EXPECT_EQ(req.body, "hello");
}

TEST(request_parser, chunked_body_is_decoded_and_trailers_dropped) {
    const request req = expect_complete_both_ways(
        "POST /api HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    EXPECT_EQ(req.body, "hello world");
    ASSERT_EQ(req.headers.size(), 2u);
    EXPECT_EQ(req.headers[1].first, "transfer-encoding");
    EXPECT_EQ(req.header("x-trailer"), nullptr);
}

TEST(request_parser, pipelined_requests_stop_after_each) {
    const std::string first = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string second = "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    const std::string third_part = "GET /thr";
    const std::string buffer = first + second + third_part;

    request_parser parser;
    parse_outcome out = feed_all(parser, buffer);
    EXPECT_EQ(out.status, parse_status::complete);
    EXPECT_EQ(out.consumed, first.size());
    // Until take(), further feeds consume nothing.
    out = parser.feed(bytes_of(std::string_view(buffer).substr(first.size())));
    EXPECT_EQ(out.status, parse_status::complete);
    EXPECT_EQ(out.consumed, 0u);
    EXPECT_EQ(parser.take().path, "/one");
    EXPECT_FALSE(parser.started());

    out = parser.feed(bytes_of(std::string_view(buffer).substr(first.size())));
    EXPECT_EQ(out.status, parse_status::complete);
    EXPECT_EQ(out.consumed, second.size());
    const request two = parser.take();
    EXPECT_EQ(two.path, "/two");
    EXPECT_EQ(two.body, "abc");

    out = parser.feed(bytes_of(std::string_view(buffer).substr(first.size() + second.size())));
    EXPECT_EQ(out.status, parse_status::need_more);
    EXPECT_EQ(out.consumed, third_part.size());
    EXPECT_TRUE(parser.started());
    out = feed_all(parser, "ee HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(out.status, parse_status::complete);
    EXPECT_EQ(out.consumed, 24u);
    EXPECT_EQ(parser.take().path, "/three");
}

TEST(request_parser, pipelined_requests_byte_by_byte) {
    const std::string first = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string second = "GET /two HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string buffer = first + second;
    request_parser parser;
    std::vector<std::string> paths;
    for (std::size_t i = 0; i < buffer.size(); ++i) {
        const parse_outcome out = parser.feed(bytes_of(std::string_view(buffer).substr(i, 1)));
        ASSERT_NE(out.status, parse_status::error);
        EXPECT_EQ(out.consumed, 1u);
        if (out.status == parse_status::complete) {
            EXPECT_TRUE(i + 1 == first.size() || i + 1 == buffer.size()) << i;
            paths.push_back(parser.take().path);
        }
    }
    EXPECT_EQ(paths, (std::vector<std::string>{"/one", "/two"}));
}

TEST(request_parser, leading_blank_lines_are_skipped) {
    const request req = expect_complete_both_ways("\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req.path, "/a");
    request_parser parser;
    EXPECT_FALSE(parser.started());
    EXPECT_EQ(feed_all(parser, "\r\n").status, parse_status::need_more);
    EXPECT_TRUE(parser.started());
}

TEST(request_parser, error_is_sticky_until_reset) {
    request_parser parser;
    parse_outcome out = feed_all(parser, "GET / HTTP/2.0\r\n\r\n");
    EXPECT_EQ(out.status, parse_status::error);
    EXPECT_EQ(out.http_status, 505);
    out = feed_all(parser, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(out.status, parse_status::error);
    EXPECT_EQ(out.http_status, 505);
    EXPECT_EQ(out.consumed, 0u);
    parser.reset();
    out = feed_all(parser, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(out.status, parse_status::complete);
    EXPECT_EQ(out.consumed, 27u);
}

TEST(request_parser, take_without_a_complete_request_aborts) {
    EXPECT_DEATH(
        {
            request_parser parser;
            static_cast<void>(feed_all(parser, "GET / HT"));
            static_cast<void>(parser.take());
        },
        "");
}

TEST(request_parser, empty_feed_is_need_more) {
    request_parser parser;
    const parse_outcome out = parser.feed({});
    EXPECT_EQ(out.status, parse_status::need_more);
    EXPECT_EQ(out.consumed, 0u);
}

// --- versions and keep-alive

TEST(request_parser, http10_closes_unless_keep_alive) {
    request req = expect_complete_both_ways("GET / HTTP/1.0\r\n\r\n");
    EXPECT_EQ(req.version_minor, 0u);
    EXPECT_FALSE(req.keep_alive);
    req = expect_complete_both_ways("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_TRUE(req.keep_alive);
    req = expect_complete_both_ways("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    EXPECT_FALSE(req.keep_alive);
}

TEST(request_parser, other_versions_are_505) {
    expect_error_both_ways("GET / HTTP/2.0\r\n\r\n", 505);
    expect_error_both_ways("GET / HTTP/1.2\r\n\r\n", 505);
    expect_error_both_ways("GET / HTTP/0.9\r\n\r\n", 505);
    expect_error_both_ways("GET /\r\n\r\n", 505);  // no version: HTTP/0.9
    // 505 comes as soon as the request line ends, before the headers.
    request_parser parser;
    const parse_outcome out = feed_all(parser, "GET / HTTP/3.0\r\nHost: a");
    EXPECT_EQ(out.status, parse_status::error);
    EXPECT_EQ(out.http_status, 505);
    EXPECT_EQ(out.consumed, 16u);
}

TEST(request_parser, malformed_version_is_400) {
    expect_error_both_ways("GET / HTTP/1.x\r\n\r\n", 400);
    expect_error_both_ways("GET / FTP/1.1\r\n\r\n", 400);
    expect_error_both_ways("GET / HTTP/1.1 \r\n\r\n", 400);
}

// --- targets

TEST(request_parser, absolute_form_target_gives_its_path) {
    request req = expect_complete_both_ways("GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req.target, "http://example.com:8080/a/b?x=1");
    EXPECT_EQ(req.path, "/a/b");
    EXPECT_EQ(req.query, "x=1");
    req = expect_complete_both_ways("GET http://example.com HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req.path, "/");
    EXPECT_EQ(req.query, "");
}

TEST(request_parser, fragment_is_dropped_and_asterisk_kept) {
    request req = expect_complete_both_ways("GET /a%20b?q#frag HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req.path, "/a%20b");  // not decoded
    EXPECT_EQ(req.query, "q");
    req = expect_complete_both_ways("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req.verb, method::options);
    EXPECT_EQ(req.path, "*");
}

TEST(request_parser, connect_authority_form) {
    const request req = expect_complete_both_ways("CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req.verb, method::other);
    EXPECT_EQ(req.method_name, "CONNECT");
    EXPECT_EQ(req.target, "example.com:443");
    EXPECT_EQ(req.path, "");
}

TEST(request_parser, unsplittable_target_is_400) {
    const parse_outcome out = expect_error_both_ways("GET http://[::1/x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    EXPECT_EQ(out.reason, "request target cannot be split into path and query");
}

TEST(request_parser, upgrade_request_is_parsed_as_plain) {
    const std::string text = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    request_parser parser;
    const parse_outcome out = feed_all(parser, text + "GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(out.status, parse_status::complete);
    EXPECT_EQ(out.consumed, text.size());
    EXPECT_EQ(parser.take().path, "/ws");
    EXPECT_EQ(feed_all(parser, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n").status, parse_status::complete);
}

// --- refusals

TEST(request_parser, content_length_with_transfer_encoding_is_400) {
    const auto a = expect_error_both_ways(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400);
    EXPECT_EQ(a.reason, "both Content-Length and Transfer-Encoding (request smuggling)");
    const auto b = expect_error_both_ways(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400);
    EXPECT_EQ(b.reason, "both Content-Length and Transfer-Encoding (request smuggling)");
    const auto c = expect_error_both_ways(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nX: y\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400);
    EXPECT_EQ(c.reason, "both Content-Length and Transfer-Encoding (request smuggling)");
}

TEST(request_parser, repeated_content_length_is_400) {
    const auto a = expect_error_both_ways("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
    EXPECT_EQ(a.reason, "repeated Content-Length header");
    expect_error_both_ways("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd", 400);
    expect_error_both_ways("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", 400);
}

TEST(request_parser, repeated_host_is_400) {
    const auto a = expect_error_both_ways("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nhost: b\r\n\r\n", 400);
    EXPECT_EQ(a.reason, "repeated Host header");
    const auto b = expect_error_both_ways("GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n", 400);
    EXPECT_EQ(b.reason, "repeated Host header");
}

TEST(request_parser, whitespace_before_colon_is_400) {
    const auto a = expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
    EXPECT_EQ(a.reason, "whitespace in a header name (before its colon)");
}

TEST(request_parser, unknown_transfer_encoding_is_400) {
    const auto a = expect_error_both_ways("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400);
    EXPECT_EQ(a.reason, "Transfer-Encoding must end with chunked, once (the body length cannot be known otherwise)");
}

TEST(request_parser, bare_cr_is_400) {
    // http-parser refuses these itself...
    expect_error_both_ways("GET / HTTP/1.1\rX: y\r\n\r\n", 400);
    expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\nX: y\rZ: w\r\n\r\n", 400);
    // ...but its non-strict build takes any byte after the CR of the blank line and of chunk
    // framing; the wrapper does not.
    const auto a = expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\rZ", 400);
    EXPECT_EQ(a.reason, "CR not followed by LF in the request framing");
    EXPECT_EQ(a.consumed, 32u);
    expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\n\rZ", 400);
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const auto b = expect_error_both_ways(head + "3\rXabc\r\n0\r\n\r\n", 400);  // size line
    EXPECT_EQ(b.reason, "CR not followed by LF in the request framing");
    const auto c = expect_error_both_ways(head + "3\r\nabcXY0\r\n\r\n", 400);  // after data
    EXPECT_EQ(c.reason, "CR not followed by LF in the request framing");
    expect_error_both_ways(head + "3\r\nabc\rY0\r\n\r\n", 400);
    expect_error_both_ways(head + "3\r\nabcX\n0\r\n\r\n", 400);
    // http-parser's non-strict build takes "\r" + a token after an empty value as a line break.
    const auto d = expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\nX:\rY: 1\r\n\r\n", 400);
    EXPECT_EQ(d.reason, "CR not followed by LF in the request framing");
    expect_error_both_ways("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_error_both_ways(head + "0\r\n\rZ", 400);  // end of the trailer section
    expect_error_both_ways(head + "0\r\nT: 1\r\n\rZ", 400);
}

// RFC 9112 §2.2 lets a recipient take a bare LF as a line end; a proxy in front that does not
// would frame the request differently (smuggling), so the server refuses it anywhere in a head.
TEST(request_parser, bare_lf_is_400) {
    const auto a = expect_error_both_ways("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);  // request line
    EXPECT_EQ(a.reason, "LF without CR before it: lines of a request head end with CRLF");
    EXPECT_EQ(a.consumed, 14u);  // stopped on the LF
    expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n", 400);  // a header line
    expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);             // the blank line
    expect_error_both_ways("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);        // a leading blank line
    expect_error_both_ways("POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\r\nabc\r\n0\r\n\r\n", 400);
    expect_complete_both_ways("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");  // CRLF everywhere: fine
}

TEST(request_parser, obs_fold_is_400) {
    const auto a = expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  more\r\n\r\n", 400);
    EXPECT_EQ(a.reason, "a header line starts with whitespace (obs-fold is refused)");
    EXPECT_EQ(a.consumed, 33u);  // stopped on the space
    expect_error_both_ways("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tmore\r\n\r\n", 400);
    // A folded framing header: honoured, it would change the body's length.
    expect_error_both_ways("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400);
    expect_error_both_ways("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n 0\r\n\r\n0123456789", 400);
    // Whitespace before the first field (RFC 9112 §2.2).
    expect_error_both_ways("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
}

TEST(request_parser, http11_needs_exactly_one_host) {
    const auto a = expect_error_both_ways("GET / HTTP/1.1\r\nX: 1\r\n\r\n", 400);
    EXPECT_EQ(a.reason, "HTTP/1.1 request without a Host header");
    expect_error_both_ways("GET / HTTP/1.1\r\n\r\n", 400);
    expect_error_both_ways("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    expect_complete_both_ways("GET / HTTP/1.1\r\nHost:\r\n\r\n");  // empty is allowed (RFC 9112 §3.2)
    expect_complete_both_ways("GET / HTTP/1.0\r\n\r\n");           // HTTP/1.0 needs none
}

TEST(request_parser, transfer_encoding_must_be_chunked_once_and_last) {
    const std::string body = "\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ";
    const std::string_view final_reason =
        "Transfer-Encoding must end with chunked, once (the body length cannot be known otherwise)";
    EXPECT_EQ(expect_error_both_ways(head + "chunked, chunked" + body, 400).reason, final_reason);
    EXPECT_EQ(expect_error_both_ways(head + "chunked\r\nTransfer-Encoding: chunked" + body, 400).reason, final_reason);
    expect_error_both_ways(head + "chunked, gzip" + body, 400);  // not last
    expect_error_both_ways(head + "gzip" + body, 400);
    expect_error_both_ways(head + "chunked\r\nTransfer-Encoding: gzip" + body, 400);
    // chunked last, after a coding the server does not decode: 501 (RFC 9112 §6.1).
    const auto gz = expect_error_both_ways(head + "gzip, chunked" + body, 501);
    EXPECT_EQ(gz.reason, "only the chunked transfer coding is accepted for a body");
    expect_error_both_ways(head + "gzip\r\nTransfer-Encoding: chunked" + body, 501);
    EXPECT_EQ(expect_complete_both_ways(head + "ChUnKeD" + body).body, "hello");  // case does not matter
    // HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 §6.1), refused as nginx does.
    const auto old = expect_error_both_ways("POST / HTTP/1.0\r\nTransfer-Encoding: chunked" + body, 400);
    EXPECT_EQ(old.reason, "Transfer-Encoding in an HTTP/1.0 request");
}

TEST(request_parser, invalid_content_length_is_400) {
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\n";
    for (const std::string_view value : {"", "abc", "-1", "+5", "5 5", "1, 1", "0x10", "99999999999999999999999"}) {
        request_parser parser;
        const parse_outcome out = feed_all(parser, head + "Content-Length: " + std::string(value) + "\r\n\r\nhello");
        EXPECT_EQ(out.status, parse_status::error) << value;
        EXPECT_EQ(out.http_status, 400) << value;
    }
    expect_error_both_ways(head + "Content-Length:\r\nX: 1\r\n\r\n", 400);
    expect_error_both_ways(head + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400);
    EXPECT_EQ(expect_complete_both_ways(head + "Content-Length: 005\r\n\r\nhello").body, "hello");
}

TEST(request_parser, control_characters_in_values_are_400) {
    const auto a = expect_error_both_ways(std::string_view("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
                                                           "b\r\n\r\n"),
                                          400);
    EXPECT_EQ(a.reason, "invalid character in header");
}

// --- limits

std::string request_line_of(std::size_t length) {
    // "GET /" + padding + " HTTP/1.1" is exactly `length` bytes.
    const std::string head = "GET /";
    const std::string tail = " HTTP/1.1";
    return head + std::string(length - head.size() - tail.size(), 'a') + tail;
}

TEST(request_parser, request_line_at_limit_is_accepted) {
    const std::string line = request_line_of(8192);
    const request req = expect_complete_both_ways(line + "\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req.target.size(), 8192u - 5u - 9u + 1u);
}

TEST(request_parser, request_line_past_limit_is_414) {
    const auto out = expect_error_both_ways(request_line_of(8193) + "\r\nHost: h\r\n\r\n", 414);
    EXPECT_EQ(out.reason, "request line longer than the limit");
    EXPECT_EQ(out.consumed, 8192u);  // the byte that breaks the limit is not consumed
}

TEST(request_parser, request_line_414_without_waiting_for_its_end) {
    const parser_limits limits{.max_request_line = 32};
    request_parser parser(limits);
    const std::string line = request_line_of(60);  // the first 33 bytes are in the target
    EXPECT_EQ(feed_all(parser, std::string_view(line).substr(0, 32)).status, parse_status::need_more);
    // Byte 33 may still be the CR of CRLF...
    EXPECT_EQ(feed_all(parser, "\r").status, parse_status::need_more);
    // ...but then only LF is acceptable.
    const parse_outcome out = feed_all(parser, "x");
    EXPECT_EQ(out.status, parse_status::error);
    EXPECT_EQ(out.http_status, 400);
    EXPECT_EQ(out.reason, "CR not followed by LF in the request framing");

    request_parser other(limits);
    const parse_outcome early = feed_all(other, std::string_view(line).substr(0, 33));
    EXPECT_EQ(early.status, parse_status::error);
    EXPECT_EQ(early.http_status, 414);
    EXPECT_EQ(early.consumed, 32u);
}

TEST(request_parser, small_request_line_limit_exact) {
    const parser_limits limits{.max_request_line = 32};
    expect_complete_both_ways(request_line_of(32) + "\r\nHost: h\r\n\r\n", limits);
    expect_error_both_ways(request_line_of(32) + "\nHost: h\n\n", 400, limits);  // bare LF
    expect_error_both_ways(request_line_of(33) + "\r\nHost: h\r\n\r\n", 414, limits);
    expect_error_both_ways(request_line_of(33) + "\nHost: h\n\n", 414, limits);  // the limit breaks first
}

// A head of exactly `size` bytes: request line, one padded header, blank line.
std::string head_of(std::size_t size) {
    const std::string start = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    const std::string end = "\r\n\r\n";
    return start + std::string(size - start.size() - end.size(), 'p') + end;
}

TEST(request_parser, head_at_limit_is_accepted) {
    const std::string head = head_of(16384);
    ASSERT_EQ(head.size(), 16384u);
    const request req = expect_complete_both_ways(head);
    EXPECT_EQ(req.header("x-pad")->size(), 16384u - 32u - 4u);
}

TEST(request_parser, head_past_limit_is_431) {
    const auto out = expect_error_both_ways(head_of(16385), 431);
    EXPECT_EQ(out.reason, "request head larger than the limit");
    EXPECT_EQ(out.consumed, 16384u);
}

TEST(request_parser, head_limit_counts_leading_blank_lines) {
    const parser_limits limits{.max_header_bytes = 64};
    const std::string head = head_of(60);
    expect_complete_both_ways("\r\n\r\n" + head, limits);
    expect_error_both_ways("\r\n\r\n\r\n" + head, 431, limits);
}

// `count` header fields: Host and count - 1 others.
std::string request_with_headers(std::size_t count) {
    std::string text = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (std::size_t i = 1; i < count; ++i) {
        text += "X-" + std::to_string(i) + ": v\r\n";
    }
    return text + "\r\n";
}

TEST(request_parser, header_count_at_limit_is_accepted) {
    const request req = expect_complete_both_ways(request_with_headers(100));
    EXPECT_EQ(req.headers.size(), 100u);
    EXPECT_EQ(req.headers.back().first, "x-99");
}

TEST(request_parser, header_count_past_limit_is_431) {
    const auto out = expect_error_both_ways(request_with_headers(101), 431);
    EXPECT_EQ(out.reason, "more header fields than the limit");
}


TEST(request_parser, content_length_at_limit_is_accepted) {
    const std::string body(65536, 'b');
    const request req = expect_complete_both_ways("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n" + body);
    EXPECT_EQ(req.body.size(), 65536u);
}

TEST(request_parser, content_length_past_limit_is_413_before_the_body) {
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65537\r\n\r\n";
    const auto out = expect_error_both_ways(head, 413);
    EXPECT_EQ(out.reason, "request body larger than the limit");
    EXPECT_EQ(out.consumed, head.size() - 1);  // stopped on the head's final LF
}

std::string chunked_request(std::size_t body_size, std::size_t chunk) {
    std::string text = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (std::size_t sent = 0; sent < body_size; sent += chunk) {
        const std::size_t n = std::min(chunk, body_size - sent);
        char size_line[32];
        const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
        text.append(size_line, static_cast<std::size_t>(len));
        text += std::string(n, 'c') + "\r\n";
    }
    return text + "0\r\n\r\n";
}

TEST(request_parser, chunked_body_at_limit_is_accepted) {
    const request req = expect_complete_both_ways(chunked_request(65536, 4096));
    EXPECT_EQ(req.body, std::string(65536, 'c'));
}

TEST(request_parser, chunked_body_past_limit_is_413) {
    const auto out = expect_error_both_ways(chunked_request(65537, 4096), 413);
    EXPECT_EQ(out.reason, "request body larger than the limit");
}

TEST(request_parser, chunked_framing_past_limit_is_413) {
    // 16 bytes of body in 1-byte chunks: 6 wire bytes each ("1\r\nc\r\n") plus "0\r\n\r\n".
    const parser_limits limits{.max_header_bytes = 64, .max_body = 16};
    const std::string small = chunked_request(8, 1);  // body phase: 1 + 8*6 + 5 = 54 <= 16+64+1
    expect_complete_both_ways(small, limits);
    const auto out = expect_error_both_ways(chunked_request(16, 1), 413, limits);  // 1 + 96 + 5 > 81
    EXPECT_EQ(out.reason, "chunked body framing larger than the limit");
}

TEST(request_parser, header_overflow_of_http_parser_is_431) {
    // Limits above http-parser's own 80 KiB: its refusal is reported as 431 too.
    const parser_limits limits{.max_header_bytes = std::size_t{200} * 1024};
    expect_error_both_ways(head_of(std::size_t{100} * 1024), 431, limits);
}

}  // namespace
}  // namespace datapump::http

namespace datapump::http {
namespace {

// PUT bodies left to the caller (the ingest path): the request ends with its head, whatever the
// body's size or coding, byte-wise or at once; other methods keep their bodies.
TEST(request_parser_deferred_put, ends_at_the_head_and_describes_the_body) {
    const std::string head = "PUT /up/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
    const std::string text = head + "BODYBYTES";
    for (const bool bytewise : {false, true}) {
        request_parser p(parser_limits{.max_body = 10, .defer_put_bodies = true});
        const parse_outcome out = bytewise ? feed_bytewise(p, text) : feed_all(p, text);
        ASSERT_EQ(out.status, parse_status::complete) << out.reason;
        EXPECT_EQ(out.consumed, head.size());  // the body's bytes are not the parser's
        const request r = p.take();
        EXPECT_EQ(r.verb, method::put);
        EXPECT_TRUE(r.body_follows);
        EXPECT_FALSE(r.body_chunked);
        EXPECT_EQ(r.body_length, 100000000U);  // max_body does not apply to deferred bodies
        EXPECT_TRUE(r.body.empty());
        EXPECT_TRUE(r.keep_alive);
    }
}

TEST(request_parser_deferred_put, chunked_and_empty_bodies) {
    request_parser p(parser_limits{.defer_put_bodies = true});
    const std::string chunked = "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    const parse_outcome out = feed_all(p, chunked + "5\r\nhello\r\n0\r\n\r\n");
    ASSERT_EQ(out.status, parse_status::complete);
    EXPECT_EQ(out.consumed, chunked.size());
    const request r = p.take();
    EXPECT_TRUE(r.body_follows);
    EXPECT_TRUE(r.body_chunked);

    const std::string empty = "PUT /e HTTP/1.0\r\n\r\n";
    ASSERT_EQ(feed_all(p, empty).status, parse_status::complete);
    const request e = p.take();
    EXPECT_TRUE(e.body_follows);
    EXPECT_EQ(e.body_length, 0U);
    EXPECT_FALSE(e.keep_alive);  // HTTP/1.0 without keep-alive
}

TEST(request_parser_deferred_put, smuggling_is_still_refused_and_other_methods_keep_bodies) {
    request_parser p(parser_limits{.defer_put_bodies = true});
    const parse_outcome bad =
        feed_all(p, "PUT /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(bad.status, parse_status::error);
    EXPECT_EQ(bad.http_status, 400);

    request_parser q(parser_limits{.defer_put_bodies = true});
    ASSERT_EQ(feed_all(q, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").status, parse_status::complete);
    const request r = q.take();
    EXPECT_FALSE(r.body_follows);
    EXPECT_EQ(r.body, "abc");

    request_parser coded(parser_limits{.defer_put_bodies = true});
    const parse_outcome gz =
        feed_all(coded, "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    EXPECT_EQ(gz.status, parse_status::error);
    EXPECT_EQ(gz.http_status, 501);

    request_parser off;  // without the option a PUT's body is parsed (and limited) as before
    const parse_outcome big = feed_all(off, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
    EXPECT_EQ(big.http_status, 413);
}

}  // namespace
}  // namespace datapump::http
