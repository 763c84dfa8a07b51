// File: datapump/ingest/body_decoder.hpp
//
// The framing of a body whose length is not known in advance, decoded as it arrives: what a
// protocol above ingest gives a job (HTTP's chunked transfer coding is one, plugged in by the
// HTTP server: datapump/http/chunked_body.hpp). The job hands the decoder only the framing bytes;
// the data bytes it receives straight into its arena windows and reports with took_data(), so
// data never passes through the decoder.
//
//   framing --feed()--> data --took_data() until data_left() == 0--> framing --feed()--> ... done
//      \--feed()--> failed                                                      \--> failed
//
// A decoder never consumes a byte past the end of the body: in state done the bytes after it
// belong to whatever follows on the stream (the job's leftover()).
//
// Thread-safety: none; one decoder belongs to one job, on its loop.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

DATAPUMP_API_BEGIN

namespace datapump::ingest {

class body_decoder {
public:
    enum class state : std::uint8_t {
        framing,  // feed() the next bytes
        data,     // data_left() bytes of body data come next: receive them, then took_data()
        done,     // the body ended; the bytes after it are not the body's
        failed,   // refused: refusal() says why
    };

    body_decoder() = default;
    body_decoder(const body_decoder&) = delete;
    body_decoder& operator=(const body_decoder&) = delete;
    virtual ~body_decoder() = default;

    [[nodiscard]] virtual state current() const = 0;
    // In state framing: consumes framing bytes from the front of `bytes`, stopping where data
    // begins, at the end of the body or at a refusal. Returns the bytes consumed.
    virtual std::size_t feed(std::span<const std::byte> bytes) = 0;
    // In state data: the data bytes that come before the next framing.
    [[nodiscard]] virtual std::uint64_t data_left() const = 0;
    // `n` (<= data_left()) data bytes were received.
    virtual void took_data(std::uint64_t n) = 0;
    // In state failed: errc::protocol_error (malformed framing) or errc::full (the body, or its
    // framing, is larger than the decoder allows); `what` names the rule.
    [[nodiscard]] virtual error refusal() const = 0;
};

}  // namespace datapump::ingest
DATAPUMP_API_END
