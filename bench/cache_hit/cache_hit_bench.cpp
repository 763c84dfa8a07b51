// Cache hit path on one core: lookup + lock (pin) + unlock, and loan + give back, against the
// peer every cache starts as: a std::unordered_map behind a std::mutex with a pin count.
// Run: build/release/bench/cache_hit/bench_cache_hit --benchmark_repetitions=5
//      --benchmark_report_aggregates_only=true   (bench/cache_hit/run.sh prints the ratios)
#include "datapump/cache/file_cache.hpp"

#include <benchmark/benchmark.h>

#include <cstring>
#include <mutex>
#include <unordered_map>

namespace {

using namespace datapump;

constexpr std::size_t block = 256 * 1024;
constexpr std::uint64_t blocks = 1024;

class zero_source final : public cache::block_source {
public:
    void read_blocks(std::span<cache::block_read> reads) override {
        for (auto& r : reads) {
            std::memset(r.dst.data(), 1, r.dst.size());
            r.outcome = static_cast<std::uint32_t>(r.dst.size());
        }
    }
};

struct warm_cache {
    warm_cache() {
        cache::file_cache_config cfg;
        cfg.buffers = {.buffer_size = block, .buffer_count = blocks + 16};
        cache = std::move(*cache::file_cache::create(cfg));
        file = cache->open(std::make_shared<zero_source>(), blocks * block);
        for (std::uint64_t b = 0; b < blocks; b += 16) {
            auto l = cache->loan_read(*file, b * block, 16 * block);
            if (!l) {
                std::abort();
            }
        }
    }
    std::unique_ptr<cache::file_cache> cache;
    std::shared_ptr<cache::cached_file> file;
};

warm_cache& shared_cache() {
    static warm_cache w;
    return w;
}

void bm_lookup_lock_unlock(benchmark::State& state) {
    auto& w = shared_cache();
    auto& buffers = w.cache->buffers();
    const std::uint64_t id = w.file->id();
    std::uint64_t b = 0;
    for (auto _ : state) {
        auto ref = buffers.try_lock(cache::key{id, b});
        benchmark::DoNotOptimize(ref);
        b = (b + 7) % blocks;  // stride: not always the same cache line
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_lookup_lock_unlock);

void bm_loan_and_return(benchmark::State& state) {
    auto& w = shared_cache();
    std::uint64_t b = 0;
    for (auto _ : state) {
        auto loan = w.cache->try_loan(*w.file, b);
        benchmark::DoNotOptimize(loan->bytes().data());
        b = (b + 7) % blocks;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_loan_and_return);

// The peer: a locked map from key to a pinned slot.
struct peer_map {
    struct slot {
        std::uint32_t pins = 0;
        std::uint32_t index = 0;
    };
    std::mutex mutex;
    std::unordered_map<std::uint64_t, slot> map;
};

void bm_peer_mutex_map(benchmark::State& state) {
    static peer_map peer;
    {
        const std::lock_guard lock(peer.mutex);
        for (std::uint64_t b = 0; b < blocks; ++b) {
            peer.map[b] = {0, static_cast<std::uint32_t>(b)};
        }
    }
    std::uint64_t b = 0;
    for (auto _ : state) {
        {
            const std::lock_guard lock(peer.mutex);
            auto it = peer.map.find(b);
            ++it->second.pins;
            benchmark::DoNotOptimize(it->second.index);
        }
        {
            const std::lock_guard lock(peer.mutex);
            --peer.map.find(b)->second.pins;
        }
        b = (b + 7) % blocks;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_peer_mutex_map);

}  // namespace

BENCHMARK_MAIN();
