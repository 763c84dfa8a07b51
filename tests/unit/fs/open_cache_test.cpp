// The open-file cache: a kept file is shared while it is unchanged, and any change made before a
// look-up (rewrite, rename over, delete, a folder of its path renamed, lost events) is seen by it
// at once: no waiting, since the look-up applies what the kernel queued. Bounds: entries, age,
// size. Run once per provider setup (the cache opens through the instance).
#include "datapump/fs/open_cache.hpp"

#include "unit/fs/fs_fixture.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

namespace datapump::test {
namespace {

class open_cache_test : public fs_test {
protected:
    void SetUp() override {
        fs_test::SetUp();
        root_fd_ = unique_fd(::open(dir_.str().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        ASSERT_TRUE(root_fd_);
    }
    void TearDown() override {
        cache_of_files_.reset();
        fs_test::TearDown();
    }
    void make(fs::open_cache_config config = {}) {
        auto made = fs::open_cache::create(instance_, root_fd_.get(), config);
        ASSERT_TRUE(made) << describe(made.error());
        cache_of_files_ = std::move(*made);
    }
    [[nodiscard]] std::shared_ptr<fs::file> open(const std::string& path) {
        auto f = cache_of_files_->open(path);
        EXPECT_TRUE(f) << path << ": " << (f ? "" : describe(f.error()));
        return f ? *f : nullptr;
    }
    // Writes `bytes` to a new file and renames it over `name` (how an upload publishes).
    void replace(const std::string& name, std::size_t bytes, std::uint32_t seed) {
        write_file(dir_.file(name + ".new"), pattern(bytes, seed));
        ASSERT_EQ(0, ::rename(dir_.file(name + ".new").c_str(), dir_.file(name).c_str()));
    }

    unique_fd root_fd_;
    std::unique_ptr<fs::open_cache> cache_of_files_;
};

TEST_P(open_cache_test, a_second_open_of_an_unchanged_file_shares_the_first) {
    write_file(dir_.file("a"), pattern(100, 1));
    make();
    auto first = open("a");
    auto second = open("a");
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(first, second);
    const auto c = cache_of_files_->counters();
    EXPECT_EQ(c.misses, 1U);
    EXPECT_EQ(c.hits, 1U);
    EXPECT_EQ(c.files, 1U);
    EXPECT_EQ(c.watches, 1U);  // the root
}

TEST_P(open_cache_test, a_rewrite_in_place_is_seen_by_the_next_open) {
    write_file(dir_.file("a"), pattern(100, 1));
    make();
    auto first = open("a");
    write_file(dir_.file("a"), pattern(300, 2));  // truncated and rewritten, same inode
    auto second = open("a");
    ASSERT_NE(second, nullptr);
    EXPECT_NE(first, second);
    EXPECT_EQ(second->info().size, 300U);
    EXPECT_EQ(first->info().inode, second->info().inode);
    EXPECT_GE(cache_of_files_->counters().forgotten, 1U);
}

TEST_P(open_cache_test, a_file_renamed_over_the_name_is_seen_and_the_old_open_stays_readable) {
    write_file(dir_.file("a"), pattern(100, 1));
    make();
    auto first = open("a");
    replace("a", 200, 3);
    auto second = open("a");
    ASSERT_NE(second, nullptr);
    EXPECT_NE(first->info().inode, second->info().inode);
    EXPECT_EQ(second->info().size, 200U);
    // A request that got the old file keeps it whole to its end.
    EXPECT_EQ(first->info().size, 100U);
    if (auto fd = first->send_fd()) {
        std::vector<std::byte> back(100);
        ASSERT_EQ(100, ::pread(*fd, back.data(), back.size(), 0));
        EXPECT_EQ(back, pattern(100, 1));
    }
}

TEST_P(open_cache_test, a_deleted_file_is_not_found_by_the_next_open) {
    write_file(dir_.file("a"), pattern(100, 1));
    make();
    ASSERT_NE(open("a"), nullptr);
    ASSERT_EQ(0, ::unlink(dir_.file("a").c_str()));
    auto gone = cache_of_files_->open("a");
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, errc::not_found);
    // Errors are not kept: the file made again is found.
    write_file(dir_.file("a"), pattern(50, 4));
    auto back = open("a");
    ASSERT_NE(back, nullptr);
    EXPECT_EQ(back->info().size, 50U);
}

TEST_P(open_cache_test, a_folder_of_the_path_replaced_is_seen_at_any_depth) {
    std::filesystem::create_directories(dir_.path() / "p" / "q");
    write_file(dir_.file("p/q/x"), pattern(100, 1));
    write_file(dir_.file("p/y"), pattern(10, 1));
    make();
    auto x = open("p/q/x");
    auto y = open("p/y");
    EXPECT_GE(cache_of_files_->counters().watches, 3U);  // "", "p", "p/q" (twice "" and "p" when x and y
                                                          // are in two shards)
    // The outermost folder moves away and another takes its name.
    std::filesystem::rename(dir_.path() / "p", dir_.path() / "p.old");
    std::filesystem::create_directories(dir_.path() / "p" / "q");
    write_file(dir_.file("p/q/x"), pattern(70, 5));
    auto x2 = open("p/q/x");
    ASSERT_NE(x2, nullptr);
    EXPECT_NE(x->info().inode, x2->info().inode);
    EXPECT_EQ(x2->info().size, 70U);
    auto y2 = cache_of_files_->open("p/y");
    ASSERT_FALSE(y2);
    EXPECT_EQ(y2.error().code, errc::not_found);
    // The moved folder's files are no longer known by their old names; the new ones are watched.
    write_file(dir_.file("p/q/x"), pattern(20, 6));
    auto x3 = open("p/q/x");
    ASSERT_NE(x3, nullptr);
    EXPECT_EQ(x3->info().size, 20U);
}

TEST_P(open_cache_test, an_inner_folder_renamed_forgets_only_what_lies_beneath_it) {
    std::filesystem::create_directories(dir_.path() / "d");
    write_file(dir_.file("d/x"), pattern(100, 1));
    write_file(dir_.file("z"), pattern(10, 1));
    make();
    auto x = open("d/x");
    auto z = open("z");
    std::filesystem::rename(dir_.path() / "d", dir_.path() / "e");
    auto moved = open("e/x");  // the same file by its new name
    ASSERT_NE(moved, nullptr);
    EXPECT_EQ(moved->info().inode, x->info().inode);
    EXPECT_FALSE(cache_of_files_->open("d/x"));
    EXPECT_EQ(open("z"), z);  // elsewhere: still kept
}

TEST_P(open_cache_test, the_least_recently_used_file_goes_first) {
    for (const char* n : {"a", "b", "c"}) {
        write_file(dir_.file(n), pattern(10, 1));
    }
    make({.max_files = 2, .shards = 1});  // one LRU order (with shards, each orders its own)
    auto a = open("a");
    auto b = open("b");
    EXPECT_EQ(open("a"), a);  // a is now the most recent
    auto c = open("c");       // b goes
    EXPECT_EQ(open("a"), a);
    EXPECT_NE(open("b"), b);
    const auto counts = cache_of_files_->counters();
    EXPECT_EQ(counts.files, 2U);
    EXPECT_GE(counts.evicted, 1U);
}

TEST_P(open_cache_test, an_entry_older_than_valid_is_opened_anew) {
    write_file(dir_.file("a"), pattern(10, 1));
    make({.valid = std::chrono::milliseconds(1)});
    auto first = open("a");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto second = open("a");
    ASSERT_NE(second, nullptr);
    EXPECT_NE(first, second);
    EXPECT_EQ(cache_of_files_->counters().evicted, 1U);
}

TEST_P(open_cache_test, files_larger_than_max_size_are_not_kept) {
    write_file(dir_.file("big"), pattern(4096, 1));
    write_file(dir_.file("small"), pattern(100, 1));
    make({.max_size = 1000});
    EXPECT_NE(open("big"), open("big"));
    EXPECT_EQ(open("small"), open("small"));
}

TEST_P(open_cache_test, lost_events_forget_everything) {
    write_file(dir_.file("a"), pattern(10, 1));
    write_file(dir_.file("b"), pattern(10, 1));
    write_file(dir_.file("c"), pattern(10, 1));
    make();
    auto c = open("c");
    // More events than the queue holds (fs.inotify.max_queued_events, 16384 by default):
    // alternating names, so that the kernel cannot merge them.
    unique_fd fa(::open(dir_.file("a").c_str(), O_WRONLY | O_CLOEXEC));
    unique_fd fb(::open(dir_.file("b").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fa && fb);
    int queued = 16384;
    if (std::FILE* f = std::fopen("/proc/sys/fs/inotify/max_queued_events", "r")) {
        if (std::fscanf(f, "%d", &queued) != 1) {
            queued = 16384;
        }
        std::fclose(f);
    }
    const char byte = 'x';
    for (int i = 0; i <= queued; ++i) {
        ASSERT_EQ(1, ::pwrite(fa.get(), &byte, 1, 0));
        ASSERT_EQ(1, ::pwrite(fb.get(), &byte, 1, 0));
    }
    auto again = open("c");  // c itself never changed, but the cache cannot know that
    EXPECT_NE(again, c);
    EXPECT_EQ(cache_of_files_->counters().files, 1U);
}

TEST_P(open_cache_test, clear_forgets_everything) {
    write_file(dir_.file("a"), pattern(10, 1));
    make();
    auto a = open("a");
    cache_of_files_->clear();
    EXPECT_EQ(cache_of_files_->counters().files, 0U);
    EXPECT_EQ(cache_of_files_->counters().watches, 0U);
    EXPECT_NE(open("a"), a);
}

TEST_P(open_cache_test, bounds_out_of_range_are_refused) {
    for (const fs::open_cache_config bad : {fs::open_cache_config{.max_files = 0}, fs::open_cache_config{.shards = 0},
                                            fs::open_cache_config{.shards = 65}}) {
        auto made = fs::open_cache::create(instance_, root_fd_.get(), bad);
        ASSERT_FALSE(made);
        EXPECT_EQ(made.error().code, errc::invalid_argument);
    }
}

TEST_P(open_cache_test, many_files_over_the_shards_are_each_kept_once) {
    for (int i = 0; i < 64; ++i) {
        write_file(dir_.file("m" + std::to_string(i)), pattern(10, 1));
    }
    make({.max_files = 1000, .shards = 8});
    std::vector<std::shared_ptr<fs::file>> first;
    for (int i = 0; i < 64; ++i) {
        first.push_back(open("m" + std::to_string(i)));
    }
    for (int i = 0; i < 64; ++i) {
        EXPECT_EQ(open("m" + std::to_string(i)), first[static_cast<std::size_t>(i)]);
    }
    const auto c = cache_of_files_->counters();
    EXPECT_EQ(c.files, 64U);
    EXPECT_EQ(c.hits, 64U);
    EXPECT_EQ(c.misses, 64U);
    EXPECT_LE(c.watches, 8U);  // the root, once per shard that keeps a file
    // A file moved away is seen by the shard that kept it.
    std::filesystem::create_directories(dir_.path() / "sub");
    ASSERT_EQ(0, ::rename(dir_.file("m0").c_str(), dir_.file("sub/m0").c_str()));
    EXPECT_FALSE(cache_of_files_->open("m0"));
}

// max_files bounds the shards together: a set exactly as large as the cache is kept whole, though
// its paths never hash evenly over the shards (with an even split, the fuller shards evicted
// while the others had room, and every pass over the set missed in them), and one file more
// evicts one.
TEST_P(open_cache_test, max_files_is_shared_by_the_shards_not_split_between_them) {
    constexpr int set = 96;
    for (int i = 0; i <= set; ++i) {
        write_file(dir_.file("s" + std::to_string(i)), pattern(10, 1));
    }
    make({.max_files = set, .shards = 16});
    for (int pass = 0; pass < 2; ++pass) {
        for (int i = 0; i < set; ++i) {
            ASSERT_NE(open("s" + std::to_string(i)), nullptr);
        }
    }
    auto c = cache_of_files_->counters();
    EXPECT_EQ(c.files, std::uint64_t{set});
    EXPECT_EQ(c.misses, std::uint64_t{set});
    EXPECT_EQ(c.hits, std::uint64_t{set});
    EXPECT_EQ(c.evicted, 0U);
    ASSERT_NE(open("s" + std::to_string(set)), nullptr);
    c = cache_of_files_->counters();
    EXPECT_EQ(c.files, std::uint64_t{set});
    EXPECT_EQ(c.evicted, 1U);
}

// Readers on two threads while a third keeps replacing the files: every open is one whole
// version (its size is one the writer wrote), and once the writer stops, the last one is seen.
TEST_P(open_cache_test, concurrent_opens_while_files_are_replaced) {
    const std::array<std::string, 4> names{"f0", "f1", "f2", "f3"};
    for (const auto& n : names) {
        write_file(dir_.file(n), pattern(1000, 1));
    }
    make({.max_files = 3, .shards = 2});
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    auto reader = [&] {
        std::uint64_t i = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            auto f = cache_of_files_->open(names[i++ % names.size()]);
            if (!f || (*f)->info().size < 1000 || (*f)->info().size > 1000 + 200) {
                if (bad.fetch_add(1, std::memory_order_relaxed) == 0) {
                    ADD_FAILURE() << (f ? "size " + std::to_string((*f)->info().size) : describe(f.error()));
                }
            }
        }
    };
    std::thread r1(reader);
    std::thread r2(reader);
    for (int k = 1; k <= 200; ++k) {
        replace(names[static_cast<std::size_t>(k) % names.size()], static_cast<std::size_t>(1000 + k), 7);
    }
    stop.store(true, std::memory_order_relaxed);
    r1.join();
    r2.join();
    EXPECT_EQ(bad.load(), 0);
    // The last version of each name (k = 197..200).
    for (int k = 197; k <= 200; ++k) {
        auto f = open(names[static_cast<std::size_t>(k) % names.size()]);
        ASSERT_NE(f, nullptr);
        EXPECT_EQ(f->info().size, static_cast<std::uint64_t>(1000 + k));
    }
}

INSTANTIATE_TEST_SUITE_P(providers, open_cache_test, ::testing::ValuesIn(all_setups), setup_name);

}  // namespace
}  // namespace datapump::test
