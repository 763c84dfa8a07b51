#include "datapump/http/proto/request_parser.hpp"

#include "text.hpp"
#include "datapump/base/check.hpp"

#include <http_parser.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

namespace datapump::http {

namespace {

constexpr std::string_view reason_coding = "only the chunked transfer coding is accepted for a body";
constexpr std::string_view reason_line_too_long = "request line longer than the limit";
constexpr std::string_view reason_head_too_large = "request head larger than the limit";
constexpr std::string_view reason_too_many_headers = "more header fields than the limit";
constexpr std::string_view reason_body_too_large = "request body larger than the limit";
constexpr std::string_view reason_framing_too_large = "chunked body framing larger than the limit";
constexpr std::string_view reason_version = "HTTP version not supported (only 1.0 and 1.1)";
constexpr std::string_view reason_smuggling = "both Content-Length and Transfer-Encoding (request smuggling)";
constexpr std::string_view reason_repeated_length = "repeated Content-Length header";
constexpr std::string_view reason_repeated_host = "repeated Host header";
constexpr std::string_view reason_name_space = "whitespace in a header name (before its colon)";
constexpr std::string_view reason_bad_target = "request target cannot be split into path and query";
constexpr std::string_view reason_bare_cr = "CR not followed by LF in the request framing";
constexpr std::string_view reason_bare_lf = "LF without CR before it: lines of a request head end with CRLF";
constexpr std::string_view reason_obs_fold = "a header line starts with whitespace (obs-fold is refused)";
constexpr std::string_view reason_no_host = "HTTP/1.1 request without a Host header";
constexpr std::string_view reason_bad_length = "Content-Length is not a single decimal number";
constexpr std::string_view reason_chunked_final =
    "Transfer-Encoding must end with chunked, once (the body length cannot be known otherwise)";
constexpr std::string_view reason_te_http10 = "Transfer-Encoding in an HTTP/1.0 request";
constexpr std::string_view reason_stopped = "request parser stopped unexpectedly";

std::size_t saturating_add(std::size_t a, std::size_t b) {
    return a > std::numeric_limits<std::size_t>::max() - b ? std::numeric_limits<std::size_t>::max() : a + b;
}

using text::ascii_lower;
using text::iequals;
using text::is_ows;

void trim_ows(std::string& s) {
    std::size_t end = s.size();
    while (end > 0 && is_ows(s[end - 1])) {
        --end;
    }
    std::size_t begin = 0;
    while (begin < end && is_ows(s[begin])) {
        ++begin;
    }
    s.erase(end);
    s.erase(0, begin);
}

method to_method(unsigned value) {
    switch (static_cast<http_method>(value)) {
        case HTTP_GET:
            return method::get;
        case HTTP_HEAD:
            return method::head;
        case HTTP_POST:
            return method::post;
        case HTTP_PUT:
            return method::put;
        case HTTP_DELETE:
            return method::delete_;
        case HTTP_OPTIONS:
            return method::options;
        default:
            return method::other;
    }
}

// Splits the target into its raw path and query; false when http-parser's URL parser refuses it.
bool split_target(request& req, bool is_connect) {
    if (req.target.size() > std::numeric_limits<std::uint16_t>::max()) {
        return false;  // http_parser_url holds 16-bit offsets
    }
    http_parser_url url{};
    http_parser_url_init(&url);
    if (http_parser_parse_url(req.target.data(), req.target.size(), is_connect ? 1 : 0, &url) != 0) {
        return false;
    }
    const auto field = [&](http_parser_url_fields f) -> std::string_view {
        if ((url.field_set & (1u << static_cast<unsigned>(f))) == 0) {
            return {};
        }
        return std::string_view(req.target).substr(url.field_data[f].off, url.field_data[f].len);
    };
    const std::string_view path = field(UF_PATH);
    req.path = path.empty() && !is_connect ? std::string("/") : std::string(path);
    req.query = std::string(field(UF_QUERY));
    return true;
}

// RFC 9112 §6.1 and §6.3 on the Transfer-Encoding fields of a request, all of them in order:
// 0 when the codings are exactly "chunked"; 400 when chunked is missing, repeated or not the
// last coding (the body's length cannot be known: a smuggling vector); 501 when another coding
// comes before it (the server decodes none). Empty list elements are skipped (RFC 9110 §5.6.1).
int transfer_coding_status(const request& req) {
    std::size_t codings = 0;
    std::size_t chunked = 0;
    bool last_is_chunked = false;
    for (const auto& [name, value] : req.headers) {
        if (name != "transfer-encoding") {
            continue;
        }
        std::string_view rest = value;
        while (true) {
            const std::size_t comma = rest.find(',');
            const std::string_view element = text::trim_ows(rest.substr(0, comma));
            if (!element.empty()) {
                ++codings;
                last_is_chunked = iequals(element, "chunked");  // chunked takes no parameters
                chunked += last_is_chunked ? 1 : 0;
            }
            if (comma == std::string_view::npos) {
                break;
            }
            rest.remove_prefix(comma + 1);
        }
    }
    if (chunked != 1 || !last_is_chunked) {
        return 400;
    }
    return codings == 1 ? 0 : 501;
}

}  // namespace

http_parser* request_parser::native() {
    // The header keeps http-parser's state as bytes (so that it does not include <http_parser.h>).
    static_assert(sizeof(http_parser) <= sizeof(parser_storage));
    static_assert(alignof(http_parser) <= alignof(parser_storage));
    static_assert(std::is_trivially_copyable_v<http_parser>);
    // An array of std::byte implicitly creates the trivially copyable http_parser inside it.
    return std::launder(reinterpret_cast<http_parser*>(parser_.bytes));
}

request_parser::request_parser(parser_limits limits) : limits_(limits) {
    reset();
}

void request_parser::reset() {
    http_parser_init(native(), HTTP_REQUEST);
    phase_ = phase::line;
    current_ = request{};
    head_bytes_ = 0;
    line_bytes_ = 0;
    line_started_ = false;
    after_cr_ = false;
    body_wire_bytes_ = 0;
    chunk_event_ = chunk_event::none;
    previous_byte_ = 0;
    header_lines_ = 0;
    at_line_start_ = true;
    head_end_seen_ = false;
    header_count_ = 0;
    in_field_ = false;
    headers_done_ = false;
    message_done_ = false;
    seen_host_ = false;
    seen_content_length_ = false;
    seen_transfer_encoding_ = false;
    error_status_ = 0;
    error_reason_ = {};
}

request request_parser::take() {
    DP_CHECK(phase_ == phase::complete);
    request out = std::move(current_);
    reset();
    return out;
}

parse_outcome request_parser::feed(std::span<const char> bytes) {
    if (phase_ == phase::complete) {
        return {parse_status::complete, 0, 0, {}};
    }
    if (phase_ == phase::failed) {
        return failure(0);
    }
    std::size_t used = 0;
    while (used < bytes.size()) {
        const auto rest = bytes.subspan(used);
        if (phase_ == phase::body) {
            // The +1 is the head's final LF, which http-parser consumes in this phase.
            const std::size_t budget = saturating_add(saturating_add(limits_.max_body, limits_.max_header_bytes), 1);
            if (body_wire_bytes_ >= budget) {
                fail_with(413, reason_framing_too_large);
                return failure(used);
            }
            const auto segment = rest.first(std::min(rest.size(), budget - body_wire_bytes_));
            const std::size_t n = execute(segment);
            if (chunk_event_ != chunk_event::none) {
                if (!chunk_framing_ok(segment, n)) {
                    fail_with(400, reason_bare_cr);
                    return failure(used + n);
                }
                chunk_event_ = chunk_event::none;
                http_parser_pause(native(), 0);
            }
            if (n > 0) {
                previous_byte_ = segment[n - 1];
            }
            body_wire_bytes_ += n;
            used += n;
            if (message_done_) {
                phase_ = phase::complete;
                return {parse_status::complete, used, 0, {}};
            }
            if (static_cast<http_errno>(native()->http_errno) != HPE_OK) {
                return parser_failure(used);
            }
            continue;
        }

        // Line and head phases: never let http-parser see the byte that breaks a limit.
        if (head_bytes_ >= limits_.max_header_bytes) {
            fail_with(431, reason_head_too_large);
            return failure(used);
        }
        const std::size_t length = std::min(rest.size(), limits_.max_header_bytes - head_bytes_);
        const bool in_line = phase_ == phase::line;
        const head_scan scan = in_line ? scan_request_line(rest.first(length)) : scan_header_lines(rest.first(length));
        std::size_t n = 0;
        if (scan.length > 0) {
            const auto segment = rest.first(scan.length);
            n = execute(segment);
            const auto err = static_cast<http_errno>(native()->http_errno);
            if (err == HPE_PAUSED && headers_done_) {
                // Paused on the head's final LF, which is not consumed yet: it is the head's last
                // byte and the first one the body phase feeds. http-parser takes any byte there.
                if (segment[n] != '\n') {
                    fail_with(400, reason_bare_cr);
                    return failure(used + n);
                }
                head_bytes_ += n + 1;
                if (current_.body_follows) {
                    // The body is the caller's to read: the request ends with its head.
                    current_.keep_alive = http_should_keep_alive(native()) != 0;
                    phase_ = phase::complete;
                    return {parse_status::complete, used + n + 1, 0, {}};
                }
                used += n;
                http_parser_pause(native(), 0);
                phase_ = phase::body;
                continue;
            }
            if (err != HPE_OK || n != scan.length) {
                return parser_failure(used + n);
            }
        }
        head_bytes_ += n;
        used += n;
        switch (scan.why) {
            case head_scan::stop::none:
                break;
            case head_scan::stop::line_end:
                if (native()->http_major != 1 || native()->http_minor > 1) {
                    fail_with(505, reason_version);
                    return failure(used);
                }
                phase_ = phase::head;
                break;
            case head_scan::stop::line_too_long:
                fail_with(414, reason_line_too_long);
                return failure(used);
            case head_scan::stop::too_many_headers:
                fail_with(431, reason_too_many_headers);
                return failure(used);
            case head_scan::stop::bare_cr:
                fail_with(400, reason_bare_cr);
                return failure(used);
            case head_scan::stop::bare_lf:
                fail_with(400, reason_bare_lf);
                return failure(used);
            case head_scan::stop::obs_fold:
                fail_with(400, reason_obs_fold);
                return failure(used);
        }
    }
    return {parse_status::need_more, used, 0, {}};
}

request_parser::head_scan request_parser::scan_request_line(std::span<const char> bytes) {
    using stop = head_scan::stop;
    const std::size_t max = limits_.max_request_line;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        const char c = bytes[i];
        if (after_cr_ && c != '\n') {
            return {i, stop::bare_cr};
        }
        if (c == '\n' && !after_cr_) {
            return {i, stop::bare_lf};  // also in the blank lines before the request line
        }
        after_cr_ = c == '\r';
        if (!line_started_) {
            if (c == '\r' || c == '\n') {
                continue;  // http-parser skips blank lines before a request
            }
            line_started_ = true;
        }
        if (c == '\n') {
            return {i + 1, stop::line_end};
        }
        ++line_bytes_;
        // One byte past the limit is allowed only when it is the CR of the closing CRLF.
        if (line_bytes_ > max && (line_bytes_ - max > 1 || c != '\r')) {
            return {i, stop::line_too_long};
        }
    }
    return {bytes.size(), stop::none};
}

