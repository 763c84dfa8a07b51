#include "datapump/cache/file_cache.hpp"
#include "support/memory_source.hpp"

#include <gtest/gtest.h>

#include <future>
#include <thread>

namespace datapump::cache {
namespace {

using testing::matches_pattern;
using testing::memory_source;

constexpr std::size_t bs = 4096;

std::unique_ptr<file_cache> make(std::size_t count = 16, std::uint32_t readahead = 4) {
    file_cache_config cfg;
    cfg.buffers = {.buffer_size = bs, .buffer_count = count};
    cfg.readahead_blocks = readahead;
    auto c = file_cache::create(cfg);
    EXPECT_TRUE(c.has_value());
    return std::move(*c);
}

std::uint64_t total(const std::vector<read_loan>& loans) {
    std::uint64_t n = 0;
    for (const auto& l : loans) {
        n += l.size();
    }
    return n;
}

TEST(file_cache, loan_read_is_byte_exact_for_every_alignment) {
    for (const std::uint64_t size : {std::uint64_t{1}, bs - 1, bs, bs + 1, 5 * bs + 123}) {
        auto c = make();
        auto src = std::make_shared<memory_source>(size, size);
        auto f = c->open(src, size);
        for (const auto& [off, len] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
                 {0, size}, {0, 1}, {size - 1, 1}, {size / 2, size}, {0, 100 * bs}}) {
            auto loans = c->loan_read(*f, off, len);
            ASSERT_TRUE(loans) << describe(loans.error());
            EXPECT_EQ(total(*loans), std::min(len, size - off)) << "size " << size << " off " << off;
            std::uint64_t at = off;
            for (const auto& l : *loans) {
                EXPECT_EQ(l.file_offset(), at);
                EXPECT_TRUE(matches_pattern(size, at, l.bytes()));
                at += l.size();
            }
        }
        EXPECT_EQ(c->counters().snapshot().loans_out, 0U);
        EXPECT_EQ(c->buffers().pinned_buffers(), 0U);
        // Each block was read once, however often it was lent.
        for (const auto& [offset, reads] : src->reads_per_offset()) {
            EXPECT_EQ(reads, 1) << "offset " << offset;
        }
    }
}

TEST(file_cache, end_of_file_and_past_the_end) {
    auto c = make();
    auto f = c->open(std::make_shared<memory_source>(1, 10), 10);
    auto at_end = c->loan_read(*f, 10, 5);
    ASSERT_TRUE(at_end);
    EXPECT_TRUE(at_end->empty());
    auto past = c->loan_read(*f, 11, 5);
    ASSERT_FALSE(past);
    EXPECT_EQ(past.error().code, errc::out_of_range);
    auto fast_past = c->try_loan(*f, 1);
    ASSERT_FALSE(fast_past);
    EXPECT_EQ(fast_past.error().code, errc::out_of_range);
}

TEST(file_cache, fast_path_misses_then_hits_after_a_fill) {
    auto c = make();
    auto f = c->open(std::make_shared<memory_source>(2, 3 * bs), 3 * bs);
    auto miss = c->try_loan(*f, 1);
    ASSERT_FALSE(miss);
    EXPECT_EQ(miss.error().code, errc::would_block);
    { auto l = c->loan_read(*f, bs, bs); ASSERT_TRUE(l); }
    auto hit = c->try_loan(*f, 1);
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->size(), bs);
    EXPECT_TRUE(matches_pattern(2, bs, hit->bytes()));
}

TEST(file_cache, loans_keep_their_bytes_when_the_file_shrinks_and_later_reads_fail_clearly) {
    auto c = make(4);
    auto src = std::make_shared<memory_source>(3, 4 * bs);
    auto f = c->open(src, 4 * bs);
    auto held = c->loan_read(*f, 0, bs);
    ASSERT_TRUE(held);
    src->shrink_to(bs / 2);  // the file is truncated on disk while a loan is out
    // Blocks not cached yet now come back short: a clear error, no pin leaked.
    auto later = c->loan_read(*f, 2 * bs, bs);
    ASSERT_FALSE(later);
    EXPECT_EQ(later.error().code, errc::file_changed);
    EXPECT_TRUE(matches_pattern(3, 0, (*held)[0].bytes()));  // the loan still reads the old bytes
    held->clear();
    EXPECT_EQ(c->buffers().pinned_buffers(), 0U);
}

TEST(file_cache, read_errors_propagate_and_release_the_buffer) {
    auto c = make(4);
    auto src = std::make_shared<memory_source>(4, 4 * bs);
    src->fail_at(2 * bs);
    auto f = c->open(src, 4 * bs);
    auto r = c->loan_read(*f, 0, 4 * bs);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::io_error);
    EXPECT_EQ(r.error().sys, EIO);
    EXPECT_EQ(c->buffers().pinned_buffers(), 0U);
    src->fail_at(-1);
    auto again = c->loan_read(*f, 0, 4 * bs);  // the failed block was not left half-cached
    ASSERT_TRUE(again);
    EXPECT_EQ(total(*again), 4 * bs);
}

