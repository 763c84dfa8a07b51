// libFuzzer target: request_parser on arbitrary bytes.
//
// Each input is parsed as a stream of pipelined requests three ways — whole, in pseudo-random
// pieces, and byte by byte — under the default limits and under small ones (so that every limit
// is reached often). The three must agree exactly: the same requests at the same offsets and the
// same final outcome. Every outcome is checked against the parser's promises (consumed counts,
// limits, lowercase names, trimmed values), and every complete request is run through the other
// protocol pieces the server applies to it (path decoding, ranges, conditions, query, head).
#include "datapump/http/proto/log_escape.hpp"
#include "datapump/http/proto/mime.hpp"
#include "datapump/http/proto/path.hpp"
#include "datapump/http/proto/query.hpp"
#include "datapump/http/proto/range.hpp"
#include "datapump/http/proto/request_parser.hpp"
#include "datapump/http/proto/response_head.hpp"
#include "datapump/http/proto/validators.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace datapump::http;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_request_parser: broken promise: %s\n", what);
        std::abort();
    }
}

struct parsed {
    std::size_t end = 0;  // offset in the input just past this request
    request req;
};

struct stream_result {
    std::vector<parsed> requests;
    parse_status final_status = parse_status::need_more;
    int http_status = 0;
    std::string_view reason;
};

void check_outcome(const parse_outcome& out, std::size_t given) {
    check(out.consumed <= given, "consumed <= bytes given");
    switch (out.status) {
        case parse_status::need_more:
            check(out.consumed == given, "need_more consumes everything");
            break;
        case parse_status::complete:
            check(out.http_status == 0, "no status on complete");
            break;
        case parse_status::error:
            check(out.http_status == 400 || out.http_status == 413 || out.http_status == 414 ||
                      out.http_status == 431 || out.http_status == 501 || out.http_status == 505,
                  "error status is one of 400 413 414 431 501 505");
            check(!out.reason.empty(), "error has a reason");
            break;
    }
}

void check_request(const request& req, const parser_limits& limits) {
    check(req.body.size() <= limits.max_body, "body within max_body");
    check(req.target.size() <= limits.max_request_line, "target within the request line");
    check(req.headers.size() <= limits.max_headers, "header count within max_headers");
    check(req.version_major == 1 && req.version_minor <= 1, "version 1.0 or 1.1");
    check(!req.method_name.empty(), "method name set");
    check(req.method_name == "CONNECT" || !req.path.empty(), "path set");
    for (const auto& [name, value] : req.headers) {
        check(!name.empty(), "header name not empty");
        for (const char c : name) {
            check(!(c >= 'A' && c <= 'Z') && c != ' ' && c != '\t', "header name lowercase token");
        }
        check(value.empty() ||
                  (value.front() != ' ' && value.front() != '\t' && value.back() != ' ' && value.back() != '\t'),
              "header value trimmed");
        check(value.find('\n') == std::string::npos, "no LF inside a header value");
    }
    const std::string* cl = req.header("content-length");
    const std::string* te = req.header("transfer-encoding");
    check(cl == nullptr || te == nullptr, "never both Content-Length and Transfer-Encoding");
    std::size_t hosts = 0;
    for (const auto& field : req.headers) {
        hosts += field.first == "host" ? 1 : 0;
    }
    check(hosts <= 1 && (req.version_minor == 0 || hosts == 1), "exactly one Host in HTTP/1.1, at most one in 1.0");
    check(te == nullptr || req.version_minor == 1, "no Transfer-Encoding in HTTP/1.0");
    // What the access log writes of the request: no raw control byte, quote or backslash.
    for (const char c : log_escape(req.target)) {
        const auto b = static_cast<unsigned char>(c);
        check(b >= 0x20 && b != 0x7F && c != '"', "log_escape leaves no control byte or quote");
    }
}

// Parses `input` fed in pieces whose sizes come from `piece` (0 means: all that is left).
template <class PieceSize>
stream_result parse_stream(std::string_view input, const parser_limits& limits, PieceSize piece) {
    stream_result result;
    request_parser parser(limits);
    std::size_t offset = 0;
    std::size_t pending = 0;  // bytes of the current piece not yet consumed
    while (offset < input.size()) {
        if (pending == 0) {
            const std::size_t want = piece(input.size() - offset);
            pending = want == 0 ? input.size() - offset : std::min(want, input.size() - offset);
        }
        const auto bytes = input.substr(offset, pending);
        const parse_outcome out = parser.feed({bytes.data(), bytes.size()});
        check_outcome(out, bytes.size());
        offset += out.consumed;
        pending -= out.consumed;
        if (out.status == parse_status::complete) {
            check(parser.feed({}).status == parse_status::complete, "complete is sticky until take");
            request req = parser.take();
            check(!parser.started(), "take resets");
            check_request(req, limits);
            result.requests.push_back({offset, std::move(req)});
        } else if (out.status == parse_status::error) {
            const parse_outcome again = parser.feed({bytes.data(), bytes.size()});
            check(again.status == parse_status::error && again.consumed == 0 && again.http_status == out.http_status,
                  "error is sticky");
            result.final_status = parse_status::error;
            result.http_status = out.http_status;
            result.reason = out.reason;
            return result;
        }
    }
    return result;
}

