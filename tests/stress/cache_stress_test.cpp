// Stress: many threads look up, loan, evict and prefetch the same and different files through a
// small arena, while a load-and-play writer fills a file that followers read. Bounded by an
// operation count, not by time. Run under TSan in CI (preset tsan, label "concurrent").
#include "datapump/cache/file_cache.hpp"
#include "support/memory_source.hpp"

#include <gtest/gtest.h>

#include <random>
#include <thread>

namespace datapump::cache {
namespace {

using testing::matches_pattern;
using testing::memory_file;
using testing::memory_source;
using testing::pattern_byte;

constexpr std::size_t bs = 4096;

TEST(cache_stress, readers_prefetch_eviction_and_a_writer_leave_nothing_pinned) {
    file_cache_config cfg;
    cfg.buffers = {.buffer_size = bs, .buffer_count = 48};  // far smaller than the files: evictions
    cfg.readahead_blocks = 4;
    cfg.mailbox_capacity = 64;  // small: posters also see a full mailbox
    cfg.fallback_workers = 2;
    auto made = file_cache::create(cfg);
    ASSERT_TRUE(made);
    auto& c = **made;

    constexpr int files = 3;
    std::vector<std::shared_ptr<memory_source>> sources;
    std::vector<std::shared_ptr<cached_file>> opened;
    for (int i = 0; i < files; ++i) {
        const std::uint64_t size = (40 + 13 * static_cast<std::uint64_t>(i)) * bs + 77;
        sources.push_back(std::make_shared<memory_source>(100 + static_cast<std::uint64_t>(i), size));
        opened.push_back(c.open(sources.back(), size));
    }
    std::atomic<int> corrupt{0};
    std::atomic<int> unexpected_errors{0};
    auto check = [&](const std::vector<read_loan>& loans, std::uint64_t seed) {
        for (const auto& l : loans) {
            if (!matches_pattern(seed, l.file_offset(), l.bytes())) {
                corrupt.fetch_add(1);
            }
        }
    };
    constexpr int threads = 6;
    constexpr int ops = 1500;
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919);
            std::vector<std::vector<read_loan>> held;  // some loans are kept a while
            for (int op = 0; op < ops; ++op) {
                const auto fi = static_cast<std::size_t>(rng() % files);
                auto& f = opened[fi];
                const std::uint64_t seed = 100 + fi;
                const std::uint64_t size = f->size();
                switch (rng() % 6) {
                    case 0: {  // fast path
                        auto l = c.try_loan(*f, rng() % (size / bs + 1));
                        if (l) {
                            if (!matches_pattern(seed, l->file_offset(), l->bytes())) {
                                corrupt.fetch_add(1);
                            }
                        }
                        break;
                    }
                    case 1:
                    case 2: {  // slow path, random range
                        const std::uint64_t off = rng() % size;
                        auto l = c.loan_read(*f, off, 1 + rng() % (3 * bs));
                        if (l) {
                            check(*l, seed);
                            if (rng() % 4 == 0 && held.size() < 3) {
                                held.push_back(std::move(*l));
                            }
                        } else if (l.error().code != errc::no_buffers) {
                            unexpected_errors.fetch_add(1);
                        }
                        break;
                    }
                    case 3: {  // a short sequential reader with read-ahead
                        reader rd(c, f);
                        if (!rd.seek(rng() % size)) {
                            unexpected_errors.fetch_add(1);
                        }
                        for (int i = 0; i < 4; ++i) {
                            auto l = rd.next(bs);
                            if (l) {
                                check(*l, seed);
                            } else if (l.error().code != errc::no_buffers) {
                                unexpected_errors.fetch_add(1);
                            }
                        }
                        break;
                    }
                    case 4: {  // async
                        std::atomic<bool> done{false};
                        c.loan_read_async(f, rng() % size, 1 + rng() % (2 * bs), [&](result<std::vector<read_loan>> r) {
                            if (r) {
                                check(*r, seed);
                            } else if (r.error().code != errc::no_buffers) {
                                unexpected_errors.fetch_add(1);
                            }
                            done.store(true, std::memory_order_release);
                            done.notify_one();
                        });
                        done.wait(false, std::memory_order_acquire);
                        break;
                    }
                    default: {  // prefetch notes
                        const std::uint64_t b = rng() % (size / bs + 1);
                        (void)c.post_will_need(*f, b, 1 + static_cast<std::uint32_t>(rng() % 4));
                        (void)c.post_done_with(*f, b, 1);
                        break;
                    }
                }
                if (!held.empty() && rng() % 3 == 0) {
                    held.erase(held.begin());
                }
            }
        });
    }
    // A load-and-play writer and two followers on a fourth file.
    auto mem = std::make_shared<memory_file>();
    auto w = c.create_writer(mem, mem);
    constexpr std::uint64_t written = 30 * bs + 5;
    std::vector<std::thread> followers;
    for (int r = 0; r < 2; ++r) {
        followers.emplace_back([&, f = w->file()] {
            reader rd(c, f);
            std::uint64_t at = 0;
            for (;;) {
                auto l = rd.next(bs);
                if (!l) {
                    if (l.error().code != errc::no_buffers) {
                        unexpected_errors.fetch_add(1);
                        return;
                    }
                    continue;
                }
                if (l->empty()) {
                    break;
                }
                check(*l, 999);
                for (const auto& x : *l) {
                    at += x.size();
                }
            }
            if (at != written) {
                unexpected_errors.fetch_add(1);
            }
        });
    }
    std::uint64_t at = 0;
    while (at < written) {
        auto loan = w->loan_write(std::min<std::uint64_t>(1000, written - at));
        if (!loan) {
            std::this_thread::yield();  // no_buffers under pressure: retry
            continue;
        }
        for (std::size_t i = 0; i < loan->data().size(); ++i) {
            loan->data()[i] = pattern_byte(999, at + i);
        }
        const auto n = loan->data().size();
        ASSERT_TRUE(std::move(*loan).commit(n));
        at += n;
    }
    ASSERT_TRUE(w->finish());
    for (auto& t : ts) {
        t.join();
    }
    for (auto& t : followers) {
        t.join();
    }
    c.quiesce();
    EXPECT_EQ(corrupt.load(), 0);
    EXPECT_EQ(unexpected_errors.load(), 0);
    const auto s = c.counters().snapshot();
    EXPECT_EQ(s.loans_out, 0U);
    EXPECT_EQ(s.write_loans_out, 0U);
    EXPECT_EQ(c.buffers().pinned_buffers(), 0U);
    // Counters add up: every block a source served is a disk read the cache counted (the written
    // file is read back when followers miss evicted blocks), and the writer's 30 full blocks plus
    // its tail reached the sink.
    std::uint64_t served = mem->reads();
    for (const auto& src : sources) {
        served += src->total_reads();
    }
    EXPECT_EQ(s.disk_reads, served);
    EXPECT_EQ(s.disk_writes, 31U);
    EXPECT_GT(s.evictions, 0U);
    EXPECT_GE(s.prefetch_posted, 1U);
    EXPECT_LE(s.prefetch_reads, s.disk_reads);
}

}  // namespace
}  // namespace datapump::cache
