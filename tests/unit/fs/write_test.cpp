// The slow write path: a load-and-play writer through each provider's sink; the direct
// provider's padded O_DIRECT tail is truncated back to the exact size.
#include "unit/fs/fs_fixture.hpp"

#include <sys/stat.h>

namespace datapump::test {
namespace {

class write_test : public fs_test {};

TEST_P(write_test, writer_produces_the_exact_file) {
    const std::size_t sizes[] = {0, 1, 4095, block, block + 123, 3 * block + 4000};
    std::uint32_t seed = 40;
    for (const std::size_t size : sizes) {
        const std::string name = "w" + std::to_string(size);
        const auto content = pattern(size, seed++);
        auto f = instance_.open(name, fs::open_mode::create);
        ASSERT_TRUE(f) << describe(f.error());
        auto w = f->create_writer();
        ASSERT_TRUE(w) << describe(w.error());
        std::size_t done = 0;
        while (done < size) {
            auto loan = (*w)->loan_write(5000);
            ASSERT_TRUE(loan) << describe(loan.error());
            const std::size_t n = std::min(loan->data().size(), size - done);
            std::memcpy(loan->data().data(), content.data() + done, n);
            ASSERT_TRUE(std::move(*loan).commit(n));
            done += n;
        }
        auto finished = (*w)->finish();
        ASSERT_TRUE(finished) << name << ": " << describe(finished.error());
        EXPECT_EQ(read_file(dir_.file(name)), content) << name;
        // Readers of the written file see the same bytes through the cache.
        auto loans = cache_->loan_read(*(*w)->file(), 0, size);
        ASSERT_TRUE(loans) << describe(loans.error());
        expect_loans(*loans, content, 0, size);
    }
}

TEST_P(write_test, raw_sink_writes_from_memory_outside_the_arena) {
    auto f = std::move(*instance_.open("raw", fs::open_mode::create));
    auto sink = f.sink();
    ASSERT_TRUE(sink);
    const auto first = pattern(block, 50);
    const auto tail = pattern(100, 51);  // heap memory: the direct provider bounces it
    ASSERT_TRUE((*sink)->write_block(0, first, buffer::no_index));
    ASSERT_TRUE((*sink)->write_block(block, tail, buffer::no_index));
    ASSERT_TRUE((*sink)->finish(block + 100));
    auto expect = first;
    expect.insert(expect.end(), tail.begin(), tail.end());
    EXPECT_EQ(read_file(dir_.file("raw")), expect);
}

TEST_P(write_test, sink_of_a_read_open_is_refused) {
    write_file(dir_.file("r"), pattern(10));
    auto f = std::move(*instance_.open("r"));
    auto s = f.sink();
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, errc::invalid_argument);
    auto w = f.create_writer();
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code, errc::invalid_argument);
}

TEST_P(write_test, create_refuses_paths_outside_the_root) {
    auto e = instance_.open("../escape", fs::open_mode::create);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, errc::escapes_root);
}

INSTANTIATE_TEST_SUITE_P(providers, write_test, ::testing::ValuesIn(all_setups), setup_name);

TEST(direct_write, unaligned_offset_is_invalid) {
    temp_dir dir;
    fs::registry r;
    auto inst = std::move(*r.instantiate("direct", {.root = dir.str()}));
    auto f = std::move(*inst.open("x", fs::open_mode::create));
    auto sink = std::move(*f.sink());
    const auto bytes = pattern(10);
    auto e = sink->write_block(100, bytes, buffer::no_index);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, errc::invalid_argument);
}

}  // namespace
}  // namespace datapump::test
