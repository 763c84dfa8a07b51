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

// hostile network: uploads. A new version keeps the permissions (and, where the process may
// give files away, the owner) of the file it replaces: a private file stays private.
TEST_P(namespace_test, rename_over_a_file_keeps_its_mode_and_owner) {
    write_file(dir_.str() + "/private", pattern(10, 1));
    ASSERT_EQ(::chmod((dir_.str() + "/private").c_str(), 0600), 0);
    const bool root = ::geteuid() == 0;
    if (root) {
        ASSERT_EQ(::chown((dir_.str() + "/private").c_str(), 65534, 65534), 0);
    }
    write_file(dir_.str() + "/shared", pattern(10, 2));
    ASSERT_EQ(::chmod((dir_.str() + "/shared").c_str(), 0751), 0);
    for (const char* name : {"private", "shared"}) {
        struct stat before {};
        ASSERT_EQ(::stat((dir_.str() + "/" + name).c_str(), &before), 0);
        auto fresh = instance_.open(std::string(".") + name + ".tmp", fs::open_mode::create_new);
        ASSERT_TRUE(fresh.has_value()) << describe(fresh.error());
        auto replaced = instance_.rename(std::string(".") + name + ".tmp", name);
        ASSERT_TRUE(replaced.has_value()) << describe(replaced.error());
        EXPECT_TRUE(*replaced);
        struct stat after {};
        ASSERT_EQ(::stat((dir_.str() + "/" + name).c_str(), &after), 0);
        EXPECT_NE(after.st_ino, before.st_ino) << name;  // the new version
        EXPECT_EQ(after.st_mode & 07777, before.st_mode & 07777) << name;
        if (root) {
            EXPECT_EQ(after.st_uid, before.st_uid) << name;
            EXPECT_EQ(after.st_gid, before.st_gid) << name;
        }
    }
    // A new name: the create mode (0644 less the umask), as before.
    const mode_t mask = ::umask(022);
    ::umask(mask);
    auto fresh = instance_.open(".new.tmp", fs::open_mode::create_new);
    ASSERT_TRUE(fresh.has_value());
    ASSERT_TRUE(instance_.rename(".new.tmp", "new").has_value());
    struct stat made {};
    ASSERT_EQ(::stat((dir_.str() + "/new").c_str(), &made), 0);
    EXPECT_EQ(made.st_mode & 07777, 0644 & ~mask);
}

// hostile network: uploads. Another process's start-up (remove_leftovers) leaves the temp file of
// a live upload alone: create_temp holds an OFD lock on it for as long as it is open; once it is
// closed (its writer died), the next start-up removes it.
TEST_P(namespace_test, a_locked_temp_file_survives_remove_leftovers_until_closed) {
    std::filesystem::create_directory(dir_.path() / "d");
    auto made = ingest::create_temp(instance_, "d/movie.mp4");
    ASSERT_TRUE(made.has_value()) << describe(made.error());
    EXPECT_TRUE(made->name.starts_with("d/.movie.mp4.dp-upload-")) << made->name;
    EXPECT_TRUE(ingest::is_temp_name(made->name));
    write_file(dir_.str() + "/.dead.dp-upload-1-1", pattern(10, 1));  // a killed writer's: no lock
    std::uint64_t kept = 0;
    auto removed = ingest::remove_leftovers(dir_.str(), &kept);
    ASSERT_TRUE(removed.has_value()) << describe(removed.error());
    EXPECT_EQ(*removed, 1U);
    EXPECT_EQ(kept, 1U);
    EXPECT_TRUE(std::filesystem::exists(dir_.path() / made->name));
    EXPECT_FALSE(std::filesystem::exists(dir_.path() / ".dead.dp-upload-1-1"));
    // Another open in this process is another open file description: its lock conflicts too.
    auto again = instance_.open(made->name, fs::open_mode::write);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->lock_range({}, fs::lock_kind::shared).error().code, errc::busy);
    again = fail(errc::closed, "dropped");

    const std::string name = made->name;
    made = fail(errc::closed, "the writer died");  // closes the file: the lock goes with it
    removed = ingest::remove_leftovers(dir_.str(), &kept);
    ASSERT_TRUE(removed.has_value());
    EXPECT_EQ(*removed, 1U);
    EXPECT_EQ(kept, 0U);
    EXPECT_FALSE(std::filesystem::exists(dir_.path() / name));

    EXPECT_EQ(ingest::create_temp(instance_, "nodir/x").error().code, errc::not_found);
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
