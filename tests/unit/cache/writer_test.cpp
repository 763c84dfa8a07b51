#include "datapump/cache/file_cache.hpp"
#include "support/memory_source.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>

namespace datapump::cache {
namespace {

using testing::matches_pattern;
using testing::memory_file;
using testing::pattern_byte;

constexpr std::size_t bs = 4096;

std::unique_ptr<file_cache> make(std::size_t count = 8) {
    file_cache_config cfg;
    cfg.buffers = {.buffer_size = bs, .buffer_count = count};
    auto c = file_cache::create(cfg);
    EXPECT_TRUE(c.has_value());
    return std::move(*c);
}

// Writes `n` pattern bytes through loans of at most `chunk`.
result<void> write_pattern(writer& w, std::uint64_t seed, std::uint64_t n, std::size_t chunk) {
    std::uint64_t at = w.committed();
    while (at < n) {
        auto loan = w.loan_write(std::min<std::uint64_t>(chunk, n - at));
        if (!loan) {
            return std::unexpected(loan.error());
        }
        auto space = loan->data();
        for (std::size_t i = 0; i < space.size(); ++i) {
            space[i] = pattern_byte(seed, at + i);
        }
        const auto len = space.size();
        if (auto r = std::move(*loan).commit(len); !r) {
            return r;
        }
        at += len;
    }
    return {};
}

TEST(writer, commits_are_visible_to_readers_and_reach_the_sink) {
    auto c = make();
    auto file = std::make_shared<memory_file>();
    auto w = c->create_writer(file, file);
    ASSERT_TRUE(write_pattern(*w, 1, bs + 100, 1000));
    EXPECT_EQ(w->file()->size(), bs + 100);
    auto loans = c->loan_read(*w->file(), 0, 10 * bs);
    ASSERT_TRUE(loans);
    std::uint64_t got = 0;
    for (const auto& l : *loans) {
        EXPECT_TRUE(matches_pattern(1, l.file_offset(), l.bytes()));
        got += l.size();
    }
    EXPECT_EQ(got, bs + 100);
    loans->clear();
    EXPECT_EQ(file->writes(), 1);  // the full first block; the tail waits for finish
    ASSERT_TRUE(w->finish());
    EXPECT_TRUE(file->finished());
    const auto bytes = file->contents();
    ASSERT_EQ(bytes.size(), bs + 100);
    EXPECT_TRUE(matches_pattern(1, 0, bytes));
    EXPECT_EQ(w->file()->status(), file_status::complete);
    w.reset();
    EXPECT_EQ(c->buffers().pinned_buffers(), 0U);
    EXPECT_EQ(c->counters().snapshot().write_loans_out, 0U);
}

TEST(writer, loan_rules) {
    auto c = make();
    auto file = std::make_shared<memory_file>();
    auto w = c->create_writer(file, file);
    auto a = w->loan_write(10);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->data().size(), 10U);
    auto b = w->loan_write(10);
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error().code, errc::invalid_argument);
    EXPECT_EQ(w->finish().error().code, errc::invalid_argument);  // a loan is still out
    auto too_much = std::move(*a).commit(11);
    ASSERT_FALSE(too_much);
    *a = write_loan{};  // dropping the loan uncommitted publishes nothing
    EXPECT_EQ(w->committed(), 0U);
    auto big = w->loan_write(100 * bs);
    ASSERT_TRUE(big);
    EXPECT_EQ(big->data().size(), bs);  // never across a block boundary
    ASSERT_TRUE(std::move(*big).commit(bs));
    ASSERT_TRUE(w->finish());
    EXPECT_EQ(w->loan_write(1).error().code, errc::closed);
}

TEST(writer, reader_at_the_frontier_waits_and_follows_to_the_end) {
    auto c = make(8);
    auto file = std::make_shared<memory_file>();
    auto w = c->create_writer(file, file);
    constexpr std::uint64_t total = 20 * bs + 321;  // more than the arena: old blocks are evicted
    std::vector<std::byte> seen;
    std::thread follower([&, f = w->file()] {
        reader rd(*c, f);
        for (;;) {
            auto loans = rd.next(bs);
            ASSERT_TRUE(loans) << describe(loans.error());
            if (loans->empty()) {
                break;
            }
            for (const auto& l : *loans) {
                seen.insert(seen.end(), l.bytes().begin(), l.bytes().end());
            }
        }
    });
    std::uint64_t at = 0;
    while (at < total) {
        const std::uint64_t step = std::min<std::uint64_t>(777, total - at);
        ASSERT_TRUE(write_pattern(*w, 2, at + step, 777));
        at += step;
        std::this_thread::sleep_for(std::chrono::microseconds(300));  // a slow writer
    }
    ASSERT_TRUE(w->finish());
    follower.join();
    ASSERT_EQ(seen.size(), total);
    EXPECT_TRUE(matches_pattern(2, 0, seen));
    EXPECT_GT(c->counters().snapshot().waits, 0U);  // the reader did wait at the frontier
}

TEST(writer, readers_wake_with_an_error_when_the_writer_fails) {
    auto c = make();
    auto file = std::make_shared<memory_file>();
    auto w = c->create_writer(file, file);
    ASSERT_TRUE(write_pattern(*w, 3, 100, 100));
    auto f = w->file();
    std::thread follower([&] {
        auto first = c->loan_read(*f, 0, 1000);
        ASSERT_TRUE(first);
        auto at_frontier = c->loan_read(*f, 100, 1000);  // blocks until the writer gives up
        ASSERT_FALSE(at_frontier);
        EXPECT_EQ(at_frontier.error().code, errc::io_error);
        EXPECT_EQ(at_frontier.error().sys, ENOSPC);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    w->fail(error{errc::io_error, ENOSPC, "test: disk full"});
    follower.join();
    EXPECT_EQ(f->status(), file_status::failed);
}

TEST(writer, sink_failure_fails_the_file_and_dropped_writer_fails_it_too) {
    auto c = make();
    auto file = std::make_shared<memory_file>();
    file->fail_writes();
    auto w = c->create_writer(file, file);
    auto r = write_pattern(*w, 4, bs, bs);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().sys, ENOSPC);
    EXPECT_EQ(w->file()->status(), file_status::failed);

    auto other = std::make_shared<memory_file>();
    auto w2 = c->create_writer(other, other);
    auto f2 = w2->file();
    w2.reset();
    EXPECT_EQ(f2->status(), file_status::failed);
    auto read = c->loan_read(*f2, 0, 1);
    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().code, errc::writer_failed);
    w.reset();
    EXPECT_EQ(c->buffers().pinned_buffers(), 0U);
}

}  // namespace
}  // namespace datapump::cache
