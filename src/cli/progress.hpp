// A progress line for long work, redrawn in place on a terminal:
//   reading data.bin: 1.20 GiB of 4.00 GiB (30%), 850 MiB/s
// Drawn at once, then every `period` from a thread of its own, and a last time when the work
// ends; then erased, so that the report printed next starts on a clean line. The work only
// adds to an atomic counter (relaxed: the line is a hint, not a measurement).
//
// Whether to draw at all: progress_wanted() — on a terminal only, unless asked (a script
// capturing stderr gets no carriage returns).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace datapump::cli {

enum class progress_mode : std::uint8_t { automatic, always, never };

// automatic: only when `fd` is a terminal.
[[nodiscard]] bool progress_wanted(progress_mode mode, int fd);

class progress_line {
public:
    // `out` is written from the drawing thread until the destructor (or finish()) returns.
    progress_line(std::FILE* out, std::string label, std::uint64_t total, const std::atomic<std::uint64_t>& done,
                  std::chrono::milliseconds period = std::chrono::milliseconds(250));
    ~progress_line();
    progress_line(const progress_line&) = delete;
    progress_line& operator=(const progress_line&) = delete;

    // Draws the last state, erases the line and stops the thread (the destructor does it too).
    void finish();

private:
    void draw();

    std::FILE* out_;
    std::string label_;
    std::uint64_t total_;
    const std::atomic<std::uint64_t>& done_;
    std::chrono::milliseconds period_;
    std::chrono::steady_clock::time_point start_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace datapump::cli
