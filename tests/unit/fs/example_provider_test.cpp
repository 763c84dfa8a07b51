// The third-party example provider: registered at run time with registry::add(), it serves
// loan_read through the cache byte-exact and its lock_buffer hook is the fast path.
#include "pattern_provider.hpp"

#include "unit/fs/fs_fixture.hpp"

namespace datapump::test {
namespace {

class example_provider : public ::testing::Test {
protected:
    void SetUp() override {
        auto c = cache::file_cache::create({.buffers = {.buffer_size = block, .buffer_count = 32}});
        ASSERT_TRUE(c);
        cache_ = std::move(*c);
        ASSERT_TRUE(providers_.add(pattern_fs::provider()));
    }
    std::unique_ptr<cache::file_cache> cache_;
    fs::registry providers_;
};

TEST_F(example_provider, registers_next_to_the_built_ins) {
    const auto names = providers_.names();
    EXPECT_NE(std::find(names.begin(), names.end(), "pattern"), names.end());
    auto dup = providers_.add(pattern_fs::provider());
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().code, errc::busy);
}

TEST_F(example_provider, serves_loan_read_through_the_cache) {
    auto inst = providers_.instantiate("pattern", {.root = "/", .cache = cache_.get()});
    ASSERT_TRUE(inst) << describe(inst.error());
    const std::uint64_t size = 3 * block + 999;
    auto f = inst->open("7/" + std::to_string(size));
    ASSERT_TRUE(f) << describe(f.error());
    EXPECT_EQ(f->info().size, size);

    auto loans = f->loan_read(100, size);
    ASSERT_TRUE(loans) << describe(loans.error());
    std::uint64_t at = 100;
    for (const auto& loan : *loans) {
        ASSERT_EQ(loan.file_offset(), at);
        for (std::size_t i = 0; i < loan.size(); ++i) {
            ASSERT_EQ(loan.bytes()[i], pattern_fs::pattern_byte(7, at + i)) << "at " << at + i;
        }
        at += loan.size();
    }
    EXPECT_EQ(at, size);
    EXPECT_EQ(cache_->counters().snapshot().disk_reads, 4U);

    // The provider's lock_buffer hook is what fs::file::lock_buffer calls.
    const auto locks = pattern_fs::lock_buffer_calls();
    const auto unlocks = pattern_fs::unlock_buffer_calls();
    auto view = std::move(*f->cached());
    auto hit = f->lock_buffer(*view, 1);
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->bytes()[0], pattern_fs::pattern_byte(7, block));
    f->unlock_buffer(std::move(*hit));
    EXPECT_EQ(pattern_fs::lock_buffer_calls(), locks + 1);
    EXPECT_EQ(pattern_fs::unlock_buffer_calls(), unlocks + 1);
    EXPECT_TRUE(f->set_access_pattern({cache::play_mode::play, 2}, 0));
}

TEST_F(example_provider, errors_and_use_counts) {
    auto inst = std::move(*providers_.instantiate("pattern", {.root = "/", .cache = cache_.get()}));
    auto bad = inst.open("not-a-pattern");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, errc::not_found);
    auto ro = inst.open("1/10", fs::open_mode::create);
    ASSERT_FALSE(ro);
    EXPECT_EQ(ro.error().code, errc::unsupported);
    auto range = inst.validate("1/10", {5, 6});
    ASSERT_FALSE(range);
    EXPECT_EQ(range.error().code, errc::out_of_range);
    auto no_locks = std::move(*inst.open("1/10"));
    auto e = no_locks.lock_range({0, 1}, fs::lock_kind::shared);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, errc::unsupported);

    auto rm = providers_.remove("pattern");
    ASSERT_FALSE(rm);
    EXPECT_EQ(rm.error().code, errc::busy);
    auto busy = inst.terminate();
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, errc::busy);
    { auto drop = std::move(no_locks); }
    EXPECT_TRUE(inst.terminate());
    EXPECT_TRUE(providers_.remove("pattern"));
}

}  // namespace
}  // namespace datapump::test
