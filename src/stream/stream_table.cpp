#include "datapump/stream/stream_table.hpp"

#include <algorithm>

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

std::shared_ptr<control> stream_table::make() {
    auto c = std::make_shared<control>();
    // Relaxed: ids need only be unique, which the atomic increment gives.
    c->id = next_id_.fetch_add(1, std::memory_order_relaxed);
    return c;
}

void stream_table::add(const std::shared_ptr<control>& c) {
    const std::lock_guard lock(mutex_);
    streams_.emplace(c->id, c);
}

void stream_table::remove(std::uint64_t id) {
    const std::lock_guard lock(mutex_);
    streams_.erase(id);
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
