#include "datapump/stream/stream_table.hpp"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <span>

namespace datapump::stream {

const char* to_string(run_state s) {
    switch (s) {
        case run_state::playing:
            return "playing";
        case run_state::paused:
            return "paused";
        case run_state::waiting:
            return "waiting";
        case run_state::ending:
            return "ending";
    }
    return "unknown";
}

namespace {

// 128 bits from the kernel's CSPRNG as 32 lowercase hex digits; empty if it gave none (it never
// fails once the pool is initialised, which happens early in boot). The bytes come from a
// per-thread pool filled 16 capabilities at a time: one getrandom(2) per 16 streams instead of one
// each (a small-file request paid 1 % of its CPU for it). Each byte is used once; the pool's
// bytes are the kernel's CSPRNG output like any others, only fetched earlier.
std::string random_capability() {
    constexpr std::size_t capability_bytes = 16;
    thread_local std::array<unsigned char, 16 * capability_bytes> pool{};
    thread_local std::size_t used = pool.size();
    if (used + capability_bytes > pool.size()) {
        std::size_t got = 0;
        while (got < pool.size()) {
            const ssize_t n = ::getrandom(pool.data() + got, pool.size() - got, 0);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return {};
            }
            got += static_cast<std::size_t>(n);
        }
        used = 0;
    }
    const std::span<const unsigned char> bytes(pool.data() + used, capability_bytes);
    used += capability_bytes;
    constexpr std::string_view digits = "0123456789abcdef";
    std::string out;
    out.reserve(2 * bytes.size());
    for (const unsigned char b : bytes) {
        out += digits[b >> 4U];
        out += digits[b & 0xfU];
    }
    return out;
}

}  // namespace

std::shared_ptr<control> stream_table::make() {
    auto c = std::make_shared<control>();
    // Relaxed: ids need only be unique, which the atomic increment gives.
    c->id = next_id_.fetch_add(1, std::memory_order_relaxed);
    c->capability = random_capability();
    return c;
}

void stream_table::add(const std::shared_ptr<control>& c) {
    const std::lock_guard lock(mutex_);
    streams_.emplace(c->id, c);
    if (!c->capability.empty()) {
        by_capability_.emplace(c->capability, c);
    }
}

void stream_table::remove(std::uint64_t id) {
    const std::lock_guard lock(mutex_);
    const auto it = streams_.find(id);
    if (it == streams_.end()) {
        return;
    }
    if (!it->second->capability.empty()) {
        by_capability_.erase(it->second->capability);
    }
    streams_.erase(it);
}

std::shared_ptr<control> stream_table::find_capability(std::string_view capability) const {
    const std::lock_guard lock(mutex_);
    const auto it = by_capability_.find(std::string(capability));
    return it == by_capability_.end() ? nullptr : it->second;
}

std::shared_ptr<control> stream_table::find(std::uint64_t id) const {
    const std::lock_guard lock(mutex_);
    const auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<control>> stream_table::list() const {
    std::vector<std::shared_ptr<control>> out;
    {
        const std::lock_guard lock(mutex_);
        out.reserve(streams_.size());
        for (const auto& [id, c] : streams_) {
            out.push_back(c);
        }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
    return out;
}

std::size_t stream_table::size() const {
    const std::lock_guard lock(mutex_);
    return streams_.size();
}

namespace {

result<std::shared_ptr<control>> found(std::shared_ptr<control> c) {
    if (c == nullptr) {
        return fail(errc::not_found, "no such stream");
    }
    return c;
}

void wake(const control& c) {
    if (c.kick) {
        c.kick();
    }
}

// Stores a pause or resume request in the stream `c` (if found) and wakes its loop.
result<std::shared_ptr<control>> request_pause(result<std::shared_ptr<control>> c, bool pause) {
    if (c) {
        (*c)->pause_requested.store(pause, std::memory_order_release);
        wake(**c);
    }
    return c;
}

}  // namespace

result<std::shared_ptr<control>> stream_table::pause(std::uint64_t id) { return request_pause(found(find(id)), true); }

result<std::shared_ptr<control>> stream_table::resume(std::uint64_t id) {
    return request_pause(found(find(id)), false);
}

result<std::shared_ptr<control>> stream_table::seek(std::uint64_t id, std::uint64_t offset) {
    auto c = found(find(id));
    if (!c) {
        return c;
    }
    if (offset >= (*c)->file_size) {
        return fail(errc::out_of_range, "seek past the end of the file");
    }
    (*c)->seek_to.store(static_cast<std::int64_t>(offset), std::memory_order_release);
    wake(**c);
    return c;
}

result<std::shared_ptr<control>> stream_table::set_speed(std::uint64_t id, std::uint32_t factor) {
    if (factor == 0 || factor > max_speed) {
        return fail(errc::invalid_argument, "speed factor must be 1..64");
    }
    auto c = found(find(id));
    if (c) {
        (*c)->speed.store(factor, std::memory_order_release);
        wake(**c);
    }
    return c;
}

}  // namespace datapump::stream