request_parser::head_scan request_parser::scan_header_lines(std::span<const char> bytes) {
    using stop = head_scan::stop;
    for (std::size_t i = 0; i < bytes.size() && !head_end_seen_; ++i) {
        const char c = bytes[i];
        if (after_cr_ && c != '\n') {
            return {i, stop::bare_cr};
        }
        if (c == '\n' && !after_cr_) {
            return {i, stop::bare_lf};
        }
        after_cr_ = c == '\r';
        if (at_line_start_) {
            if (c == '\r') {
                head_end_seen_ = true;  // the blank line; the bytes after it are not head
                break;
            }
            // A line led by whitespace: a folded continuation of the field before (obs-fold), or
            // whitespace before the first field. RFC 9112 §5.2 and §2.2 let a server refuse both;
            // a proxy in front that unfolds (or drops) such lines would see other fields than we do.
            if (c == ' ' || c == '\t') {
                return {i, stop::obs_fold};
            }
            if (++header_lines_ > limits_.max_headers) {
                return {i, stop::too_many_headers};
            }
        }
        at_line_start_ = c == '\n';
    }
    return {bytes.size(), stop::none};
}

bool request_parser::chunk_framing_ok(std::span<const char> segment, std::size_t n) const {
    switch (chunk_event_) {
        case chunk_event::size_line:
            return n >= 1 && segment[n - 1] == '\n';
        case chunk_event::data_end: {
            const char before_lf = n >= 2 ? segment[n - 2] : previous_byte_;
            return n >= 1 && segment[n - 1] == '\n' && before_lf == '\r';
        }
        case chunk_event::last:
            return n < segment.size() && segment[n] == '\n';
        case chunk_event::none:
            break;
    }
    return true;
}

