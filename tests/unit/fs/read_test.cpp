// Byte-exact reads through the cache for every provider setup and every interesting file size,
// plus the fast path (lock_buffer), access patterns and the raw read_blocks contract.
#include "unit/fs/fs_fixture.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace datapump::test {
namespace {

class read_test : public fs_test {};

TEST_P(read_test, every_size_reads_back_byte_exact) {
    const std::size_t sizes[] = {0, 1, 4095, 4096, block - 1, block, block + 1, 3 * block + 123, 5 * block};
    std::uint32_t seed = 1;
    for (const std::size_t size : sizes) {
        const std::string name = "f" + std::to_string(size);
        const auto content = pattern(size, seed++);
        write_file(dir_.file(name), content);
        auto f = instance_.open(name);
        ASSERT_TRUE(f) << name << ": " << describe(f.error());
        auto view = f->cached();
        ASSERT_TRUE(view);
        EXPECT_EQ((*view)->size(), size);

        auto all = f->loan_read(0, size + 1000);  // clipped at the end of file
        ASSERT_TRUE(all) << name << ": " << describe(all.error());
        expect_loans(*all, content, 0, size);
        // An unaligned slice in the middle, across a block boundary when there is one.
        if (size > 10) {
            const std::uint64_t off = size / 3;
            const std::uint64_t len = size - off - 5;
            auto part = f->loan_read(off, len);
            ASSERT_TRUE(part);
            expect_loans(*part, content, off, len);
        }
        auto at_end = f->loan_read(size, 10);
        ASSERT_TRUE(at_end);
        EXPECT_TRUE(at_end->empty());
    }
    // Every loan was returned.
    EXPECT_EQ(cache_->counters().snapshot().loans_out, 0U);
}

TEST_P(read_test, second_read_hits_the_cache_without_a_disk_read) {
    const auto content = pattern(4 * block, 3);
    write_file(dir_.file("f"), content);
    auto f = std::move(*instance_.open("f"));
    { auto first = f.loan_read(0, content.size()); ASSERT_TRUE(first); }
    const auto before = cache_->counters().snapshot().disk_reads;
    auto again = f.loan_read(0, content.size());
    ASSERT_TRUE(again);
    expect_loans(*again, content, 0, content.size());
    EXPECT_EQ(cache_->counters().snapshot().disk_reads, before);
}

TEST_P(read_test, lock_buffer_is_the_fast_path) {
    const auto content = pattern(2 * block + 7, 4);
    write_file(dir_.file("f"), content);
    auto f = std::move(*instance_.open("f"));
    auto view = std::move(*f.cached());
    auto miss = f.lock_buffer(*view, 1);
    ASSERT_FALSE(miss);
    EXPECT_EQ(miss.error().code, errc::would_block);  // not cached: the caller goes slow
    { auto warm = f.loan_read(0, content.size()); ASSERT_TRUE(warm); }
    for (std::uint64_t b = 0; b < 3; ++b) {
        auto hit = f.lock_buffer(*view, b);
        ASSERT_TRUE(hit) << "block " << b << ": " << describe(hit.error());
        const std::size_t expect = b < 2 ? block : 7;
        ASSERT_EQ(hit->bytes().size(), expect);
        EXPECT_EQ(0, std::memcmp(hit->bytes().data(), content.data() + b * block, expect));
        f.unlock_buffer(std::move(*hit));
    }
    auto past = f.lock_buffer(*view, 3);
    ASSERT_FALSE(past);
    EXPECT_EQ(past.error().code, errc::out_of_range);
    EXPECT_EQ(cache_->counters().snapshot().loans_out, 0U);
}

TEST_P(read_test, access_patterns_are_forwarded) {
    write_file(dir_.file("f"), pattern(3 * block));
    auto f = std::move(*instance_.open("f"));
    EXPECT_TRUE(f.set_access_pattern({cache::play_mode::play, 1}, 0));
    EXPECT_TRUE(f.set_access_pattern({cache::play_mode::play, 4}, block));
    EXPECT_TRUE(f.set_access_pattern({cache::play_mode::pause, 1}, 2 * block));
    auto bad = f.set_access_pattern({cache::play_mode::play, 0}, 0);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, errc::invalid_argument);
}

TEST_P(read_test, raw_read_blocks_sets_every_outcome) {
    // Straight through the table, as the cache calls it: full blocks, the short last block, a
    // block past the end, and a file that is shorter than the size the caller believes.
    const auto content = pattern(2 * block + 100, 5);
    write_file(dir_.file("f"), content);
    const fs::provider_ops& ops = instance_.ops();
    auto h = ops.open(instance_.handle(), "f", fs::open_mode::read);
    ASSERT_TRUE(h);
    auto& arena = cache_->buffers().arena();
    std::vector<cache::block_read> reads(4);
    for (std::uint32_t i = 0; i < 4; ++i) {
        reads[i].offset = i * block;
        reads[i].dst = arena.data(60 + i);  // high buffers the tests' caches never reach
        reads[i].buffer_index = 60 + i;
    }
    ops.read_blocks(*h, content.size(), reads);
    ASSERT_TRUE(reads[0].outcome);
    EXPECT_EQ(*reads[0].outcome, block);
    ASSERT_TRUE(reads[2].outcome);
    EXPECT_EQ(*reads[2].outcome, 100U);
    EXPECT_EQ(0, std::memcmp(arena.data(62).data(), content.data() + 2 * block, 100));
    ASSERT_FALSE(reads[3].outcome);
    EXPECT_EQ(reads[3].outcome.error().code, errc::out_of_range);

    // The caller thinks the file is bigger than it is: the short block is a change.
    for (auto& r : reads) {
        r.outcome = std::unexpected(error{errc::io_error, 0, "not run"});
    }
    ops.read_blocks(*h, 3 * block, std::span(reads).first(3));
    ASSERT_TRUE(reads[1].outcome);
    ASSERT_FALSE(reads[2].outcome);
    EXPECT_EQ(reads[2].outcome.error().code, errc::file_changed);
    ops.close(*h);
}

// send_fd(): a descriptor that reads through the page cache, for sendfile (small files on the loan
// paths, --direct-min-size): the file's own, with O_DIRECT cleared for the direct provider; asked
// after the name was replaced, it still reads the version this file opened.
TEST_P(read_test, send_fd_reads_the_opened_version_through_the_page_cache) {
    write_file(dir_.file("f"), pattern(3 * block + 5, 7));
    auto f = std::move(*instance_.open("f"));
    write_file(dir_.file("f.new"), pattern(100, 8));
    ASSERT_EQ(0, ::rename(dir_.file("f.new").c_str(), dir_.file("f").c_str()));
    auto fd = f.send_fd();
    ASSERT_TRUE(fd) << describe(fd.error());
    EXPECT_EQ((::fcntl(*fd, F_GETFL) & O_DIRECT), 0) << "the page-cache descriptor is not O_DIRECT";
    std::vector<std::byte> back(3 * block + 5);
    ASSERT_EQ(static_cast<ssize_t>(back.size()), ::pread(*fd, back.data(), back.size(), 0));
    EXPECT_EQ(back, pattern(3 * block + 5, 7));
    auto again = f.send_fd();
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *fd);
}

INSTANTIATE_TEST_SUITE_P(providers, read_test, ::testing::ValuesIn(all_setups), setup_name);

}  // namespace
}  // namespace datapump::test
