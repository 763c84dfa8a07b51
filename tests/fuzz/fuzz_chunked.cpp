// libFuzzer target: chunked_decoder on arbitrary bytes.
//
// The first three bytes pick the limits (max_body, max_line, max_trailer_bytes; 0xff: a large
// default), small most of the time so that every limit is reached often. The rest is a request
// body on the wire, driven as the server drives it: framing to feed(), chunk data skipped and
// reported with took_data(). Three ways — whole, byte by byte, and in pseudo-random pieces (data
// included) — which must agree exactly: final state, wire position, body bytes, status, reason.
// Every step is checked against the header's promises, and the decision to accept is checked
// against a plain, non-incremental reading of the same grammar: the decoder is done at position P
// exactly when that reading finds a complete body of P bytes. Every body decoded is decoded again
// with max_body at its exact size and one byte under it.
#include "datapump/http/proto/chunked.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace {

using namespace datapump::http;
using state = chunked_decoder::state;

constexpr std::size_t npos = std::string_view::npos;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_chunked: broken promise: %s\n", what);
        std::abort();
    }
}

struct outcome {
    state end = state::framing;
    std::size_t position = 0;  // wire bytes used: framing consumed plus data received
    std::uint64_t body_bytes = 0;
    int status = 0;
    std::string_view reason;
};

void check_status(const chunked_decoder& d) {
    if (d.current() == state::failed) {
        check(d.http_status() == 400 || d.http_status() == 413, "failed: status 400 or 413");
        check(!d.reason().empty(), "failed: a reason");
    } else {
        check(d.http_status() == 0 && d.reason().empty(), "no status unless failed");
    }
    check(d.current() == state::data || d.data_left() == 0, "data_left is 0 outside state data");
}

// Feeds more bytes to a decoder in a terminal state: nothing may be consumed or change.
void check_terminal_stays(chunked_decoder& d, std::string_view more) {
    const state before = d.current();
    const std::uint64_t body = d.body_bytes();
    const int status = d.http_status();
    const std::string_view reason = d.reason();
    check(d.feed({more.data(), more.size()}) == 0, "a terminal decoder consumes nothing");
    check(d.feed({}) == 0, "a terminal decoder consumes nothing (empty)");
    check(d.current() == before && d.body_bytes() == body && d.http_status() == status && d.reason() == reason,
          "a terminal state stays terminal and unchanged");
}

// Drives the decoder over `wire` in pieces of piece() bytes (framing and data alike).
template <class Piece>
outcome drive(std::string_view wire, const chunked_limits& limits, Piece piece) {
    chunked_decoder d(limits);
    std::size_t pos = 0;
    std::uint64_t received = 0;
    while (pos < wire.size()) {
        if (d.current() == state::data) {
            const std::uint64_t left = d.data_left();
            check(left > 0, "data_left > 0 in state data");
            check(left <= limits.max_body - d.body_bytes(), "the announced chunk fits max_body");
            const std::uint64_t n = std::min<std::uint64_t>({left, wire.size() - pos, piece()});
            d.took_data(n);
            received += n;
            pos += n;
            check(d.body_bytes() == received, "body_bytes is the sum of took_data");
            check(n == left ? d.current() == state::framing : d.current() == state::data && d.data_left() == left - n,
                  "took_data moves on to the CRLF only at the chunk's end");
            continue;
        }
        if (d.current() != state::framing) {
            break;
        }
        const std::size_t given = std::min(wire.size() - pos, piece());
        const std::size_t used = d.feed({wire.data() + pos, given});
        check(used <= given, "consumed <= given");
        check(used == given || d.current() != state::framing, "stops early only when leaving framing");
        check_status(d);
        check(d.body_bytes() <= limits.max_body, "body_bytes <= max_body");
        const state now = d.current();
        if (now == state::data) {
            check(used > 0 && wire[pos + used - 1] == '\n', "data begins after a size line's LF");
        }
        if (now == state::done) {
            check(used > 0 && pos + used >= 5 && wire.substr(pos + used - 2, 2) == "\r\n", "done after a CRLF");
        }
        pos += used;
        if (now == state::done || now == state::failed) {
            check_terminal_stays(d, wire.substr(pos));
            check_terminal_stays(d, "0\r\n\r\n");
        }
    }
    check_status(d);
    return {d.current(), pos, d.body_bytes(), d.http_status(), d.reason()};
}

void check_same(const outcome& a, const outcome& b, const char* what) {
    check(a.end == b.end && a.position == b.position && a.body_bytes == b.body_bytes && a.status == b.status &&
              a.reason == b.reason,
          what);
}

// ---- The reference: whole lines found with plain searches, no state carried between bytes ----

bool is_tchar(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != npos;
}

