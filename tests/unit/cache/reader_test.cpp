#include "datapump/cache/file_cache.hpp"
#include "support/memory_source.hpp"

#include <gtest/gtest.h>

namespace datapump::cache {
namespace {

using testing::matches_pattern;
using testing::memory_source;

constexpr std::size_t bs = 4096;

std::unique_ptr<file_cache> make(std::size_t count, std::uint32_t readahead) {
    file_cache_config cfg;
    cfg.buffers = {.buffer_size = bs, .buffer_count = count};
    cfg.readahead_blocks = readahead;
    auto c = file_cache::create(cfg);
    EXPECT_TRUE(c.has_value());
    return std::move(*c);
}

TEST(reader, readahead_keeps_the_reader_on_the_fast_path) {
    auto c = make(32, 4);
    auto src = std::make_shared<memory_source>(1, 16 * bs);
    auto f = c->open(src, 16 * bs);
    reader rd(*c, f);
    c->quiesce();  // the initial window (blocks 0-3) is read ahead
    EXPECT_EQ(c->counters().snapshot().prefetch_reads, 4U);
    std::uint64_t at = 0;
    for (int i = 0; i < 16; ++i) {
        const auto before = c->counters().snapshot();
        auto loans = rd.next(bs);
        ASSERT_TRUE(loans);
        ASSERT_EQ(loans->size(), 1U);
        EXPECT_TRUE(matches_pattern(1, at, (*loans)[0].bytes()));
        at += bs;
        // Every block was there before the reader asked: no fallback to a demand read.
        EXPECT_EQ(c->counters().snapshot().fallbacks, before.fallbacks) << "block " << i;
        c->quiesce();  // let read-ahead catch up before the next step (deterministic)
    }
    auto end = rd.next(bs);
    ASSERT_TRUE(end);
    EXPECT_TRUE(end->empty());
    EXPECT_EQ(src->total_reads(), 16U);
}

TEST(reader, pause_stops_reading_and_releases_readahead_then_play_resumes) {
    auto c = make(32, 4);
    auto src = std::make_shared<memory_source>(2, 32 * bs);
    auto f = c->open(src, 32 * bs);
    reader rd(*c, f);
    { auto l = rd.next(bs); ASSERT_TRUE(l); }
    c->quiesce();
    rd.set_pattern({.mode = play_mode::pause});
    auto paused = rd.next(bs);
    ASSERT_FALSE(paused);
    EXPECT_EQ(paused.error().code, errc::would_block);
    c->quiesce();
    const auto reads_while_paused = src->total_reads();
    c->quiesce();
    EXPECT_EQ(src->total_reads(), reads_while_paused);
    rd.set_pattern({.mode = play_mode::play});
    auto resumed = rd.next(bs);
    ASSERT_TRUE(resumed);
    EXPECT_TRUE(matches_pattern(2, bs, (*resumed)[0].bytes()));
}

TEST(reader, seek_reprimes_at_the_new_position) {
    auto c = make(32, 4);
    auto src = std::make_shared<memory_source>(3, 64 * bs);
    auto f = c->open(src, 64 * bs);
    reader rd(*c, f);
    ASSERT_TRUE(rd.seek(40 * bs + 5));
    c->quiesce();
    for (std::uint64_t b = 40; b < 44; ++b) {
        EXPECT_TRUE(c->try_loan(*f, b)) << b;  // primed ahead of the new position
    }
    auto l = rd.next(10);
    ASSERT_TRUE(l);
    EXPECT_EQ((*l)[0].file_offset(), 40 * bs + 5);
    EXPECT_TRUE(matches_pattern(3, 40 * bs + 5, (*l)[0].bytes()));
    auto bad = rd.seek(64 * bs + 1);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, errc::out_of_range);
}

TEST(reader, fast_forward_reads_every_kth_block_only) {
    auto c = make(64, 4);
    auto src = std::make_shared<memory_source>(4, 40 * bs);
    auto f = c->open(src, 40 * bs);
    reader rd(*c, f);
    rd.set_pattern({.mode = play_mode::play, .speed = 4});
    std::vector<std::uint64_t> offsets;
    for (;;) {
        auto l = rd.next(10 * bs);
        ASSERT_TRUE(l);
        if (l->empty()) {
            break;
        }
        ASSERT_EQ(l->size(), 1U);  // one whole block per stride
        offsets.push_back((*l)[0].file_offset());
        EXPECT_TRUE(matches_pattern(4, (*l)[0].file_offset(), (*l)[0].bytes()));
    }
    c->quiesce();
    const std::vector<std::uint64_t> want{0, 4 * bs, 8 * bs, 12 * bs, 16 * bs, 20 * bs, 24 * bs, 28 * bs, 32 * bs, 36 * bs};
    EXPECT_EQ(offsets, want);
    // Sparse: blocks between the strides were not read from storage (the initial window at speed
    // 1 read blocks 0-3 before the speed change).
    const auto reads = src->reads_per_offset();
    for (std::uint64_t b = 5; b < 40; ++b) {
        if (b % 4 != 0) {
            EXPECT_EQ(reads.count(b * bs), 0U) << "block " << b;
        }
    }
}

}  // namespace
}  // namespace datapump::cache
