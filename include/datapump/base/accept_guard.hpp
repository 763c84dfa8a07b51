// File: datapump/base/accept_guard.hpp
//
// What an accept loop does when accept() fails (docs/daemon.md, "Limits"). EMFILE, ENFILE,
// ENOBUFS and ENOMEM do not go away by retrying: a loop that accepts again at once spins at 100 %
// CPU and, if it logs each failure, fills the disk, while the clients in the backlog hang with no
// answer. So, as nginx does (it disables accept for 500 ms on EMFILE/ENFILE), the loop stops
// accepting for `pause`; and, as libev/libuv users do, it keeps one spare descriptor (/dev/null)
// in reserve: at exhaustion it closes the spare, accepts one waiting connection, sends it
// `farewell` (a 503, or nothing), closes it and takes the spare again, so a waiting client gets
// an answer rather than a hang. Failures are logged at most once per `log_every`, with how many
// there were since the last line.
//
//   accept() fails ──failed(listener, err)──> exhaustion: shed one (spare) ──> pause
//                                          ──> transient (ECONNABORTED...): accept again now
//                                          ──> anything else: pause (a broken listener must not spin)
//
// Thread-safety: one accept loop (one thread) owns a guard and calls failed(); failures() and
// shed() may be read from any thread (relaxed counters).
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/base/unique_fd.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

DATAPUMP_API_BEGIN

namespace datapump {

// True for the accept errors that mean the process or system is out of a resource.
[[nodiscard]] bool accept_exhausted(int err);

struct accept_guard_options {
    std::string name;                           // the listener, as log lines name it ("loop 0")
    std::chrono::milliseconds pause{250};        // no accept for this long after a failure
    std::chrono::milliseconds log_every{10000};  // at most one log line per this
    std::string farewell;                        // sent to a connection shed through the spare
    std::string advice;                          // what to do, appended to exhaustion lines
};

class accept_guard {
public:
    using clock = std::chrono::steady_clock;

    // Opens the spare descriptor (when it cannot, the guard still pauses; it cannot shed).
    explicit accept_guard(accept_guard_options options);
    accept_guard(const accept_guard&) = delete;
    accept_guard& operator=(const accept_guard&) = delete;

    // accept() on `listener` failed with `err` (a positive errno). Counts it, logs when the last
    // line is older than log_every, sheds one waiting connection on exhaustion, and returns how
    // long the loop must not accept (0: accept again now). The listener may be blocking: the shed
    // accept runs with O_NONBLOCK set on it for the call (nothing else may accept meanwhile).
    [[nodiscard]] std::chrono::milliseconds failed(int listener, int err);

    [[nodiscard]] std::uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t shed() const { return shed_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t log_lines() const { return log_lines_.load(std::memory_order_relaxed); }
    [[nodiscard]] const accept_guard_options& options() const { return options_; }

private:
    void shed_one(int listener);
    void log(int err, std::chrono::milliseconds pause);

    accept_guard_options options_;
    unique_fd spare_;
    std::atomic<std::uint64_t> failures_{0};
    std::atomic<std::uint64_t> shed_{0};
    std::atomic<std::uint64_t> log_lines_{0};
    std::uint64_t failures_logged_ = 0;  // failures_ when the last line was written
    std::uint64_t shed_logged_ = 0;
    clock::time_point last_line_{};
    bool logged_once_ = false;
};

}  // namespace datapump
DATAPUMP_API_END
