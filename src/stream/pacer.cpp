#include "datapump/stream/pacer.hpp"

#include <algorithm>

namespace datapump::stream {

pacer::pacer(std::uint64_t rate, std::uint64_t burst, clock::time_point now)
    : rate_(rate), burst_(rate == 0 ? 0 : std::max<std::uint64_t>(burst, 1)), tokens_(static_cast<double>(burst_)),
      last_(now) {}

void pacer::refill(clock::time_point now) {
    if (now <= last_) {
        return;
    }
    const double seconds = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(static_cast<double>(burst_), tokens_ + seconds * static_cast<double>(rate_));
    last_ = now;
}

std::uint64_t pacer::allowance(clock::time_point now, std::uint64_t want) {
    if (rate_ == 0) {
        return want;
    }
    refill(now);
    // All or nothing: granting whatever trickled in would make the stream send a few bytes per
    // loop turn, burning the loop for nothing. A stream sends whole pieces at the rate.
    const std::uint64_t piece = std::min(want, burst_);
    return tokens_ >= static_cast<double>(piece) ? piece : 0;
}

void pacer::consume(std::uint64_t n) {
    if (rate_ != 0) {
        tokens_ -= static_cast<double>(n);
    }
}

pacer::clock::time_point pacer::ready_at(clock::time_point now, std::uint64_t want) {
    if (rate_ == 0) {
        return now;
    }
    refill(now);
    const double need = static_cast<double>(std::min(want, burst_)) - tokens_;
    if (need <= 0) {
        return now;
    }
    const auto wait = std::chrono::duration<double>(need / static_cast<double>(rate_));
    return now + std::chrono::ceil<clock::duration>(wait);
}

}  // namespace datapump::stream