bool is_ctl(char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
}

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// 1*16HEXDIG [ *(SP/HTAB) ";" *(not CTL) ]; the size, or nothing when the line is not one.
std::optional<std::uint64_t> size_line(std::string_view line) {
    std::size_t digits = 0;
    while (digits < line.size() && is_hex(line[digits])) {
        ++digits;
    }
    if (digits == 0 || digits > 16) {
        return std::nullopt;
    }
    const std::string_view rest = line.substr(digits);
    const std::size_t semi = rest.find_first_not_of(" \t");
    if (semi == npos) {
        if (!rest.empty()) {
            return std::nullopt;
        }
    } else if (rest[semi] != ';' || std::any_of(rest.begin() + static_cast<std::ptrdiff_t>(semi), rest.end(), is_ctl)) {
        return std::nullopt;
    }
    return std::strtoull(std::string(line.substr(0, digits)).c_str(), nullptr, 16);
}

bool field_line(std::string_view line) {
    const std::size_t colon = line.find(':');
    if (colon == 0 || colon == npos) {
        return false;
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = line.substr(colon + 1);
    return std::all_of(name.begin(), name.end(), is_tchar) && std::none_of(value.begin(), value.end(), is_ctl);
}

// The length of the complete, valid chunked body at the front of `wire`, or npos when there is
// none (malformed, over a limit, or cut short).
std::size_t reference_end(std::string_view wire, const chunked_limits& limits) {
    const auto line_at = [wire](std::size_t p) -> std::optional<std::string_view> {
        const std::size_t crlf = wire.find("\r\n", p);
        return crlf == npos ? std::nullopt : std::optional(wire.substr(p, crlf - p));
    };
    std::size_t pos = 0;
    std::uint64_t body = 0;
    for (;;) {
        const auto line = line_at(pos);
        if (!line || line->size() > limits.max_line) {
            return npos;
        }
        const auto size = size_line(*line);
        if (!size) {
            return npos;
        }
        pos += line->size() + 2;
        if (*size == 0) {
            break;
        }
        if (*size > limits.max_body - body || wire.size() - pos < *size || wire.size() - pos - *size < 2) {
            return npos;
        }
        body += *size;
        pos += *size;
        if (wire.substr(pos, 2) != "\r\n") {
            return npos;
        }
        pos += 2;
    }
    std::size_t trailer = 0;
    for (;;) {
        const auto line = line_at(pos);
        if (!line) {
            return npos;
        }
        if (line->empty()) {
            return pos + 2;
        }
        trailer += line->size() + 2;
        if (trailer > limits.max_trailer_bytes || !field_line(*line)) {
            return npos;
        }
        pos += line->size() + 2;
    }
}

void run(std::string_view wire, const chunked_limits& limits, std::uint32_t seed) {
    const outcome whole = drive(wire, limits, [] { return std::numeric_limits<std::size_t>::max(); });
    const outcome bytes = drive(wire, limits, [] { return std::size_t{1}; });
    check_same(whole, bytes, "whole and byte by byte agree");
    std::uint32_t x = seed | 1U;
    const outcome pieces = drive(wire, limits, [&x] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return std::size_t{1} + x % 61;
    });
    check_same(whole, pieces, "whole and random pieces agree");

    const std::size_t end = reference_end(wire, limits);
    check((whole.end == state::done) == (end != npos), "done exactly when the reference finds a complete body");
    if (end != npos) {
        check(whole.position == end, "done at the reference's end of the body");
    }
}

// The max_body boundary, which random limit bytes rarely hit exactly: a body that was decoded is
// decoded the same with max_body set to its size, and refused (413, before its last chunk's data)
// with one byte less.
void probe_max_body(std::string_view wire, const chunked_limits& limits) {
    const auto all = [] { return std::numeric_limits<std::size_t>::max(); };
    const outcome whole = drive(wire, limits, all);
    if (whole.end != state::done) {
        return;
    }
    chunked_limits exact = limits;
    exact.max_body = whole.body_bytes;
    check_same(whole, drive(wire, exact, all), "max_body exactly reached decodes the same");
    if (whole.body_bytes > 0) {
        chunked_limits under = limits;
        under.max_body = whole.body_bytes - 1;
        const outcome refused = drive(wire, under, all);
        check(refused.end == state::failed && refused.status == 413, "one byte over max_body is 413");
        check(refused.body_bytes < whole.body_bytes && refused.position < whole.position, "refused before its data");
        check(reference_end(wire, under) == npos, "the reference refuses it too");
    }
}

chunked_limits limits_from(std::uint8_t body, std::uint8_t line, std::uint8_t trailer) {
    chunked_limits limits;
    if (body == 0xff) {
        limits.max_body = std::numeric_limits<std::uint64_t>::max();
    } else {
        limits.max_body = body < 0x80 ? body : std::uint64_t{body - 0x80U} * 37;
    }
    limits.max_line = line == 0xff ? 4096 : line % 48;
    limits.max_trailer_bytes = trailer == 0xff ? 16384 : trailer % 96;
    return limits;
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the entry point libFuzzer calls, by its name.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) {
        return 0;
    }
    const chunked_limits limits = limits_from(data[0], data[1], data[2]);
    const std::string_view wire(reinterpret_cast<const char*>(data) + 3, size - 3);
    std::uint32_t seed = 2166136261U;
    for (const char c : wire.substr(0, 64)) {
        seed = (seed ^ static_cast<std::uint8_t>(c)) * 16777619U;
    }
    run(wire, limits, seed);
    probe_max_body(wire, limits);
    return 0;
}
