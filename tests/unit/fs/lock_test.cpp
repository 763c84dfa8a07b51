// Byte-range locks: OFD locks per open, so two opens in one process conflict like two processes.
#include "unit/fs/fs_fixture.hpp"

namespace datapump::test {
namespace {

class lock_test : public fs_test {
protected:
    void SetUp() override {
        fs_test::SetUp();
        write_file(dir_.file("f"), pattern(4 * block));
    }
};

TEST_P(lock_test, shared_locks_coexist) {
    auto a = std::move(*instance_.open("f"));
    auto b = std::move(*instance_.open("f"));
    EXPECT_TRUE(a.lock_range({0, 1000}, fs::lock_kind::shared));
    EXPECT_TRUE(b.lock_range({500, 1000}, fs::lock_kind::shared));
}

TEST_P(lock_test, exclusive_conflicts_with_shared_between_two_opens) {
    auto reader = std::move(*instance_.open("f"));
    auto writer = std::move(*instance_.open("f", fs::open_mode::write));
    ASSERT_TRUE(reader.lock_range({0, block}, fs::lock_kind::shared));

    auto conflict = writer.lock_range({block - 1, 10}, fs::lock_kind::exclusive);
    ASSERT_FALSE(conflict);
    EXPECT_EQ(conflict.error().code, errc::busy);
    // Disjoint ranges do not conflict.
    EXPECT_TRUE(writer.lock_range({2 * block, block}, fs::lock_kind::exclusive));
    auto blocked_reader = reader.lock_range({2 * block + 5, 1}, fs::lock_kind::shared);
    ASSERT_FALSE(blocked_reader);
    EXPECT_EQ(blocked_reader.error().code, errc::busy);

    ASSERT_TRUE(reader.unlock_range({0, block}));
    EXPECT_TRUE(writer.lock_range({0, block}, fs::lock_kind::exclusive));
    ASSERT_TRUE(writer.unlock_range({0, 0}));  // 0 = to the end: drops everything
    EXPECT_TRUE(reader.lock_range({0, 0}, fs::lock_kind::shared));
}

TEST_P(lock_test, closing_an_open_drops_its_locks) {
    auto reader = std::move(*instance_.open("f"));
    {
        auto writer = std::move(*instance_.open("f", fs::open_mode::write));
        ASSERT_TRUE(writer.lock_range({0, 0}, fs::lock_kind::exclusive));
        EXPECT_FALSE(reader.lock_range({0, 1}, fs::lock_kind::shared));
    }
    EXPECT_TRUE(reader.lock_range({0, 1}, fs::lock_kind::shared));
}

TEST_P(lock_test, exclusive_needs_a_writable_open) {
    auto reader = std::move(*instance_.open("f"));
    auto e = reader.lock_range({0, 10}, fs::lock_kind::exclusive);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, errc::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(providers, lock_test, ::testing::ValuesIn(all_setups), setup_name);

}  // namespace
}  // namespace datapump::test
