// File: datapump/http/chunked_body.hpp
//
// HTTP/1.1's chunked transfer coding as an ingest body decoder: the HTTP server gives an upload
// with `Transfer-Encoding: chunked` to its ingest job through this, so that ingest (below http/)
// knows nothing of HTTP. A refusal comes out as ingest's errors (errc::protocol_error for 400,
// errc::full for 413); http_status() keeps the HTTP verdict for the answer.
//
// Thread-safety: none (one per upload, on its loop).
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/http/proto/chunked.hpp"
#include "datapump/ingest/body_decoder.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

DATAPUMP_API_BEGIN

namespace datapump::http {

class chunked_body final : public ingest::body_decoder {
public:
    explicit chunked_body(chunked_limits limits) : decoder_(limits) {}

    [[nodiscard]] state current() const override {
        switch (decoder_.current()) {
            case chunked_decoder::state::framing: return state::framing;
            case chunked_decoder::state::data: return state::data;
            case chunked_decoder::state::done: return state::done;
            case chunked_decoder::state::failed: break;
        }
        return state::failed;
    }
    std::size_t feed(std::span<const std::byte> bytes) override {
        return decoder_.feed(std::span<const char>(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    }
    [[nodiscard]] std::uint64_t data_left() const override { return decoder_.data_left(); }
    void took_data(std::uint64_t n) override { decoder_.took_data(n); }
    [[nodiscard]] error refusal() const override {
        // reason() views a static, NUL-terminated text (chunked.cpp's reason_* constants).
        const char* what = decoder_.reason().empty() ? "chunked body refused" : decoder_.reason().data();
        return error{decoder_.http_status() == 413 ? errc::full : errc::protocol_error, 0, what};
    }

    // 400 or 413 once refused (0 before), and the decoder itself (its body_bytes(), its limits).
    [[nodiscard]] int http_status() const { return decoder_.http_status(); }
    [[nodiscard]] const chunked_decoder& decoder() const { return decoder_; }

private:
    chunked_decoder decoder_;
};

}  // namespace datapump::http
DATAPUMP_API_END