std::size_t request_parser::execute(std::span<const char> bytes) {
    static const http_parser_settings settings = [] {
        http_parser_settings s{};
        http_parser_settings_init(&s);
        s.on_url = &request_parser::on_url;
        s.on_header_field = &request_parser::on_header_field;
        s.on_header_value = &request_parser::on_header_value;
        s.on_headers_complete = &request_parser::on_headers_complete;
        s.on_body = &request_parser::on_body;
        s.on_message_complete = &request_parser::on_message_complete;
        s.on_chunk_header = &request_parser::on_chunk_header;
        s.on_chunk_complete = &request_parser::on_chunk_complete;
        return s;
    }();
    native()->data = this;
    return http_parser_execute(native(), &settings, bytes.data(), bytes.size());
}

int request_parser::on_url(http_parser* p, const char* at, std::size_t n) {
    auto* self = static_cast<request_parser*>(p->data);
    self->current_.target.append(at, n);
    return 0;
}

int request_parser::on_header_field(http_parser* p, const char* at, std::size_t n) {
    auto* self = static_cast<request_parser*>(p->data);
    if (self->headers_done_) {
        return 0;  // a trailer field: dropped (its bytes count against the body's wire budget)
    }
    auto& headers = self->current_.headers;
    if (!self->in_field_) {
        if (n == 0) {
            return 0;
        }
        if (self->header_count_ > 0 && self->finish_header() != 0) {
            return -1;
        }
        if (++self->header_count_ > self->limits_.max_headers) {
            return self->fail_with(431, reason_too_many_headers);
        }
        headers.emplace_back();
        self->in_field_ = true;
    }
    std::string& name = headers.back().first;
    for (std::size_t i = 0; i < n; ++i) {
        name.push_back(ascii_lower(at[i]));
    }
    return 0;
}