bool same_request(const request& a, const request& b) {
    return a.verb == b.verb && a.method_name == b.method_name && a.target == b.target && a.path == b.path &&
           a.query == b.query && a.version_major == b.version_major && a.version_minor == b.version_minor &&
           a.keep_alive == b.keep_alive && a.headers == b.headers && a.body == b.body;
}

void check_same(const stream_result& a, const stream_result& b, const char* what) {
    check(a.requests.size() == b.requests.size(), what);
    for (std::size_t i = 0; i < a.requests.size(); ++i) {
        check(a.requests[i].end == b.requests[i].end, what);
        check(same_request(a.requests[i].req, b.requests[i].req), what);
    }
    check(a.final_status == b.final_status, what);
    check(a.http_status == b.http_status, what);
}

// What the server does with a request, minus the I/O.
void exercise(const request& req) {
    const auto path = decode_path(req.path);
    if (path) {
        check(!path->starts_with('/'), "decoded path is relative");
        check(path->find("//") == std::string::npos, "no empty segments");
        check(*path != ".." && !path->starts_with("../") && path->find("/../") == std::string::npos &&
                  !path->ends_with("/.."),
              "no .. segment");
        check(path->find('\0') == std::string::npos && path->find('\\') == std::string::npos, "no NUL or backslash");
        const auto again = decode_path("/" + url_encode_path(*path));
        check(again && *again == *path, "url_encode_path round-trips");
        static_cast<void>(content_type_for(*path));
        check(html_escape(*path).find_first_of("<>\"'") == std::string::npos, "html_escape escapes");
    }
    if (const auto rate = query_param(req.query, "rate")) {
        static_cast<void>(parse_rate(*rate));
    }
    if (const std::string* rate = req.header("x-datapump-rate")) {
        static_cast<void>(parse_rate(*rate));
    }
    for (const std::uint64_t size : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{10000}}) {
        const range_result r = evaluate_range(req.header("range"), size);
        if (r.kind == range_kind::partial) {
            check(r.first <= r.last && r.last < size, "partial range inside the file");
            static_cast<void>(content_range(r.first, r.last, size));
        }
        check((r.kind == range_kind::none) == (req.header("range") == nullptr), "none iff no Range");
    }
    const std::string etag = make_etag(1, 2, 3);
    const conditional_result c = evaluate_conditions(req, etag, 784111777);
    check(!c.not_modified || req.verb == method::get || req.verb == method::head, "304 only for GET/HEAD");
    response_head head(200);
    for (const auto& [name, value] : req.headers) {
        head.add("X-Echo", value);
    }
    const std::string text = std::move(head).finish();
    check(text.find("\r\n\r\n") == text.size() - 4, "head ends once");
}

void run(std::string_view input, const parser_limits& limits, std::uint32_t seed) {
    const stream_result whole = parse_stream(input, limits, [](std::size_t) { return std::size_t{0}; });
    std::uint32_t state = seed | 1U;
    const stream_result pieces = parse_stream(input, limits, [&state](std::size_t) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        return std::size_t{1} + state % 61;
    });
    check_same(whole, pieces, "whole and pieces agree");
    if (input.size() <= 4096) {
        const stream_result bytes = parse_stream(input, limits, [](std::size_t) { return std::size_t{1}; });
        check_same(whole, bytes, "whole and byte by byte agree");
    }
    for (const parsed& p : whole.requests) {
        exercise(p.req);
    }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the entry point libFuzzer calls, by its name.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::uint32_t seed = 2166136261U;
    for (const char c : input.substr(0, 64)) {
        seed = (seed ^ static_cast<std::uint8_t>(c)) * 16777619U;
    }
    run(input, parser_limits{}, seed);
    run(input, parser_limits{.max_request_line = 24, .max_header_bytes = 96, .max_headers = 3, .max_body = 16}, seed);
    return 0;
}
