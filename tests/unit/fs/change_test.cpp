// Files that change under the engine: loans keep their bytes, later reads fail clearly, and the
// change watcher replaces the cache view (new id) or marks the file gone.
#include "unit/fs/fs_fixture.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

namespace datapump::test {
namespace {

class change_test : public fs_test {
protected:
    void SetUp() override {
        fs_test::SetUp();
        content_ = pattern(4 * block, 21);
        write_file(dir_.file("f"), content_);
        auto f = instance_.open("f");
        ASSERT_TRUE(f) << describe(f.error());
        file_.emplace(std::move(*f));
    }
    void TearDown() override {
        file_.reset();
        fs_test::TearDown();
    }
    // Waits (bounded) until the watcher has handled `n` changes.
    [[nodiscard]] bool changes_reach(std::uint64_t n) const {
        return wait_for([&] { return file_->changes() >= n; });
    }

    std::vector<std::byte> content_;
    std::optional<fs::file> file_;
};

TEST_P(change_test, shrink_during_a_loan_keeps_the_loan_and_fails_later_reads) {
    auto view = std::move(*file_->cached());
    auto loans = file_->loan_read(0, 2 * block);  // blocks 0 and 1, pinned
    ASSERT_TRUE(loans);
    ASSERT_EQ(0, ::truncate(dir_.file("f").c_str(), static_cast<off_t>(block + 10)));

    // A block of the old view that was never cached: the file no longer has it.
    auto late = cache_->loan_read(*view, 3 * block, 100);
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code, errc::file_changed) << describe(late.error());
    // The loans still hold the bytes they were given.
    expect_loans(*loans, content_, 0, 2 * block);

    ASSERT_TRUE(changes_reach(1));
    EXPECT_NE(file_->change_bits() & fs::change_truncated, 0U);
    auto fresh = file_->cached();
    ASSERT_TRUE(fresh);
    EXPECT_NE((*fresh)->id(), view->id());  // a new cache id: old blocks are never served
    EXPECT_EQ((*fresh)->size(), block + 10);
    EXPECT_EQ(file_->info().size, block + 10);
    auto now = file_->loan_read(0, 4 * block);
    ASSERT_TRUE(now);
    expect_loans(*now, content_, 0, block + 10);
    auto past = file_->loan_read(2 * block, 1);
    ASSERT_FALSE(past);
    EXPECT_EQ(past.error().code, errc::out_of_range);
}

// An unlinked file keeps its bytes while open: the view opened before the deletion reads on
// (a reader of a file an upload replaced finishes on the old version); new opens fail.
TEST_P(change_test, delete_during_a_loan_keeps_the_view_readable_and_fails_new_opens) {
    auto view = std::move(*file_->cached());
    auto loans = file_->loan_read(0, block);
    ASSERT_TRUE(loans);
    ASSERT_EQ(0, ::unlink(dir_.file("f").c_str()));

    auto late = cache_->loan_read(*view, 2 * block, 10);
    ASSERT_TRUE(late) << describe(late.error());
    expect_loans(*late, content_, 2 * block, 10);
    expect_loans(*loans, content_, 0, block);

    ASSERT_TRUE(changes_reach(1));
    EXPECT_NE(file_->change_bits() & fs::change_deleted, 0U);
    auto gone = file_->cached();
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, errc::file_changed);
    auto read = file_->loan_read(0, 10);
    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().code, errc::file_changed);
    // Blocks cached before the deletion stay readable through the old view: a loan of bytes
    // that were consistent when read, never a crash.
    auto old = cache_->loan_read(*view, 0, 10);
    ASSERT_TRUE(old);
    expect_loans(*old, content_, 0, 10);
}

TEST_P(change_test, watcher_reports_a_write_and_serves_the_new_bytes) {
    auto before = std::move(*file_->cached());
    { auto warm = file_->loan_read(0, block); ASSERT_TRUE(warm); }
    std::atomic<std::uint32_t> told{0};
    file_->on_change([&told](std::uint32_t bits) { told.fetch_or(bits); });

    auto changed = content_;
    for (std::size_t i = 0; i < 100; ++i) {
        changed[i] = std::byte{0xAB};
    }
    {
        const int fd = ::open(dir_.file("f").c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::pwrite(fd, changed.data(), 100, 0), 100);
        ::close(fd);
    }
    ASSERT_TRUE(changes_reach(1));
    EXPECT_TRUE(wait_for([&] { return (told.load() & fs::change_modified) != 0; }));
    EXPECT_NE(file_->change_bits() & fs::change_modified, 0U);
    EXPECT_EQ(file_->change_bits() & fs::change_truncated, 0U);
    auto after = std::move(*file_->cached());
    EXPECT_NE(after->id(), before->id());
    auto loans = file_->loan_read(0, 200);
    ASSERT_TRUE(loans);
    expect_loans(*loans, changed, 0, 200);
}

TEST_P(change_test, watcher_reports_a_truncate) {
    ASSERT_EQ(0, ::truncate(dir_.file("f").c_str(), 0));
    ASSERT_TRUE(changes_reach(1));
    EXPECT_NE(file_->change_bits() & fs::change_truncated, 0U);
    EXPECT_EQ((*file_->cached())->size(), 0U);
}

TEST_P(change_test, watcher_reports_an_unlink) {
    ASSERT_EQ(0, ::unlink(dir_.file("f").c_str()));
    ASSERT_TRUE(changes_reach(1));
    EXPECT_NE(file_->change_bits() & fs::change_deleted, 0U);
}

