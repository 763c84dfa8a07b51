// File: datapump/ipc/wait.hpp
//
// How a side of a channel waits for the other: poll, poll then sleep, or sleep at once.
#pragma once

#include "datapump/base/export.hpp"

#include <chrono>
#include <cstdint>

DATAPUMP_API_BEGIN

namespace datapump::ipc {

enum class wait_strategy : std::uint8_t {
    spin,             // poll forever: lowest latency, one core busy per waiting thread
    spin_then_sleep,  // poll for `spin_for`, then sleep on the futex (default)
    sleep,            // sleep on the futex at once: no CPU while idle, a wake-up per command
};

struct wait_policy {
    wait_strategy strategy = wait_strategy::spin_then_sleep;
    std::chrono::microseconds spin_for{50};
};

}  // namespace datapump::ipc
DATAPUMP_API_END