TEST(file_cache, more_than_the_arena_fails_with_no_buffers_without_leaking) {
    auto c = make(4);
    auto f = c->open(std::make_shared<memory_source>(5, 8 * bs), 8 * bs);
    auto r = c->loan_read(*f, 0, 8 * bs);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::no_buffers);
    EXPECT_EQ(c->buffers().pinned_buffers(), 0U);
}

TEST(file_cache, async_all_hits_complete_inline) {
    auto c = make();
    auto f = c->open(std::make_shared<memory_source>(6, 2 * bs), 2 * bs);
    { auto warm = c->loan_read(*f, 0, 2 * bs); ASSERT_TRUE(warm); }
    const auto before = c->counters().snapshot();
    bool called = false;
    const auto caller = std::this_thread::get_id();
    c->loan_read_async(f, 10, bs, [&](result<std::vector<read_loan>> r) {
        called = true;
        EXPECT_EQ(std::this_thread::get_id(), caller);
        ASSERT_TRUE(r);
        EXPECT_EQ(total(*r), bs);
    });
    EXPECT_TRUE(called);
    EXPECT_EQ(c->counters().snapshot().fallbacks, before.fallbacks);
}

TEST(file_cache, async_fallback_reads_only_what_the_fast_path_left_undone) {
    auto c = make();
    auto src = std::make_shared<memory_source>(7, 6 * bs);
    auto f = c->open(src, 6 * bs);
    // Blocks 0, 2 and 4 cached; 1, 3 and 5 are not.
    for (const std::uint64_t b : {0ULL, 2ULL, 4ULL}) {
        auto l = c->loan_read(*f, b * bs, 1);
        ASSERT_TRUE(l);
    }
    ASSERT_EQ(src->total_reads(), 3U);
    const auto before = c->counters().snapshot();
    std::promise<result<std::vector<read_loan>>> done;
    const auto caller = std::this_thread::get_id();
    std::thread::id completer;
    c->loan_read_async(f, 0, 6 * bs, [&](result<std::vector<read_loan>> r) {
        completer = std::this_thread::get_id();
        done.set_value(std::move(r));
    });
    auto r = done.get_future().get();
    ASSERT_TRUE(r);
    EXPECT_NE(completer, caller);  // completed by the fallback worker
    std::uint64_t at = 0;
    for (const auto& l : *r) {
        EXPECT_TRUE(matches_pattern(7, at, l.bytes()));
        at += l.size();
    }
    EXPECT_EQ(at, 6 * bs);
    const auto after = c->counters().snapshot();
    EXPECT_EQ(after.fallbacks - before.fallbacks, 1U);
    EXPECT_EQ(after.disk_reads - before.disk_reads, 3U);  // only 1, 3 and 5
    EXPECT_EQ(src->total_reads(), 6U);
    for (const auto& [offset, reads] : src->reads_per_offset()) {
        EXPECT_EQ(reads, 1) << offset;
    }
}

TEST(file_cache, prefetch_notes_make_the_fast_path_hit) {
    auto c = make(16);
    auto src = std::make_shared<memory_source>(8, 8 * bs);
    auto f = c->open(src, 8 * bs);
    ASSERT_TRUE(c->post_will_need(*f, 0, 8));
    c->quiesce();
    EXPECT_EQ(c->counters().snapshot().prefetch_reads, 8U);
    for (std::uint64_t b = 0; b < 8; ++b) {
        auto hit = c->try_loan(*f, b);
        ASSERT_TRUE(hit) << b;
        EXPECT_TRUE(matches_pattern(8, b * bs, hit->bytes()));
    }
    // A second note for the same blocks reads nothing more.
    ASSERT_TRUE(c->post_will_need(*f, 0, 8));
    c->quiesce();
    EXPECT_EQ(src->total_reads(), 8U);
    // Notes past the end are harmless.
    ASSERT_TRUE(c->post_will_need(*f, 100, 4));
    c->quiesce();
    EXPECT_EQ(src->total_reads(), 8U);
}

TEST(file_cache, a_reopen_under_the_old_id_finds_the_blocks_still_cached) {
    auto c = make(16);
    auto src = std::make_shared<memory_source>(10, 4 * bs);
    auto first = c->open(src, 4 * bs);
    const std::uint64_t id = first->id();
    { auto l = c->loan_read(*first, 0, 4 * bs); ASSERT_TRUE(l); }
    c->close(*first);
    first.reset();
    auto again = c->reopen(id, src, 4 * bs);
    EXPECT_EQ(again->id(), id);
    for (std::uint64_t b = 0; b < 4; ++b) {
        auto hit = c->try_loan(*again, b);
        ASSERT_TRUE(hit) << b;
        EXPECT_TRUE(matches_pattern(10, b * bs, hit->bytes()));
    }
    EXPECT_EQ(src->total_reads(), 4U);
    // An id the cache never gave is not taken on trust.
    auto other = c->reopen(id + 1000, src, 4 * bs);
    EXPECT_NE(other->id(), id + 1000);
    EXPECT_NE(other->id(), id);
}

