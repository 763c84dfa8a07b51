// Test support: waiting for a condition another thread or process brings about, with a bound, so
// that a hang fails the test instead of the run. Not a timing assertion: only the bound is a time.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace datapump::testing {

// Polls `done` every millisecond for at most `limit`: false when it never became true.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= until) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

}  // namespace datapump::testing
