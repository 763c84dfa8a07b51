#include "datapump/http/proto/chunked.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <gtest/gtest.h>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace datapump::http {
namespace {

using state = chunked_decoder::state;

constexpr std::uint64_t unlimited = std::numeric_limits<std::uint64_t>::max();

chunked_limits with_body(std::uint64_t max_body) {
    return chunked_limits{.max_body = max_body};
}

std::span<const char> bytes_of(std::string_view s) {
    return {s.data(), s.size()};
}

// What a caller saw after driving a decoder over a whole wire stream.
struct run_result {
    state end = state::framing;
    std::size_t position = 0;  // wire bytes used: framing consumed plus data received
    std::uint64_t body_bytes = 0;
    int status = 0;
    std::string_view reason;
    std::string data;  // the data bytes the caller received, in order
};

// Plays the caller: framing goes to feed() in pieces of `framing_piece()` bytes, data bytes are
// skipped in pieces of `data_piece()` bytes and reported with took_data(). Stops when the decoder
// is done or failed, or the wire runs out.
template <class FramingPiece, class DataPiece>
run_result drive(std::string_view wire, chunked_limits limits, FramingPiece framing_piece, DataPiece data_piece) {
    chunked_decoder decoder(limits);
    run_result r;
    while (r.position < wire.size()) {
        if (decoder.current() == state::data) {
            const std::uint64_t left = decoder.data_left();
            EXPECT_GT(left, 0u);
            const std::uint64_t n = std::min<std::uint64_t>({left, wire.size() - r.position, data_piece()});
            r.data.append(wire.substr(r.position, n));
            decoder.took_data(n);
            EXPECT_EQ(decoder.data_left(), left - n);
            r.position += n;
            continue;
        }
        if (decoder.current() != state::framing) {
            break;
        }
        const std::size_t given = std::min(wire.size() - r.position, framing_piece());
        const std::size_t used = decoder.feed(bytes_of(wire.substr(r.position, given)));
        EXPECT_LE(used, given);
        if (used < given) {
            EXPECT_NE(decoder.current(), state::framing) << "stopped early while still framing";
        }
        r.position += used;
    }
    r.end = decoder.current();
    r.body_bytes = decoder.body_bytes();
    r.status = decoder.http_status();
    r.reason = decoder.reason();
    EXPECT_EQ(r.body_bytes, r.data.size());
    EXPECT_EQ(r.status != 0, r.end == state::failed);
    EXPECT_EQ(r.reason.empty(), r.end != state::failed);
    return r;
}

run_result drive_whole(std::string_view wire, chunked_limits limits) {
    const auto all = [] { return std::numeric_limits<std::size_t>::max(); };
    return drive(wire, limits, all, all);
}

run_result drive_bytewise(std::string_view wire, chunked_limits limits) {
    const auto one = [] { return std::size_t{1}; };
    return drive(wire, limits, one, one);
}

run_result drive_random(std::string_view wire, chunked_limits limits, std::uint32_t seed) {
    std::mt19937 rng(seed);
    const auto piece = [&rng] { return std::size_t{1} + rng() % 7; };
    return drive(wire, limits, piece, piece);
}

void expect_same(const run_result& a, const run_result& b, std::string_view how) {
    EXPECT_EQ(a.end, b.end) << how;
    EXPECT_EQ(a.position, b.position) << how;
    EXPECT_EQ(a.body_bytes, b.body_bytes) << how;
    EXPECT_EQ(a.status, b.status) << how;
    EXPECT_EQ(a.reason, b.reason) << how;
    EXPECT_EQ(a.data, b.data) << how;
}

// Drives `wire` whole, byte by byte and in a few random splits; expects them all to agree and
// returns the outcome.
run_result drive_every_way(std::string_view wire, chunked_limits limits) {
    const run_result whole = drive_whole(wire, limits);
    expect_same(whole, drive_bytewise(wire, limits), "byte by byte");
    for (std::uint32_t seed = 1; seed <= 8; ++seed) {
        expect_same(whole, drive_random(wire, limits, seed), "random pieces");
    }
    return whole;
}

void expect_done(std::string_view wire, chunked_limits limits, std::string_view data) {
    SCOPED_TRACE(std::string(wire.substr(0, 120)));
    const run_result r = drive_every_way(wire, limits);
    EXPECT_EQ(r.end, state::done) << r.reason;
    EXPECT_EQ(r.position, wire.size());
    EXPECT_EQ(r.data, data);
}

// Expects a failure with `status` at `position` (the failing byte, not consumed).
void expect_failure(std::string_view wire, chunked_limits limits, int status, std::size_t position) {
    SCOPED_TRACE(std::string(wire.substr(0, 120)));
    const run_result r = drive_every_way(wire, limits);
    EXPECT_EQ(r.end, state::failed);
    EXPECT_EQ(r.status, status) << r.reason;
    EXPECT_EQ(r.position, position) << r.reason;
}

std::string chunk(std::string_view data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return std::string(size) + std::string(data) + "\r\n";
}

TEST(chunked_decoder, starts_framing_with_nothing_decoded) {
    const chunked_decoder decoder(with_body(10));
    EXPECT_EQ(decoder.current(), state::framing);
    EXPECT_EQ(decoder.data_left(), 0u);
    EXPECT_EQ(decoder.body_bytes(), 0u);
    EXPECT_EQ(decoder.http_status(), 0);
    EXPECT_TRUE(decoder.reason().empty());
}

TEST(chunked_decoder, single_chunk_step_by_step) {
    chunked_decoder decoder(with_body(100));
    EXPECT_EQ(decoder.feed(bytes_of("5\r\nhello")), 3u);  // stops where the data begins
    ASSERT_EQ(decoder.current(), state::data);
    EXPECT_EQ(decoder.data_left(), 5u);
    EXPECT_EQ(decoder.body_bytes(), 0u);
    decoder.took_data(2);
    EXPECT_EQ(decoder.current(), state::data);
    EXPECT_EQ(decoder.data_left(), 3u);
    EXPECT_EQ(decoder.body_bytes(), 2u);
    decoder.took_data(3);
    EXPECT_EQ(decoder.current(), state::framing);
    EXPECT_EQ(decoder.data_left(), 0u);
    EXPECT_EQ(decoder.body_bytes(), 5u);
    EXPECT_EQ(decoder.feed(bytes_of("\r\n0\r\n")), 5u);
    EXPECT_EQ(decoder.current(), state::framing);
    EXPECT_EQ(decoder.feed(bytes_of("\r\nGET / HTTP/1.1\r\n")), 2u);  // nothing past the final CRLF
    EXPECT_EQ(decoder.current(), state::done);
    EXPECT_EQ(decoder.body_bytes(), 5u);
}

TEST(chunked_decoder, single_chunk) {
    expect_done("5\r\nhello\r\n0\r\n\r\n", with_body(5), "hello");
}

TEST(chunked_decoder, many_chunks) {
    std::string wire;
    std::string data;
    for (std::size_t i = 1; i <= 40; ++i) {
        const std::string piece(i * 7, static_cast<char>('a' + i % 26));
        wire += chunk(piece);
        data += piece;
    }
    wire += "0\r\n\r\n";
    expect_done(wire, with_body(data.size()), data);
}

TEST(chunked_decoder, data_bytes_are_never_framing) {
    // Data that looks like framing (CRLF, "0\r\n\r\n") is skipped, not parsed.
    expect_done("7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n", with_body(7), "0\r\n\r\n\r\n");
}

TEST(chunked_decoder, extensions) {
    expect_done("5;name=value\r\nhello\r\n0\r\n\r\n", with_body(5), "hello");
    expect_done("5;a;b=c;d=\"quoted ;\\\" string\"\r\nhello\r\n0;last\r\n\r\n", with_body(5), "hello");
    expect_done("5 ;a\r\nhello\r\n3\t \t;x=y\r\nabc\r\n0 ; done\r\n\r\n", with_body(8), "helloabc");
    expect_done("3;\xC3\xA9t\xC3\xA9\r\nabc\r\n0\r\n\r\n", with_body(3), "abc");  // obs-text
}

TEST(chunked_decoder, framing_in_proportion_to_the_data_passes) {
    // 1-byte chunks cost 5 framing bytes each: under 8 per data byte, however many there are.
    std::string wire;
    std::string data;
    for (int i = 0; i < 30000; ++i) {
        data += static_cast<char>('a' + i % 26);
        wire += chunk(data.substr(data.size() - 1));
    }
    wire += "0\r\n\r\n";
    const run_result r = drive_whole(wire, with_body(data.size()));
    EXPECT_EQ(r.end, state::done) << r.reason;
    EXPECT_EQ(r.data, data);
}

TEST(chunked_decoder, framing_out_of_proportion_fails_at_the_byte_past_the_allowance) {
    chunked_limits limits = with_body(1000);
    limits.max_framing_base = 100;
    // No data yet: the 101st framing byte fails (inside a long extension).
    const std::string first = "1;" + std::string(200, 'x') + "\r\nA\r\n0\r\n\r\n";
    expect_failure(first, limits, 400, 100);

    // Data raises the allowance: 10 + 8 x 4 = 42 framing bytes after "abcd". 5 are used by
    // "4\r\n" and the CRLF after the data; the second size line may take 37 more (wire bytes
    // 9..45): byte 46 fails.
    limits.max_framing_base = 10;
    const std::string second = "4\r\nabcd\r\n1;" + std::string(100, 'y') + "\r\nB\r\n0\r\n\r\n";
    expect_failure(second, limits, 400, 46);
    limits.max_framing_per_data_byte = 30;  // 130 allowed: the same body passes
    expect_done(second, limits, "abcdB");

    // Trailers count too.
    limits = with_body(0);
    limits.max_framing_base = 20;
    expect_failure("0\r\nX-A: 0123456789abcdef\r\n\r\n", limits, 400, 20);
}

TEST(chunked_decoder, trailers) {
    expect_done("5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n", with_body(5), "hello");
    expect_done("0\r\nA: 1\r\nb-c:\r\nd:\t v\t \r\nE:x\xFF\r\n\r\n", with_body(0), "");
    expect_done("0\r\n!#$%&'*+-.^_`|~09azAZ: v:w\r\n\r\n", with_body(0), "");
}

TEST(chunked_decoder, hex_digits_in_either_case) {
    for (const std::string_view line : {"AbCdEf\r\n", "abcdef\r\n", "ABCDEF\r\n", "00aBcDeF\r\n"}) {
        chunked_decoder decoder(with_body(unlimited));
        EXPECT_EQ(decoder.feed(bytes_of(line)), line.size()) << line;
        ASSERT_EQ(decoder.current(), state::data) << line;
        EXPECT_EQ(decoder.data_left(), 0xabcdefu) << line;
    }
    const std::string data(0x1a, 'z');
    expect_done("1a\r\n" + data + "\r\n0\r\n\r\n", with_body(0x1a), data);
    expect_done("1A\r\n" + data + "\r\n0\r\n\r\n", with_body(0x1a), data);
}

TEST(chunked_decoder, leading_zeros) {
    expect_done("0005\r\nhello\r\n000;x=y\r\n\r\n", with_body(5), "hello");
    expect_done("0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n", with_body(5), "hello");
    // Sixteen digits at most, leading zeros included.
    expect_failure("00000000000000005\r\nhello\r\n0\r\n\r\n", with_body(5), 400, 16);
    expect_failure("00000000000000000\r\n\r\n", with_body(5), 400, 16);
}

TEST(chunked_decoder, largest_size_fits) {
    chunked_decoder decoder(with_body(unlimited));
    EXPECT_EQ(decoder.feed(bytes_of("FFFFFFFFFFFFFFFF\r\n")), 18u);
    ASSERT_EQ(decoder.current(), state::data);
    EXPECT_EQ(decoder.data_left(), unlimited);
    decoder.took_data(unlimited - 1);
    EXPECT_EQ(decoder.data_left(), 1u);
    decoder.took_data(1);
    EXPECT_EQ(decoder.current(), state::framing);
    EXPECT_EQ(decoder.body_bytes(), unlimited);
    // A further chunk of any size is past the limit now.
    EXPECT_EQ(decoder.feed(bytes_of("\r\n1\r\n")), 4u);
    EXPECT_EQ(decoder.current(), state::failed);
    EXPECT_EQ(decoder.http_status(), 413);
}

TEST(chunked_decoder, empty_body) {
    expect_done("0\r\n\r\n", with_body(0), "");
    const run_result r = drive_whole("0\r\n\r\n", chunked_limits{.max_body = 0, .max_line = 1, .max_trailer_bytes = 0});
    EXPECT_EQ(r.end, state::done) << r.reason;
    EXPECT_EQ(r.body_bytes, 0u);
}

struct malformed_case {
    std::string_view wire;
    std::size_t position;  // of the failing byte
};

TEST(chunked_decoder, malformed_size_lines_are_400) {
    const malformed_case cases[] = {
        {"\r\n", 0},                    // no size
        {";a\r\n", 0},                  // extension without a size
        {" 5\r\n", 0},                  // whitespace before the size
        {"x\r\n", 0},                   // not a hex digit
        {"-5\r\n", 0},                  // a sign
        {"+5\r\n", 0},                  // a sign
        {"\n", 0},                      // bare LF
        {"0x5\r\n", 1},                 // a C prefix
        {"5g\r\n", 1},                  // not a hex digit
        {"5\n", 1},                     // bare LF
        {"5\rX", 2},                    // CR not followed by LF
        {"5\r\r\n", 2},                 // CR not followed by LF
        {"5 \r\n", 2},                  // whitespace not followed by ';'
        {"5 x\r\n", 2},                 // whitespace not followed by ';'
        {"5 5\r\n", 2},                 // a digit after whitespace
        {"5;a\x01\r\n", 3},             // a control byte in an extension
        {"5;a\x7F\r\n", 3},             // DEL in an extension
        {"5;a\n", 3},                   // bare LF after an extension
        {"5;a\rb", 4},                  // CR not followed by LF after an extension
        {"12345678901234567\r\n", 16},  // 17 digits
        {"5\r\nhello\r\nz\r\n", 10},    // a later size line
    };
    for (const malformed_case& c : cases) {
        expect_failure(c.wire, with_body(unlimited), 400, c.position);
    }
}

TEST(chunked_decoder, anything_but_crlf_after_data_is_400) {
    const malformed_case cases[] = {
        {"5\r\nhelloX\r\n0\r\n\r\n", 8},    // a sixth data byte
        {"5\r\nhello\n0\r\n\r\n", 8},       // bare LF
        {"5\r\nhello\rX0\r\n\r\n", 9},      // CR without LF
        {"5\r\nhello\r\r\n0\r\n\r\n", 9},   // CR CR LF
        {"5\r\nhello0\r\n\r\n", 8},         // no CRLF at all
        {"5\r\nhello \r\n0\r\n\r\n", 8},    // whitespace
    };
    for (const malformed_case& c : cases) {
        expect_failure(c.wire, with_body(unlimited), 400, c.position);
    }
}

TEST(chunked_decoder, malformed_trailers_are_400) {
    const malformed_case cases[] = {
        {"0\r\n: v\r\n\r\n", 3},         // empty name
        {"0\r\n v: w\r\n\r\n", 3},       // obs-fold / leading whitespace
        {"0\r\nX v\r\n\r\n", 4},         // whitespace in the name
        {"0\r\nX : v\r\n\r\n", 4},       // whitespace before the colon
        {"0\r\nXv\r\n\r\n", 5},          // no colon
        {"0\r\nX(: v\r\n\r\n", 4},       // a separator in the name
        {"0\r\nX: a\x01z\r\n\r\n", 7},   // a control byte in the value
        {"0\r\nX: \x7F\r\n\r\n", 6},     // DEL in the value
        {"0\r\nX: v\n\r\n", 7},          // bare LF ending a field line
        {"0\r\nX: v\rY: w\r\n\r\n", 8},  // CR not followed by LF
        {"0\r\n\n", 3},                  // bare LF as the final line
        {"0\r\n\rX", 4},                 // CR not followed by LF at the end
        {"0\r\nX: v\r\n\n", 9},          // bare LF as the final line, after a field
    };
    for (const malformed_case& c : cases) {
        expect_failure(c.wire, with_body(unlimited), 400, c.position);
    }
    // NUL in the value (a string_view with its length: the literal holds a \0).
    expect_failure(std::string_view("0\r\nX: \0\r\n\r\n", 11), with_body(unlimited), 400, 6);
}

TEST(chunked_decoder, reasons_name_the_fault) {
    const run_result bare_lf = drive_whole("5\n", with_body(10));
    EXPECT_NE(bare_lf.reason.find("LF"), std::string_view::npos) << bare_lf.reason;
    const run_result after_data = drive_whole("1\r\naX", with_body(10));
    EXPECT_NE(after_data.reason.find("chunk data"), std::string_view::npos) << after_data.reason;
    const run_result digits = drive_whole("00000000000000000", with_body(10));
    EXPECT_NE(digits.reason.find("16"), std::string_view::npos) << digits.reason;
    const run_result body = drive_whole("b\r\n", with_body(10));
    EXPECT_NE(body.reason.find("body"), std::string_view::npos) << body.reason;
    const run_result trailer = drive_whole("0\r\nX: y\r\n\r\n", chunked_limits{.max_trailer_bytes = 2});
    EXPECT_NE(trailer.reason.find("trailer"), std::string_view::npos) << trailer.reason;
}

TEST(chunked_decoder, max_body_exactly_reached_is_fine) {
    const std::string data(10, 'd');
    expect_done("a\r\n" + data + "\r\n0\r\n\r\n", with_body(10), data);
    expect_done("4\r\ndddd\r\n6\r\ndddddd\r\n0\r\n\r\n", with_body(10), data);
}

TEST(chunked_decoder, one_byte_over_max_body_is_413_at_the_size_line) {
    // The size line's LF decides; no data of the chunk was taken.
    expect_failure("b\r\n" + std::string(11, 'd') + "\r\n0\r\n\r\n", with_body(10), 413, 2);
    expect_failure("4\r\ndddd\r\n7\r\nddddddd\r\n0\r\n\r\n", with_body(10), 413, 11);
    expect_failure("1\r\nd\r\n0\r\n\r\n", with_body(0), 413, 2);
    const run_result r = drive_whole("4\r\ndddd\r\n7;ext\r\nddddddd\r\n0\r\n\r\n", with_body(10));
    EXPECT_EQ(r.body_bytes, 4u);  // the refused chunk's data was never received
    // A malformed line is 400 even when its size is too large.
    expect_failure("b \r\n", with_body(10), 400, 2);
}

TEST(chunked_decoder, max_line_boundary) {
    const chunked_limits limits{.max_body = unlimited, .max_line = 8};
    expect_done("5;abcdef\r\nhello\r\n0;abcdef\r\n\r\n", limits, "hello");  // 8 bytes each
    expect_failure("5;abcdefg\r\nhello\r\n0\r\n\r\n", limits, 400, 8);
    expect_failure("5\r\nhello\r\n0;abcdefg\r\n\r\n", limits, 400, 18);
    expect_done("00000005\r\nhello\r\n0\r\n\r\n", limits, "hello");
    expect_failure("000000005\r\nhello\r\n0\r\n\r\n", limits, 400, 8);
    // The limit is per line: many lines at the limit are fine.
    std::string wire;
    std::string data;
    for (int i = 0; i < 20; ++i) {
        wire += "1;abcdef\r\nx\r\n";
        data += 'x';
    }
    expect_done(wire + "0\r\n\r\n", limits, data);
    const run_result r = drive_whole("5;abcdefg\r\n", limits);
    EXPECT_NE(r.reason.find("longer than the limit"), std::string_view::npos) << r.reason;
}

TEST(chunked_decoder, trailer_limit_boundary) {
    // "X: y\r\n" is 6 bytes; the empty line that ends the body does not count.
    const std::string_view one = "0\r\nX: y\r\n\r\n";
    expect_done(one, chunked_limits{.max_trailer_bytes = 6}, "");
    expect_failure(one, chunked_limits{.max_trailer_bytes = 5}, 413, 8);
    const std::string_view two = "0\r\nA: 1\r\nB: 2\r\n\r\n";
    expect_done(two, chunked_limits{.max_trailer_bytes = 12}, "");
    expect_failure(two, chunked_limits{.max_trailer_bytes = 11}, 413, 14);
    expect_failure(two, chunked_limits{.max_trailer_bytes = 0}, 413, 3);
    expect_done("0\r\n\r\n", chunked_limits{.max_trailer_bytes = 0}, "");
}

TEST(chunked_decoder, split_independence) {
    const std::string big(300, 'q');
    const std::vector<std::string> wires = {
        "5\r\nhello\r\n0\r\n\r\n",
        "5;a=b\r\nhello\r\n1A \t;x=\"y\"\r\n" + std::string(0x1a, 'w') + "\r\n0\r\nT: v\r\nU:\r\n\r\nGET /",
        "12c\r\n" + big + "\r\n0000\r\n\r\n",
        "5\r\nhelloX",
        "5\r\nhello\r\n0\r\nX: v\rY",
        "5;abcdefghijklmnop\r\nhello\r\n0\r\n\r\n",
        "0\r\nA: 1\r\nB: 22\r\nC: 333\r\n\r\n",
        "7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n",
        "ff\r\n" + std::string(0xff, 'z') + "\r\n100\r\n",
        "00000000000000001\r\n",
        "3\r\nabc\r\n4\r\nab",  // ends in the middle of data
        "3\r\nabc\r\n0\r\nX: ",  // ends in the middle of the trailers
    };
    const chunked_limits limit_sets[] = {
        {.max_body = unlimited},
        {.max_body = 300, .max_line = 10, .max_trailer_bytes = 12},
        {.max_body = 5, .max_line = 3, .max_trailer_bytes = 4},
        {.max_body = 0, .max_line = 0, .max_trailer_bytes = 0},
    };
    std::size_t terminal = 0;
    for (const std::string& wire : wires) {
        for (const chunked_limits& limits : limit_sets) {
            SCOPED_TRACE(wire.substr(0, 60));
            const run_result whole = drive_whole(wire, limits);
            expect_same(whole, drive_bytewise(wire, limits), "byte by byte");
            for (std::uint32_t seed = 1; seed <= 200; ++seed) {
                expect_same(whole, drive_random(wire, limits, seed * 2654435761U), "random pieces");
            }
            terminal += whole.end == state::done || whole.end == state::failed ? 1 : 0;
        }
    }
    // The inputs reach every kind of end, so the comparison is not between idle decoders.
    EXPECT_GT(terminal, wires.size() * 2);
    EXPECT_EQ(drive_whole(wires[1], limit_sets[0]).end, state::done);
    EXPECT_EQ(drive_whole(wires[1], limit_sets[0]).position, wires[1].size() - 5);
    EXPECT_EQ(drive_whole(wires[10], limit_sets[0]).end, state::data);
    EXPECT_EQ(drive_whole(wires[11], limit_sets[0]).end, state::framing);
}

TEST(chunked_decoder, feed_after_done_consumes_nothing) {
    chunked_decoder decoder(with_body(5));
    EXPECT_EQ(decoder.feed(bytes_of("0\r\n\r\n0\r\n\r\n")), 5u);
    ASSERT_EQ(decoder.current(), state::done);
    EXPECT_EQ(decoder.feed(bytes_of("5\r\n")), 0u);
    EXPECT_EQ(decoder.feed(bytes_of("\r\n")), 0u);
    EXPECT_EQ(decoder.feed({}), 0u);
    EXPECT_EQ(decoder.current(), state::done);
    EXPECT_EQ(decoder.body_bytes(), 0u);
    EXPECT_EQ(decoder.http_status(), 0);
}

TEST(chunked_decoder, feed_after_failure_consumes_nothing_and_keeps_the_status) {
    chunked_decoder decoder(with_body(5));
    EXPECT_EQ(decoder.feed(bytes_of("6\r\n")), 2u);
    ASSERT_EQ(decoder.current(), state::failed);
    EXPECT_EQ(decoder.http_status(), 413);
    const std::string_view reason = decoder.reason();
    EXPECT_EQ(decoder.feed(bytes_of("\n0\r\n\r\n")), 0u);
    EXPECT_EQ(decoder.current(), state::failed);
    EXPECT_EQ(decoder.http_status(), 413);
    EXPECT_EQ(decoder.reason(), reason);
    EXPECT_EQ(decoder.data_left(), 0u);
}

TEST(chunked_decoder, empty_feed_changes_nothing) {
    chunked_decoder decoder(with_body(5));
    EXPECT_EQ(decoder.feed({}), 0u);
    EXPECT_EQ(decoder.current(), state::framing);
    EXPECT_EQ(decoder.feed(bytes_of("5")), 1u);
    EXPECT_EQ(decoder.feed({}), 0u);
    EXPECT_EQ(decoder.feed(bytes_of("\r\n")), 2u);
    EXPECT_EQ(decoder.current(), state::data);
    EXPECT_EQ(decoder.data_left(), 5u);
}

TEST(chunked_decoder, feed_in_state_data_aborts) {
    EXPECT_DEATH(
        {
            chunked_decoder decoder(with_body(5));
            static_cast<void>(decoder.feed(bytes_of("5\r\n")));
            static_cast<void>(decoder.feed(bytes_of("hello")));
        },
        "state_ != state::data");
}

TEST(chunked_decoder, took_data_beyond_the_chunk_aborts) {
    EXPECT_DEATH(
        {
            chunked_decoder decoder(with_body(5));
            static_cast<void>(decoder.feed(bytes_of("5\r\n")));
            decoder.took_data(6);
        },
        "n <= data_left_");
    EXPECT_DEATH(
        {
            chunked_decoder decoder(with_body(5));
            static_cast<void>(decoder.feed(bytes_of("5\r\n")));
            decoder.took_data(0);
        },
        "n > 0");
    EXPECT_DEATH(
        {
            chunked_decoder decoder(with_body(5));
            decoder.took_data(1);
        },
        "state_ == state::data");
}

}  // namespace
}  // namespace datapump::http