int request_parser::on_header_value(http_parser* p, const char* at, std::size_t n) {
    auto* self = static_cast<request_parser*>(p->data);
    if (self->headers_done_ || self->current_.headers.empty()) {
        return 0;
    }
    self->in_field_ = false;
    self->current_.headers.back().second.append(at, n);
    return 0;
}

int request_parser::finish_header() {
    auto& [name, value] = current_.headers.back();
    trim_ows(value);
    if (name.find_first_of(" \t") != std::string::npos) {
        return fail_with(400, reason_name_space);
    }
    if (name == "host") {
        if (seen_host_) {
            return fail_with(400, reason_repeated_host);
        }
        seen_host_ = true;
    } else if (name == "content-length") {
        if (seen_content_length_) {
            return fail_with(400, reason_repeated_length);
        }
        seen_content_length_ = true;
        // http-parser refuses these itself (an empty value, a list, a sign); this keeps the rule
        // true whatever build of it is linked.
        if (value.empty() || !std::all_of(value.begin(), value.end(), text::is_digit)) {
            return fail_with(400, reason_bad_length);
        }
    } else if (name == "transfer-encoding") {
        seen_transfer_encoding_ = true;
    }
    if (seen_content_length_ && seen_transfer_encoding_) {
        return fail_with(400, reason_smuggling);
    }
    return 0;
}

