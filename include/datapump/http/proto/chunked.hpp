// File: datapump/http/proto/chunked.hpp
//
// Incremental decoder of the HTTP/1.1 chunked transfer coding (RFC 9112 §7.1) for a request body
// whose data bytes never pass through it: the caller receives chunk data straight into its own
// storage buffers and only hands the framing (chunk-size lines, the CRLF after each chunk's data,
// the trailer section) to the decoder, which says how many data bytes come next.
//
//   wire:   | 5;ext=1 CRLF | hello | CRLF 3 CRLF | abc | CRLF 0 CRLF | X-Sum: 1 CRLF | CRLF | next ...
//             feed() ------>  data                                 (stops before the data)
//                            took_data(5) (as many calls as the caller likes)
//                                      feed() -->  data
//                                                    took_data(3)
//                                                          feed() ------------------------> done
//
//   framing --feed()--> data --took_data() until data_left() == 0--> framing --feed()--> ... done
//      \--feed()--> failed                                                       \--> failed
//
// The caller keeps its own position in the stream: after feed() it moves past the bytes consumed;
// in state data it receives data_left() bytes (or fewer, in as many pieces as it likes) elsewhere
// and reports each piece with took_data(). The decoder never consumes a byte past the end of the
// body: in state done the bytes after the final CRLF (a pipelined request) are the caller's.
//
// Grammar, strict like request_parser:
//   chunk-size line = 1*16HEXDIG [ *(SP / HTAB) ";" extension ] CRLF
//     The digits (leading zeros included) are at most 16, so the size always fits 64 bits. The
//     extension is not interpreted: any visible bytes, SP, HTAB and obs-text up to the CR.
//   after each chunk's data: exactly CRLF.
//   last-chunk (size 0), then trailer field lines `token ":" *(any byte but CTLs, HTAB allowed)`
//     CRLF, each dropped, until an empty line (CRLF) ends the body.
// Refusals, each decided at one byte (the one that breaks the rule, which is not consumed), so the
// outcome and the position of a failure do not depend on how the bytes were split across calls:
//   a size line longer than max_line (bytes before its CR), a missing or 17th hex digit, a byte
//     the grammar does not allow, whitespace after the size not followed by ';', a bare LF, a CR
//     not followed by LF, anything but CRLF after a chunk's data, a trailer line without a
//     non-empty token before its ':'                                                        -> 400
//   a chunk whose size takes the body past max_body (decided at the LF of its size line, before
//     any of its data)                                                                       -> 413
//   trailer field lines (CRLFs included; the empty line that ends the body is not part of the
//     trailer section, RFC 9112 §7.1.2) longer than max_trailer_bytes in total               -> 413
//   framing out of proportion to the data: more framing bytes (size lines, the CRLFs after data,
//     trailers) than max_framing_base + max_framing_per_data_byte x the data bytes received so
//     far — a client that sends long extensions or empty-ish chunks forever, making the server
//     parse without storing anything (1-byte chunks, 5 framing bytes each, pass)             -> 400
//
// Thread-safety: none; one decoder belongs to one connection's request. Copyable and movable
// (plain values, nothing points at it between calls).
#pragma once

#include "datapump/base/export.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

struct chunked_limits {
    std::uint64_t max_body = 0;             // decoded data bytes allowed in total (0: only an empty body)
    std::size_t max_line = 4096;            // a chunk-size line incl. extensions, without CRLF
    std::size_t max_trailer_bytes = 16384;  // the trailer field lines incl. their CRLFs (see above)
    std::uint64_t max_framing_base = 65536;   // framing bytes allowed before any data (see above)
    std::uint64_t max_framing_per_data_byte = 8;  // more framing bytes allowed per data byte received
};

class chunked_decoder {
public:
    enum class state : std::uint8_t {
        framing,  // feed() the next bytes
        data,     // data_left() bytes of chunk data come next: receive them and call took_data()
        done,     // the body ended with the final CRLF; the bytes after it are not the body's
        failed,   // refused: answer http_status() and close the connection
    };

    explicit chunked_decoder(chunked_limits limits);

    // Consumes framing bytes from the front of `bytes`: stops where chunk data begins (state data,
    // the size line's LF consumed), at the end of the body (state done: the final CRLF consumed,
    // nothing after it), on failure (state failed: the failing byte and what follows are not
    // consumed), or when `bytes` is used up (still framing). Returns the number consumed. In state
    // done or failed it consumes nothing and changes nothing. Calling it in state data is a bug
    // (aborts): the bytes there are chunk data, not framing.
    [[nodiscard]] std::size_t feed(std::span<const char> bytes);

    [[nodiscard]] state current() const { return state_; }

    // In state data: bytes of the current chunk not yet received (at least 1). 0 in other states.
    [[nodiscard]] std::uint64_t data_left() const { return data_left_; }

    // The caller received n data bytes (0 < n <= data_left(), in state data; anything else is a
    // bug and aborts). At zero left the decoder expects the CRLF that ends the chunk (state framing).
    void took_data(std::uint64_t n);

    // Data bytes received so far (the sum of took_data()); never more than max_body.
    [[nodiscard]] std::uint64_t body_bytes() const { return body_bytes_; }

    // In state failed: 400 (malformed) or 413 (max_body passed, or trailers over
    // max_trailer_bytes), and a static reason text (never freed). 0 and empty in other states.
    [[nodiscard]] int http_status() const { return status_; }
    [[nodiscard]] std::string_view reason() const { return reason_; }

    [[nodiscard]] const chunked_limits& limits() const { return limits_; }

private:
    // Where in the framing the next byte belongs.
    enum class phase : std::uint8_t {
        size,           // chunk-size digits (at least one must come)
        size_ows,       // SP/HTAB after the digits: a ';' must follow
        extension,      // after a ';', up to the CR
        size_lf,        // after the size line's CR
        data_cr,        // after a chunk's data
        data_lf,        // after the CR that follows a chunk's data
        trailer_start,  // at the start of a trailer field line or of the final CRLF
        trailer_name,   // in a trailer field name
        trailer_value,  // after the ':' of a trailer field line, up to the CR
        trailer_lf,     // after the CR of a trailer field line
        final_lf,       // after the CR of the final CRLF
    };

    // What one framing byte did.
    enum class step : std::uint8_t {
        next,  // consumed; the framing goes on
        stop,  // consumed; feed() returns (data begins, or the body is done)
        fail,  // not consumed; the decoder failed
    };

    step take_byte(char c);
    step size_line_byte(char c);
    step end_of_size_line();
    step trailer_byte(char c);
    step fail_with(int status, std::string_view reason);

    chunked_limits limits_;
    state state_ = state::framing;
    phase phase_ = phase::size;
    std::uint64_t size_ = 0;        // the chunk size read so far on this size line
    std::size_t digits_ = 0;        // hex digits on this size line
    std::size_t line_bytes_ = 0;    // bytes of this size line before its CR
    std::uint64_t data_left_ = 0;   // state data: bytes of the current chunk not yet received
    std::uint64_t body_bytes_ = 0;  // data bytes received
    std::size_t trailer_bytes_ = 0;  // bytes of trailer field lines, CRLFs included
    std::uint64_t framing_bytes_ = 0;  // every framing byte consumed
    int status_ = 0;
    std::string_view reason_;
};

}  // namespace datapump::http
DATAPUMP_API_END
