// Test support: a block source/sink over bytes made from a formula, counting every block read so
// tests can prove "one disk read per block", with knobs to delay reads (widen race windows),
// fail a block, or shrink the file under the cache.
#pragma once

#include "datapump/cache/block_io.hpp"
#include "support/pattern.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace datapump::testing {

class memory_source final : public cache::block_source {
public:
    memory_source(std::uint64_t seed, std::uint64_t size) : seed_(seed), size_(size) {}

    void read_blocks(std::span<cache::block_read> reads) override {
        for (auto& r : reads) {
            if (delay_us_.load() != 0) {
                std::this_thread::sleep_for(std::chrono::microseconds(delay_us_.load()));
            }
            {
                const std::lock_guard lock(mutex_);
                ++reads_per_offset_[r.offset];
                ++total_reads_;
            }
            if (fail_offset_.load() == static_cast<std::int64_t>(r.offset)) {
                r.outcome = std::unexpected(error{errc::io_error, EIO, "memory source: injected failure"});
                continue;
            }
            const std::uint64_t size = size_.load();
            const std::uint64_t n = r.offset >= size ? 0 : std::min<std::uint64_t>(r.dst.size(), size - r.offset);
            for (std::uint64_t i = 0; i < n; ++i) {
                r.dst[i] = pattern_byte(seed_, r.offset + i);
            }
            r.outcome = static_cast<std::uint32_t>(n);
        }
    }

    void set_delay_us(int us) { delay_us_.store(us); }
    void fail_at(std::int64_t offset) { fail_offset_.store(offset); }
    void shrink_to(std::uint64_t size) { size_.store(size); }
    [[nodiscard]] std::uint64_t total_reads() const {
        const std::lock_guard lock(mutex_);
        return total_reads_;
    }
    [[nodiscard]] std::map<std::uint64_t, int> reads_per_offset() const {
        const std::lock_guard lock(mutex_);
        return reads_per_offset_;
    }

private:
    std::uint64_t seed_;
    std::atomic<std::uint64_t> size_;
    std::atomic<int> delay_us_{0};
    std::atomic<std::int64_t> fail_offset_{-1};
    mutable std::mutex mutex_;
    std::map<std::uint64_t, int> reads_per_offset_;
    std::uint64_t total_reads_ = 0;
};

// A growing file held in memory: the sink side receives the writer's blocks, the source side
// serves them back (as the file system would after the write).
class memory_file final : public cache::block_source, public cache::block_sink {
public:
    void read_blocks(std::span<cache::block_read> reads) override {
        const std::lock_guard lock(mutex_);
        for (auto& r : reads) {
            ++reads_;
            const std::uint64_t size = bytes_.size();
            const std::uint64_t n = r.offset >= size ? 0 : std::min<std::uint64_t>(r.dst.size(), size - r.offset);
            std::memcpy(r.dst.data(), bytes_.data() + r.offset, n);
            r.outcome = static_cast<std::uint32_t>(n);
        }
    }
    result<void> write_block(std::uint64_t offset, std::span<const std::byte> bytes, std::uint32_t) override {
        const std::lock_guard lock(mutex_);
        if (fail_writes_) {
            return fail(errc::io_error, "memory file: injected write failure", ENOSPC);
        }
        if (bytes_.size() < offset + bytes.size()) {
            bytes_.resize(offset + bytes.size());
        }
        std::memcpy(bytes_.data() + offset, bytes.data(), bytes.size());
        ++writes_;
        return {};
    }
    result<void> finish(std::uint64_t size) override {
        const std::lock_guard lock(mutex_);
        bytes_.resize(size);
        finished_ = true;
        return {};
    }
    void fail_writes() {
        const std::lock_guard lock(mutex_);
        fail_writes_ = true;
    }
    [[nodiscard]] std::vector<std::byte> contents() const {
        const std::lock_guard lock(mutex_);
        return bytes_;
    }
    [[nodiscard]] bool finished() const {
        const std::lock_guard lock(mutex_);
        return finished_;
    }
    [[nodiscard]] int writes() const {
        const std::lock_guard lock(mutex_);
        return writes_;
    }
    [[nodiscard]] std::uint64_t reads() const {
        const std::lock_guard lock(mutex_);
        return reads_;
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::byte> bytes_;
    bool fail_writes_ = false;
    bool finished_ = false;
    int writes_ = 0;
    std::uint64_t reads_ = 0;
};

}  // namespace datapump::testing
