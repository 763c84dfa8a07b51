// File: datapump/http/proto/request_parser.hpp
//
// Incremental HTTP/1.1 request parser: http-parser (Joyent/Node, 2.9) does the grammar; this
// wrapper adds the server's limits and refusals and stops after each complete request so that
// pipelined requests stay in the caller's buffer.
//
//   receive buffer:  | request 1 ........ | request 2 ....... | partial 3 ...
//                    feed() -> complete, consumed = len(1)     (parser stops here)
//                    take() -> request 1, parser reset
//                    feed(rest) -> complete, consumed = len(2) ... feed() -> need_more
//
// The caller drops `consumed` bytes from the front of its buffer after every feed(). On need_more
// every byte given was consumed (they are kept in the parser's request); feed only new bytes next.
//
// Limits (parser_limits), each checked at an exact byte position, so that the outcome does not
// depend on how the bytes were split across feed() calls:
//   request line (method SP target SP version, without CRLF) > max_request_line   -> 414
//   head (from the first byte of the request line through the blank line,
//         CRLFs included) > max_header_bytes, or more than max_headers fields      -> 431
//   body > max_body (Content-Length or decoded chunks), or a chunked body whose
//         wire form (chunk sizes, extensions, trailers) passes max_body +
//         max_header_bytes                                                         -> 413
//   version other than HTTP/1.0 and HTTP/1.1 (a request line without one is 0.9)   -> 505
//   Content-Length together with Transfer-Encoding (smuggling), a repeated
//         Content-Length or Host, a Content-Length that is not one decimal number,
//         HTTP/1.1 without Host, whitespace before a header's colon, a target
//         http-parser cannot split, anything http-parser rejects                   -> 400
//   Transfer-Encoding (all its fields, in order) other than exactly one `chunked`
//         last; Transfer-Encoding in HTTP/1.0                                      -> 400
//   another coding before that one `chunked` ("gzip, chunked": not decoded)        -> 501
//   a CR not followed by LF, or an LF not preceded by CR, anywhere in the head
//         (the blank lines before the request line included) or a CR in the chunk
//         framing; a header line that starts with SP or HTAB (obs-fold, or
//         whitespace before the first field). http-parser as Debian builds it
//         (without HTTP_PARSER_STRICT) lets these pass; the byte scans before it
//         refuse them at the byte that breaks the rule (RFC 9112 §2.2, §5.2)       -> 400
// The server closes the connection after every refusal.
// A method http-parser does not know is a 400; one it knows but the server does not serve
// parses fine (method::other), and the server answers 405. Trailer fields of a chunked body are
// parsed and dropped. A request with `Upgrade` is parsed as a plain request (the server does not
// switch protocols).
//
// Thread-safety: none; one parser belongs to one connection. Movable (nothing points at it
// between calls), not copyable.
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/http/proto/request.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

DATAPUMP_API_BEGIN

// http-parser's state (C, <http_parser.h>): named here, defined only in request_parser.cpp, so
// that this header needs nothing but the standard library.
struct http_parser;

namespace datapump::http {

struct parser_limits {
    std::size_t max_request_line = 8192;
    std::size_t max_header_bytes = 16384;
    std::size_t max_headers = 100;
    std::size_t max_body = 65536;
    // PUT requests end at their head (request::body_follows): the caller reads the body itself
    // (the ingest path) and max_body does not apply to them. Their Transfer-Encoding is checked
    // as every request's is (see above).
    bool defer_put_bodies = false;
};

enum class parse_status : std::uint8_t {
    need_more,  // every byte was consumed and the request is not complete yet
    complete,   // one request is complete: take() it; bytes past `consumed` belong to the next one
    error,      // the request is refused: answer `http_status` and close the connection
};

struct parse_outcome {
    parse_status status = parse_status::need_more;
    std::size_t consumed = 0;  // bytes of the span given to feed() that the parser used
    int http_status = 0;       // error only: 400, 413, 414, 431, 501 (a coding before chunked) or 505
    std::string_view reason;   // error only: static text (never freed), e.g. for the log or body
};

class request_parser {
public:
    explicit request_parser(parser_limits limits = {});

    request_parser(request_parser&&) noexcept = default;
    request_parser& operator=(request_parser&&) noexcept = default;
    request_parser(const request_parser&) = delete;
    request_parser& operator=(const request_parser&) = delete;
    ~request_parser() = default;

    // Parses as much of `bytes` as belongs to the current request. Returns need_more (all
    // consumed), complete (consumed = bytes up to the end of the request) or error (status and
    // reason set; the parser stays failed until reset()). Once complete, further calls consume
    // nothing and return complete again until take(); once failed, they return the same error.
    [[nodiscard]] parse_outcome feed(std::span<const char> bytes);

    // Moves out the complete request and readies the parser for the next one on the same
    // connection. Calling it when the last feed() did not return complete is a bug (aborts).
    [[nodiscard]] request take();

