// File: src/ingest/framed_body.hpp
//
// The pure part of a job's framed body path (job.cpp): the client's bytes split into framing,
// which the decoder consumes, and body data, handed to the caller (the job queues it to be copied
// into its windows), stopping at the end of the body or at a refusal. No I/O and no state of its
// own, so that tests/fuzz/fuzz_ingest_body.cpp drives it exactly as a job does: the prefix, then
// framing receives of frame_recv bytes, body data received straight into windows in between.
//
// Thread-safety: none needed (the decoder is the caller's).
#pragma once

#include "datapump/ingest/body_decoder.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace datapump::ingest::detail {

// A job's framing receive: body data that arrives behind framing in the same receive is copied
// (counted); the rest of the data is received straight into a window.
inline constexpr std::size_t frame_recv = 64;

// Runs `decoder` over `bytes`: framing is consumed, each run of body data goes to
// on_data(std::span<const std::byte>) (a view into `bytes`) and is reported with took_data.
// Stops when `bytes` are used up, at the end of the body (state done) or on a refusal (state
// failed). Returns the bytes used; in state done the rest follow the body (the next request's).
template <class OnData>
std::size_t split_framed(body_decoder& decoder, std::span<const std::byte> bytes, OnData&& on_data) {
    std::size_t at = 0;
    while (at < bytes.size()) {
        const auto st = decoder.current();
        if (st == body_decoder::state::framing) {
            at += decoder.feed(bytes.subspan(at));
        } else if (st == body_decoder::state::data) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(decoder.data_left(), bytes.size() - at));
            on_data(bytes.subspan(at, n));
            decoder.took_data(n);
            at += n;
        } else {
            break;
        }
    }
    return at;
}

}  // namespace datapump::ingest::detail