TEST_P(change_test, watcher_reports_a_rename_and_keeps_the_view) {
    auto before = std::move(*file_->cached());
    std::filesystem::rename(dir_.path() / "f", dir_.path() / "g");
    ASSERT_TRUE(changes_reach(1));
    EXPECT_NE(file_->change_bits() & fs::change_renamed, 0U);
    // Same bytes under another name: the view (and its cached blocks) stay.
    EXPECT_EQ((*file_->cached())->id(), before->id());
}

TEST_P(change_test, two_opens_of_one_file_are_both_told_and_unwatch_is_clean) {
    auto second = instance_.open("f");
    ASSERT_TRUE(second);
    ASSERT_EQ(0, ::truncate(dir_.file("f").c_str(), 5));
    ASSERT_TRUE(changes_reach(1));
    ASSERT_TRUE(wait_for([&] { return second->changes() >= 1; }));
    // Closing one open leaves the other watched.
    { auto drop = std::move(*second); }
    ASSERT_EQ(0, ::truncate(dir_.file("f").c_str(), 2));
    ASSERT_TRUE(changes_reach(2));
    EXPECT_EQ((*file_->cached())->size(), 2U);
}

// Many files open at once (an open-file cache keeps thousands): closing most of them in a
// scrambled order leaves the rest watched, each told of its own change only.
TEST_P(change_test, many_open_files_closed_out_of_order_leave_the_rest_watched) {
    constexpr int n = 300;
    std::vector<std::optional<fs::file>> files(n);
    for (int i = 0; i < n; ++i) {
        const std::string name = "m" + std::to_string(i);
        write_file(dir_.file(name), pattern(100, 1));
        auto f = instance_.open(name);
        ASSERT_TRUE(f) << describe(f.error());
        files[static_cast<std::size_t>(i)].emplace(std::move(*f));
    }
    for (int k = 0; k < n; ++k) {
        const int i = (k * 7) % n;  // 7 and 300 are coprime: every index once
        if (i % 50 != 0) {
            files[static_cast<std::size_t>(i)].reset();
        }
    }
    for (int i = 0; i < n; i += 50) {
        ASSERT_EQ(0, ::truncate(dir_.file("m" + std::to_string(i)).c_str(), 10));
    }
    for (int i = 0; i < n; i += 50) {
        const auto& f = files[static_cast<std::size_t>(i)];
        ASSERT_TRUE(wait_for([&] { return f->changes() >= 1; })) << "m" << i;
        EXPECT_NE(f->change_bits() & fs::change_truncated, 0U) << "m" << i;
    }
    EXPECT_EQ(file_->changes(), 0U);  // "f" was not touched
}

TEST_P(change_test, read_opens_share_the_view_until_the_file_changes) {
    auto second = instance_.open("f");
    ASSERT_TRUE(second);
    const auto shared = std::move(*file_->cached());
    EXPECT_EQ((*second->cached())->id(), shared->id());  // one copy of the blocks for both
    {
        const int fd = ::open(dir_.file("f").c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::pwrite(fd, "x", 1, 0), 1);
        ::close(fd);
    }
    ASSERT_TRUE(changes_reach(1));
    ASSERT_TRUE(wait_for([&] { return second->changes() >= 1; }));
    auto third = instance_.open("f");
    ASSERT_TRUE(third);
    EXPECT_NE((*third->cached())->id(), shared->id());  // never the stale view
    auto loans = third->loan_read(0, 1);
    ASSERT_TRUE(loans);
    ASSERT_EQ(loans->size(), 1U);
    EXPECT_EQ(loans->front().bytes()[0], std::byte{'x'});
}

TEST_P(change_test, a_later_open_of_the_unchanged_file_finds_its_blocks_still_cached) {
    const std::uint64_t id = (*file_->cached())->id();
    { auto l = file_->loan_read(0, 4 * block); ASSERT_TRUE(l); }
    file_.reset();  // no one holds the file now
    cache_->quiesce();
    const auto reads = cache_->counters().snapshot().disk_reads;
    auto again = instance_.open("f");
    ASSERT_TRUE(again);
    EXPECT_EQ((*again->cached())->id(), id);
    auto loans = again->loan_read(0, 4 * block);
    ASSERT_TRUE(loans);
    EXPECT_EQ(cache_->counters().snapshot().disk_reads, reads);  // served from the cache
    std::uint64_t at = 0;
    for (const auto& l : *loans) {
        EXPECT_TRUE(std::equal(l.bytes().begin(), l.bytes().end(), content_.begin() + static_cast<std::ptrdiff_t>(at)));
        at += l.size();
    }
    EXPECT_EQ(at, 4 * block);
}

TEST_P(change_test, a_file_changed_while_closed_gets_a_new_id) {
    const std::uint64_t id = (*file_->cached())->id();
    { auto l = file_->loan_read(0, block); ASSERT_TRUE(l); }
    file_.reset();
    write_file(dir_.file("f"), pattern(3 * block, 22));  // new size, new mtime
    auto again = instance_.open("f");
    ASSERT_TRUE(again);
    EXPECT_NE((*again->cached())->id(), id);
    auto loans = again->loan_read(0, block);
    ASSERT_TRUE(loans);
    const auto fresh = pattern(3 * block, 22);
    EXPECT_TRUE(std::equal(loans->front().bytes().begin(), loans->front().bytes().end(), fresh.begin()));
}

INSTANTIATE_TEST_SUITE_P(providers, change_test, ::testing::ValuesIn(all_setups), setup_name);

}  // namespace
}  // namespace datapump::test