    // Forgets everything, including a failure: the next byte starts a new request.
    void reset();

    // True once any byte of a request (even a leading blank line) has been fed and the request
    // was not yet taken: the server uses it to tell a header timeout (408) from an idle
    // keep-alive connection.
    [[nodiscard]] bool started() const { return phase_ != phase::line || head_bytes_ > 0; }

    [[nodiscard]] const parser_limits& limits() const { return limits_; }

private:
    enum class phase : std::uint8_t { line, head, body, complete, failed };

    // http-parser callbacks; `parser->data` is set to `this` before every execute.
    static int on_url(http_parser* p, const char* at, std::size_t n);
    static int on_header_field(http_parser* p, const char* at, std::size_t n);
    static int on_header_value(http_parser* p, const char* at, std::size_t n);
    static int on_headers_complete(http_parser* p);
    static int on_body(http_parser* p, const char* at, std::size_t n);
    static int on_message_complete(http_parser* p);
    static int on_chunk_header(http_parser* p);
    static int on_chunk_complete(http_parser* p);

    // What a chunk callback paused on, for feed() to check the CRLF that http-parser (built
    // without HTTP_PARSER_STRICT, as Debian ships it) does not.
    enum class chunk_event : std::uint8_t {
        none,
        size_line,  // consumed through the LF of a chunk-size line
        data_end,   // consumed through the CRLF after chunk data
        last,       // stopped on the LF ending the trailer section (not consumed)
    };

    // Where a scan of head bytes stopped, and why.
    struct head_scan {
        enum class stop : std::uint8_t {
            none,              // all bytes may go to http-parser
            line_end,          // they end with the request line's LF
            line_too_long,     // the next byte would break max_request_line
            too_many_headers,  // the next byte would start one header field too many
            bare_cr,           // the next byte follows a CR and is not LF
            bare_lf,           // the next byte is an LF without a CR before it
            obs_fold,          // the next byte is whitespace starting a header line
        };
        std::size_t length = 0;  // bytes that may go to http-parser
        stop why = stop::none;
    };

    // Runs http-parser over `bytes` (not empty); returns the count it consumed.
    std::size_t execute(std::span<const char> bytes);
    // Scan the bytes before http-parser sees them, counting across calls, so that each limit and
    // each bare CR is refused at one byte position however the input is split. The request line:
    // its length. Header lines: their number (bytes, not callbacks, for the same reason), up to
    // the blank line that ends the head.
    head_scan scan_request_line(std::span<const char> bytes);
    head_scan scan_header_lines(std::span<const char> bytes);
    // Checks the last header field started, once its name and value are both known. Returns 0,
    // or -1 after fail_with() when it must be refused.
    int finish_header();
    // Checks the CRLF around the chunk event execute() stopped on (`n` bytes of `segment` used).
    [[nodiscard]] bool chunk_framing_ok(std::span<const char> segment, std::size_t n) const;
    int fail_with(int status, std::string_view reason);
    parse_outcome failure(std::size_t consumed);
    parse_outcome parser_failure(std::size_t consumed);

    // http-parser's state lives in parser_ (bytes big enough for it; request_parser.cpp checks
    // size and alignment against the real struct, which is trivially copyable) and is reached
    // through native().
    struct alignas(8) parser_storage {
        std::byte bytes[32]{};
    };
    [[nodiscard]] http_parser* native();

    parser_limits limits_;
    parser_storage parser_{};
    phase phase_ = phase::line;
    request current_;

    std::size_t head_bytes_ = 0;       // bytes of this request fed while in the line and head phases
    std::size_t line_bytes_ = 0;       // request-line bytes before its LF (a CR included)
    bool line_started_ = false;        // a byte other than CR/LF was seen (http-parser skips those)
    bool after_cr_ = false;            // the last head byte scanned was a CR
    std::size_t body_wire_bytes_ = 0;  // bytes fed since the head's final LF was reached
    chunk_event chunk_event_ = chunk_event::none;
    char previous_byte_ = 0;        // the last byte consumed in the body phase
    std::size_t header_lines_ = 0;  // header lines started (by scan_header_lines)
    bool at_line_start_ = true;     // the last byte scanned in the head was its line's LF
    bool head_end_seen_ = false;    // the scan met the blank line: what follows is not head
    std::size_t header_count_ = 0;  // header fields started (by the callbacks)
    bool in_field_ = false;         // the last header callback was a field-name piece
    bool headers_done_ = false;     // on_headers_complete ran (later fields are trailers)
    bool message_done_ = false;     // on_message_complete ran
    bool seen_host_ = false;
    bool seen_content_length_ = false;
    bool seen_transfer_encoding_ = false;

    int error_status_ = 0;
    std::string_view error_reason_;
};

}  // namespace datapump::http
DATAPUMP_API_END