TEST(file_cache, closing_the_old_file_keeps_the_reopen_in_the_prefetch_table) {
    auto c = make(16);
    auto src = std::make_shared<memory_source>(11, 8 * bs);
    auto old_file = c->open(src, 8 * bs);
    auto reopened = c->reopen(old_file->id(), src, 8 * bs);
    c->close(*old_file);  // the old holder closes after the reopen registered
    ASSERT_TRUE(c->post_will_need(*reopened, 0, 8));
    c->quiesce();
    EXPECT_EQ(c->counters().snapshot().prefetch_reads, 8U);
    EXPECT_TRUE(c->try_loan(*reopened, 7));
}

// With prefetch_on_workers a will-need note is read by a worker, after any demand read. A demand
// read of a block such a queued note covers must not wait for the note (one worker: it would wait
// for itself). The source's delay holds the worker on a first demand read while the note comes.
TEST(file_cache, read_ahead_on_workers_never_holds_up_a_demand_read) {
    file_cache_config cfg;
    cfg.buffers = {.buffer_size = bs, .buffer_count = 32};
    cfg.readahead_blocks = 0;
    cfg.fallback_workers = 1;
    cfg.prefetch_on_workers = true;
    auto c = std::move(*file_cache::create(cfg));
    auto src = std::make_shared<memory_source>(12, 32 * bs);
    auto f = c->open(src, 32 * bs);
    src->set_delay_us(200000);
    auto first = std::make_shared<std::promise<bool>>();
    c->loan_read_async(f, 20 * bs, bs, [first](result<std::vector<read_loan>> r) { first->set_value(r.has_value()); });
    ASSERT_TRUE(c->post_will_need(*f, 0, 8));
    auto second = std::make_shared<std::promise<bool>>();
    auto done = second->get_future();
    c->loan_read_async(f, 0, bs, [second](result<std::vector<read_loan>> r) {
        second->set_value(r.has_value() && r->size() == 1 && matches_pattern(12, 0, r->front().bytes()));
    });
    ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    EXPECT_TRUE(done.get());
    src->set_delay_us(0);
    c->quiesce();
    for (std::uint64_t b = 0; b < 8; ++b) {
        EXPECT_TRUE(c->try_loan(*f, b)) << b;  // the note's blocks were read ahead
    }
    for (const auto& [offset, reads] : src->reads_per_offset()) {
        EXPECT_EQ(reads, 1) << "offset " << offset;
    }
}

TEST(file_cache, done_with_notes_make_blocks_first_to_go) {
    auto c = make(4);
    auto f = c->open(std::make_shared<memory_source>(9, 8 * bs), 8 * bs);
    ASSERT_TRUE(c->post_will_need(*f, 0, 4));
    c->quiesce();
    ASSERT_TRUE(c->post_done_with(*f, 0, 1));
    c->quiesce();
    { auto l = c->loan_read(*f, 4 * bs, 1); ASSERT_TRUE(l); }  // needs one buffer: evicts block 0
    EXPECT_FALSE(c->try_loan(*f, 0));
    EXPECT_TRUE(c->try_loan(*f, 1));
    EXPECT_EQ(c->counters().snapshot().evictions, 1U);
}

TEST(file_cache, concurrent_readers_cause_one_disk_read_per_block) {
    constexpr std::uint64_t blocks = 64;
    auto c = make(blocks + 8, 8);
    auto src = std::make_shared<memory_source>(10, blocks * bs);
    src->set_delay_us(200);  // slow disk: readers overlap on the same blocks
    auto f = c->open(src, blocks * bs);
    constexpr int readers = 8;
    std::vector<std::thread> ts;
    std::atomic<int> bad{0};
    for (int r = 0; r < readers; ++r) {
        ts.emplace_back([&] {
            reader rd(*c, f);
            for (;;) {
                auto loans = rd.next(3 * bs + 17);
                ASSERT_TRUE(loans) << describe(loans.error());
                if (loans->empty()) {
                    break;
                }
                for (const auto& l : *loans) {
                    if (!matches_pattern(10, l.file_offset(), l.bytes())) {
                        bad.fetch_add(1);
                    }
                }
            }
            EXPECT_EQ(rd.position(), blocks * bs);
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    c->quiesce();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(src->total_reads(), blocks);
    for (const auto& [offset, reads] : src->reads_per_offset()) {
        EXPECT_EQ(reads, 1) << "offset " << offset;
    }
    const auto s = c->counters().snapshot();
    EXPECT_EQ(s.disk_reads, blocks);
    EXPECT_EQ(s.disk_read_bytes, blocks * bs);
    EXPECT_EQ(s.loans_out, 0U);
    EXPECT_EQ(c->buffers().pinned_buffers(), 0U);
}

}  // namespace
}  // namespace datapump::cache
