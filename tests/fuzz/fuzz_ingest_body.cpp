// libFuzzer target: the ingest body path (src/ingest/framed_body.hpp) with the decoder the HTTP
// server gives it (http::chunked_body over http::chunked_decoder), driven as a job drives it.
//
// The first three bytes pick max_body (small most of the time, so that 413 is reached often), how
// much of the wire the caller had already read (the job's prefix), and a seed for the sizes of
// the socket's receives. The rest is what the client sends. The job's way: the prefix through
// split_framed, then, while the decoder wants framing, receives of at most frame_recv bytes
// through split_framed (data behind framing is copied), and while it wants data, receives
// straight into a window (of random size) reported with took_data; the body ends at done, and the
// bytes of that receive past the end are the next request's. It must agree with one pass over the
// whole wire: the same outcome and status, the same body bytes, the same end of the body in the
// stream, never more than max_body, nothing consumed after done or failed, and a refusal that is
// ingest's error for its HTTP status (errc::full for 413, errc::protocol_error for 400).
#include "datapump/http/chunked_body.hpp"
#include "framed_body.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <span>
#include <vector>

namespace {

using namespace datapump;
using state = ingest::body_decoder::state;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_ingest_body: broken promise: %s\n", what);
        std::abort();
    }
}

struct outcome {
    state end = state::framing;
    int status = 0;
    std::vector<std::byte> body;
    std::size_t body_end = 0;  // the wire position just past the body (done only)
};

// One pass over the whole wire.
outcome whole(std::span<const std::byte> wire, std::uint64_t max_body) {
    http::chunked_body d(http::chunked_limits{.max_body = max_body});
    outcome out;
    const std::size_t used =
        ingest::detail::split_framed(d, wire, [&](std::span<const std::byte> data) {
            out.body.insert(out.body.end(), data.begin(), data.end());
        });
    out.end = d.current();
    out.status = d.http_status();
    out.body_end = used;
    check(used <= wire.size(), "consumed within the wire");
    check(out.end != state::framing && out.end != state::data ? true : used == wire.size(),
          "stops early only at done or failed");
    return out;
}

// As a job: the prefix, then framing receives and window receives of pseudo-random sizes.
outcome as_a_job(std::span<const std::byte> wire, std::uint64_t max_body, std::size_t prefix, std::uint32_t seed) {
    http::chunked_body d(http::chunked_limits{.max_body = max_body});
    outcome out;
    auto keep = [&](std::span<const std::byte> data) { out.body.insert(out.body.end(), data.begin(), data.end()); };
    std::uint32_t x = seed | 1U;
    auto next = [&x](std::size_t most) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return std::size_t{1} + x % most;
    };
    prefix = std::min(prefix, wire.size());
    std::size_t pos = ingest::detail::split_framed(d, wire.first(prefix), keep);
    if (d.current() == state::done) {
        out.body_end = pos;  // job::prefix_used(): the rest of the prefix is the caller's
    }
    pos = prefix;
    const std::size_t window = next(8192);
    while (pos < wire.size() && (d.current() == state::framing || d.current() == state::data)) {
        if (d.current() == state::framing) {
            const std::size_t got = std::min({wire.size() - pos, next(ingest::detail::frame_recv),
                                              ingest::detail::frame_recv});
            const auto frame = wire.subspan(pos, got);
            const std::size_t used = ingest::detail::split_framed(d, frame, keep);
            check(used <= got, "a framing receive is consumed within itself");
            if (d.current() == state::done) {
                out.body_end = pos + used;  // the rest is the job's leftover()
            } else if (d.current() != state::failed) {
                check(used == got, "a framing receive is used up unless the body ended or failed");
            }
            pos += got;
        } else {
            const std::uint64_t want = std::min<std::uint64_t>(d.data_left(), window);
            const auto got = static_cast<std::size_t>(std::min<std::uint64_t>({want, wire.size() - pos, next(4096)}));
            keep(wire.subspan(pos, got));  // received straight into the window
            d.took_data(got);
            pos += got;
        }
        check(d.decoder().body_bytes() == out.body.size(), "body_bytes counts every byte handed on");
        check(d.decoder().body_bytes() <= max_body, "never past max_body");
    }
    out.end = d.current();
    out.status = d.http_status();
    if (out.end == state::failed) {
        check(d.refusal().code == (out.status == 413 ? errc::full : errc::protocol_error),
              "a refusal is ingest's error for its status");
    }
    return out;
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the entry point libFuzzer calls, by its name.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) {
        return 0;
    }
    const std::uint8_t b = data[0];
    const std::uint64_t max_body = b == 0xff ? std::numeric_limits<std::uint64_t>::max()
                                   : b < 0x80 ? b
                                              : std::uint64_t{b - 0x80U} * 101;
    const std::size_t prefix = data[1];
    const std::uint32_t seed = 2166136261U ^ (std::uint32_t{data[2]} * 16777619U);
    const std::span<const std::byte> wire(reinterpret_cast<const std::byte*>(data) + 3, size - 3);

    const outcome one = whole(wire, max_body);
    const outcome job = as_a_job(wire, max_body, prefix, seed);
    check(one.end == job.end, "the job's outcome is one pass's");
    check(one.status == job.status, "the same status");
    check(one.body == job.body, "the same body bytes (up to a refusal, or the end of the wire)");
    if (one.end == state::done) {
        check(one.body_end == job.body_end, "the body ends at the same place in the stream");
    }
    if (one.end == state::failed) {
        check(one.status == 400 || one.status == 413, "a refusal is 400 or 413");
    }
    return 0;
}