int request_parser::on_headers_complete(http_parser* p) {
    auto* self = static_cast<request_parser*>(p->data);
    if (self->header_count_ > 0 && self->finish_header() != 0) {
        return -1;
    }
    self->in_field_ = false;
    self->headers_done_ = true;
    if (p->http_major == 1 && p->http_minor == 1 && !self->seen_host_) {
        return self->fail_with(400, reason_no_host);  // RFC 9112 §3.2
    }
    if (self->seen_transfer_encoding_) {
        if (p->http_minor == 0) {
            // RFC 9112 §6.1: an HTTP/1.0 message's framing is faulty with it; refused as nginx does.
            return self->fail_with(400, reason_te_http10);
        }
        switch (transfer_coding_status(self->current_)) {
            case 0: break;
            // A body still encoded (gzip, ...) would be taken or stored encoded: refused.
            case 501: return self->fail_with(501, reason_coding);
            default: return self->fail_with(400, reason_chunked_final);
        }
    }
    const bool deferred = self->limits_.defer_put_bodies && p->method == HTTP_PUT;
    if (deferred) {
        request& put = self->current_;
        put.body_follows = true;
        put.body_chunked = (p->flags & static_cast<unsigned>(F_CHUNKED)) != 0;
        put.body_length = (p->flags & static_cast<unsigned>(F_CONTENTLENGTH)) != 0 ? p->content_length : 0;
    } else if ((p->flags & static_cast<unsigned>(F_CONTENTLENGTH)) != 0 && p->content_length > self->limits_.max_body) {
        return self->fail_with(413, reason_body_too_large);
    }
    request& req = self->current_;
    const auto verb = static_cast<http_method>(p->method);
    if (!split_target(req, verb == HTTP_CONNECT)) {
        return self->fail_with(400, reason_bad_target);
    }
    req.verb = to_method(p->method);
    req.method_name = http_method_str(verb);
    req.version_major = p->http_major;
    req.version_minor = p->http_minor;
    // Stop on the head's final LF so that feed() knows exactly where the head ended.
    http_parser_pause(p, 1);
    return 0;
}

int request_parser::on_body(http_parser* p, const char* at, std::size_t n) {
    auto* self = static_cast<request_parser*>(p->data);
    std::string& body = self->current_.body;
    if (n > self->limits_.max_body - body.size()) {
        return self->fail_with(413, reason_body_too_large);
    }
    body.append(at, n);
    return 0;
}

int request_parser::on_message_complete(http_parser* p) {
    auto* self = static_cast<request_parser*>(p->data);
    self->current_.keep_alive = http_should_keep_alive(p) != 0;
    self->message_done_ = true;
    // Stop after one request: what follows in the buffer is the next pipelined one.
    http_parser_pause(p, 1);
    return 0;
}

int request_parser::on_chunk_header(http_parser* p) {
    auto* self = static_cast<request_parser*>(p->data);
    self->chunk_event_ = chunk_event::size_line;
    http_parser_pause(p, 1);
    return 0;
}

int request_parser::on_chunk_complete(http_parser* p) {
    auto* self = static_cast<request_parser*>(p->data);
    const bool last = (p->flags & static_cast<unsigned>(F_TRAILING)) != 0;
    self->chunk_event_ = last ? chunk_event::last : chunk_event::data_end;
    http_parser_pause(p, 1);
    return 0;
}

int request_parser::fail_with(int status, std::string_view reason) {
    phase_ = phase::failed;
    error_status_ = status;
    error_reason_ = reason;
    return -1;
}

parse_outcome request_parser::failure(std::size_t consumed) {
    return {parse_status::error, consumed, error_status_, error_reason_};
}

parse_outcome request_parser::parser_failure(std::size_t consumed) {
    const auto err = static_cast<http_errno>(native()->http_errno);
    if (phase_ == phase::failed) {
        return failure(consumed);  // a callback refused the request and said why
    }
    switch (err) {
        case HPE_OK:
        case HPE_PAUSED:
            fail_with(400, reason_stopped);
            break;
        case HPE_HEADER_OVERFLOW:
            fail_with(431, reason_head_too_large);
            break;
        case HPE_INVALID_TRANSFER_ENCODING:
            fail_with(400, reason_chunked_final);  // a coding list that does not end with chunked
            break;
        case HPE_UNEXPECTED_CONTENT_LENGTH: {
            // http-parser refuses a second Content-Length, and Content-Length with chunked, before
            // our check of the field it is reading has run.
            const bool pending_te = !current_.headers.empty() && current_.headers.back().first == "transfer-encoding";
            fail_with(400, seen_transfer_encoding_ || pending_te ? reason_smuggling : reason_repeated_length);
            break;
        }
        default:
            fail_with(400, http_errno_description(err));
            break;
    }
    return failure(consumed);
}

}  // namespace datapump::http
