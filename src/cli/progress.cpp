#include "progress.hpp"

#include "units.hpp"

#include <unistd.h>

#include <algorithm>

namespace datapump::cli {

bool progress_wanted(progress_mode mode, int fd) {
    switch (mode) {
        case progress_mode::always:
            return true;
        case progress_mode::never:
            return false;
        case progress_mode::automatic:
            break;
    }
    return ::isatty(fd) == 1;
}

progress_line::progress_line(std::FILE* out, std::string label, std::uint64_t total,
                             const std::atomic<std::uint64_t>& done, std::chrono::milliseconds period)
    : out_(out), label_(std::move(label)), total_(total), done_(done), period_(period),
      start_(std::chrono::steady_clock::now()) {
    draw();
    thread_ = std::thread([this] {
        std::unique_lock lock(mutex_);
        while (!wake_.wait_for(lock, period_, [this] { return stop_; })) {
            draw();
        }
    });
}

progress_line::~progress_line() {
    finish();
}

void progress_line::finish() {
    {
        std::lock_guard lock(mutex_);
        if (stop_) {
            return;
        }
        stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
    draw();
    std::fputs("\r\033[K", out_);
    std::fflush(out_);
}

void progress_line::draw() {
    const std::uint64_t done = done_.load(std::memory_order_relaxed);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
    const unsigned percent =
        total_ > 0 ? static_cast<unsigned>(std::min<std::uint64_t>(100, done * 100 / total_)) : 100U;
    // \r back to the start of the line, \033[K erases what a longer earlier line left.
    std::fprintf(out_, "\r%s: %s of %s (%u%%), %s\033[K", label_.c_str(), human_bytes(done).c_str(),
                 human_bytes(total_).c_str(), percent, human_rate(rate).c_str());
    std::fflush(out_);
}

}  // namespace datapump::cli
