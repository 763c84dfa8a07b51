// File: datapump/rt/qos.hpp
//
// What a connection asks of the system (seed 001's QoS): how often a buffer moves, how late it may
// start and finish, how big the buffers are and how many the connection owns. And what the system
// answers when it cannot promise that: a refusal naming the figures.
//
// Thread-safety: plain values.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

DATAPUMP_API_BEGIN

namespace datapump::rt {

using duration = std::chrono::nanoseconds;

// What happens to a buffer whose chain cannot finish within the delay bound.
enum class late_policy : std::uint8_t {
    deliver_late,  // the later stages still get it; the buffer is counted `late`
    drop,          // a stage that would start past the deadline is skipped with every stage after it;
                   // the buffer goes back to the pool, counted `dropped`
};

struct qos {
    // Buffers per second. The period T = 1 / rate. Required (> 0).
    double rate = 0;
    // How far after its ideal instant t_k = t_0 + k*T the source's upcall may start. 0: the
    // delay bound is the only bound.
    duration jitter{0};
    // From a buffer's ideal instant to the end of its last stage, across the whole chain (D).
    // 0: one period.
    duration delay{0};
    // Bytes per buffer (rounded up to whole pages for the pool). 0 for direct connections
    // driven by a byte count (see system::connect_direct).
    std::size_t buffer_size = std::size_t{64} * 1024;
    // Buffers the connection owns: in flight plus those handlers keep. At least 1.
    std::size_t buffer_count = 4;
    late_policy on_late = late_policy::deliver_late;

    // A byte rate expressed as buffers per second of `buffer_size` bytes.
    [[nodiscard]] static double buffers_per_second(double bytes_per_second, std::size_t buffer_size) {
        return buffer_size == 0 ? 0.0 : bytes_per_second / static_cast<double>(buffer_size);
    }
};

// Why connect() said no. `code` is invalid_argument (the request can never work: no such port,
// a bad figure), busy (a port already in a connection), full (the processors or the pool have no
// room) or unsupported; `reason` is the sentence for the application's log, with the figures.
struct refusal {
    errc code = errc::invalid_argument;
    std::string reason;
};

}  // namespace datapump::rt
DATAPUMP_API_END
