// What the ingest path needs from a provider: new files for O_DIRECT writes (create_new), the
// storage extent of a range, and the namespace ops that publish an upload (rename, remove).
#include "datapump/ingest/upload_names.hpp"
#include "unit/fs/fs_fixture.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace datapump::test {
namespace {

class namespace_test : public fs_test {};

TEST_P(namespace_test, create_new_refuses_an_existing_file_and_reports_its_extent) {
    write_file(dir_.str() + "/old", pattern(100, 1));
    auto again = instance_.open("old", fs::open_mode::create_new);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, errc::busy);

    auto fresh = instance_.open("new", fs::open_mode::create_new);
    ASSERT_TRUE(fresh.has_value()) << describe(fresh.error());
    auto where = fresh->extent(8192, 4096);
    ASSERT_TRUE(where.has_value()) << describe(where.error());
    EXPECT_GE(where->fd, 0);
    EXPECT_EQ(where->device_offset, 8192U);  // a local file is its own storage
    EXPECT_EQ(where->length, 4096U);
    // ext4 takes O_DIRECT: the ingest path writes aligned blocks.
    EXPECT_EQ(where->alignment, 4096U);
    EXPECT_FALSE(fresh->extent(0, 0).has_value());

    auto reader = instance_.open("old");
    ASSERT_TRUE(reader.has_value());
    EXPECT_EQ(reader->extent(0, 1).error().code, errc::invalid_argument);  // not for read opens
}

TEST_P(namespace_test, rename_replaces_atomically_and_says_so) {
    write_file(dir_.str() + "/a.tmp", pattern(10, 2));
    auto first = instance_.rename("a.tmp", "a");
    ASSERT_TRUE(first.has_value()) << describe(first.error());
    EXPECT_FALSE(*first);  // a new name
    write_file(dir_.str() + "/a.tmp", pattern(20, 3));
    auto second = instance_.rename("a.tmp", "a");
    ASSERT_TRUE(second.has_value());
    EXPECT_TRUE(*second);  // replaced
    EXPECT_EQ(read_file(dir_.str() + "/a"), pattern(20, 3));
    EXPECT_FALSE(std::filesystem::exists(dir_.path() / "a.tmp"));

    EXPECT_EQ(instance_.rename("missing", "b").error().code, errc::not_found);
    EXPECT_EQ(instance_.rename("a", "../escaped").error().code, errc::escapes_root);
    EXPECT_EQ(instance_.rename("a", "nodir/b").error().code, errc::not_found);
}

TEST_P(namespace_test, batched_durability_resizes_renames_without_a_directory_sync_then_syncs_once) {
    auto fresh = instance_.open(".b.tmp", fs::open_mode::create_new);
    ASSERT_TRUE(fresh.has_value()) << describe(fresh.error());
    ASSERT_TRUE(fresh->resize(12345).has_value());
    EXPECT_EQ(std::filesystem::file_size(dir_.path() / ".b.tmp"), 12345U);
    ASSERT_TRUE(fresh->resize(100).has_value());  // shrinks too
    EXPECT_EQ(std::filesystem::file_size(dir_.path() / ".b.tmp"), 100U);

    auto renamed = instance_.rename(".b.tmp", "b", false);
    ASSERT_TRUE(renamed.has_value()) << describe(renamed.error());
    EXPECT_FALSE(*renamed);
    EXPECT_EQ(std::filesystem::file_size(dir_.path() / "b"), 100U);  // visible before the sync
    EXPECT_TRUE(instance_.sync().has_value());
    write_file(dir_.str() + "/.b.tmp", pattern(7, 5));
    auto replaced = instance_.rename(".b.tmp", "b", false);
    ASSERT_TRUE(replaced.has_value());
    EXPECT_TRUE(*replaced);
    EXPECT_EQ(instance_.rename("missing", "c", false).error().code, errc::not_found);
    write_file(dir_.str() + "/.c.tmp", pattern(9, 6));
    EXPECT_EQ(instance_.rename(".c.tmp", "b", true, false).error().code, errc::busy);  // no replace
    EXPECT_EQ(read_file(dir_.str() + "/b"), pattern(7, 5));
    auto fresh_name = instance_.rename(".c.tmp", "c", true, false);
    ASSERT_TRUE(fresh_name.has_value());
    EXPECT_FALSE(*fresh_name);

    auto reader = instance_.open("b");
    ASSERT_TRUE(reader.has_value());
    EXPECT_EQ(reader->resize(1).error().code, errc::invalid_argument);  // not for read opens
}

TEST_P(namespace_test, remove_takes_regular_files_only) {
    write_file(dir_.str() + "/f", pattern(10, 4));
    std::filesystem::create_directory(dir_.path() / "d");
    EXPECT_TRUE(instance_.remove("f").has_value());
    EXPECT_FALSE(std::filesystem::exists(dir_.path() / "f"));
    EXPECT_EQ(instance_.remove("f").error().code, errc::not_found);
    EXPECT_EQ(instance_.remove("d").error().code, errc::not_regular_file);
    EXPECT_EQ(instance_.remove("../x").error().code, errc::escapes_root);
}

INSTANTIATE_TEST_SUITE_P(providers, namespace_test, ::testing::ValuesIn(all_setups), setup_name);

TEST(upload_names, temp_names_sit_beside_their_target_and_are_recognised) {
    const std::string t = ingest::temp_name("a/b/c.mp4");
    EXPECT_TRUE(t.starts_with("a/b/.c.mp4.dp-upload-")) << t;
    EXPECT_TRUE(ingest::is_temp_name(t));
    EXPECT_NE(ingest::temp_name("x"), ingest::temp_name("x"));  // unique within the process
    EXPECT_TRUE(ingest::is_temp_name(".x.dp-upload-12-3"));
    EXPECT_FALSE(ingest::is_temp_name("x.dp-upload-12-3"));   // no leading dot
    EXPECT_FALSE(ingest::is_temp_name(".x.dp-upload-12"));    // no counter
    EXPECT_FALSE(ingest::is_temp_name(".x.dp-upload-1a-3"));  // not digits
    EXPECT_FALSE(ingest::is_temp_name("movie.mp4"));
}

TEST(upload_names, leftovers_are_removed_everywhere_under_the_root_and_nothing_else) {
    temp_dir dir;
    std::filesystem::create_directories(dir.path() / "s/t");
    write_file(dir.str() + "/.a.dp-upload-1-0", pattern(10, 1));
    write_file(dir.str() + "/s/t/.b.dp-upload-77-9", pattern(10, 1));
    write_file(dir.str() + "/keep.dp-upload-1-0", pattern(10, 1));
    write_file(dir.str() + "/s/keep", pattern(10, 1));
    auto removed = ingest::remove_leftovers(dir.str());
    ASSERT_TRUE(removed.has_value());
    EXPECT_EQ(*removed, 2U);
    EXPECT_FALSE(std::filesystem::exists(dir.path() / ".a.dp-upload-1-0"));
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "s/t/.b.dp-upload-77-9"));
    EXPECT_TRUE(std::filesystem::exists(dir.path() / "keep.dp-upload-1-0"));
    EXPECT_TRUE(std::filesystem::exists(dir.path() / "s/keep"));
    EXPECT_EQ(ingest::remove_leftovers(dir.str() + "/nope").error().code, errc::not_found);
}

}  // namespace
}  // namespace datapump::test
