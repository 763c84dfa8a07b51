// Path and type checks, for every provider setup: only regular files beneath the root are ever
// opened; everything else fails with the documented code, both in validate() and open().
#include "unit/fs/fs_fixture.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>

namespace datapump::test {
namespace {

class path_test : public fs_test {
protected:
    // validate and open must agree on the error.
    void expect_both_fail(const std::string& path, errc code) {
        auto v = instance_.validate(path);
        ASSERT_FALSE(v) << path;
        EXPECT_EQ(v.error().code, code) << path << ": " << describe(v.error());
        auto o = instance_.open(path);
        ASSERT_FALSE(o) << path;
        EXPECT_EQ(o.error().code, code) << path << ": " << describe(o.error());
        EXPECT_EQ(instance_.open_files(), 0U) << path;  // failed opens hold no use count
    }
};

TEST_P(path_test, regular_file_validates_with_its_attributes) {
    write_file(dir_.file("ok"), pattern(5000));
    auto v = instance_.validate("ok", {100, 4900});
    ASSERT_TRUE(v) << describe(v.error());
    EXPECT_EQ(v->size, 5000U);
    EXPECT_NE(v->inode, 0U);
    EXPECT_TRUE(v->zero_copy);
    if (std::string(GetParam().name) == "direct") {
        EXPECT_EQ(v->dio_alignment, 4096U);
    }
    auto f = instance_.open("ok");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->info().size, 5000U);
    EXPECT_EQ(f->info().inode, v->inode);
}

TEST_P(path_test, directory_is_not_a_regular_file) {
    std::filesystem::create_directory(dir_.path() / "sub");
    expect_both_fail("sub", errc::not_regular_file);
    expect_both_fail(".", errc::not_regular_file);
}

TEST_P(path_test, device_is_not_a_regular_file) {
    // The same device as /dev/null, made inside the root (a link to /dev/null would escape).
    ASSERT_EQ(0, ::mknod(dir_.file("null").c_str(), S_IFCHR | 0666, makedev(1, 3))) << std::strerror(errno);
    expect_both_fail("null", errc::not_regular_file);
}

TEST_P(path_test, fifo_is_not_a_regular_file_and_does_not_block) {
    ASSERT_EQ(0, ::mkfifo(dir_.file("fifo").c_str(), 0600));
    expect_both_fail("fifo", errc::not_regular_file);
}

TEST_P(path_test, socket_is_not_a_regular_file) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(s, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string p = dir_.file("sock");
    ASSERT_LT(p.size(), sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    ASSERT_EQ(0, ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
    expect_both_fail("sock", errc::not_regular_file);
    ::close(s);
}

TEST_P(path_test, missing_file_is_not_found) {
    expect_both_fail("missing", errc::not_found);
    expect_both_fail("missing/deeper", errc::not_found);
}

TEST_P(path_test, dot_dot_escape_is_refused) {
    // A real file right outside the root: the escape must fail even though the target exists.
    const std::string outside = dir_.path().filename().string() + "-outside";
    write_file("/tmp/" + outside, pattern(10));
    std::filesystem::create_directory(dir_.path() / "a");
    expect_both_fail("../" + outside, errc::escapes_root);
    expect_both_fail("a/../../" + outside, errc::escapes_root);
    std::filesystem::remove("/tmp/" + outside);
}

TEST_P(path_test, absolute_path_is_refused) { expect_both_fail("/etc/passwd", errc::escapes_root); }

TEST_P(path_test, symlink_out_of_the_root_is_refused) {
    std::filesystem::create_symlink("/etc/passwd", dir_.path() / "abs_link");
    std::filesystem::create_symlink("../../etc/passwd", dir_.path() / "rel_link");
    std::filesystem::create_directory(dir_.path() / "sub");
    std::filesystem::create_directory_symlink("/etc", dir_.path() / "sub" / "etc");
    expect_both_fail("abs_link", errc::escapes_root);
    expect_both_fail("rel_link", errc::escapes_root);
    expect_both_fail("sub/etc/passwd", errc::escapes_root);
}

TEST_P(path_test, magic_link_is_refused) {
    std::filesystem::create_symlink("/proc/self/exe", dir_.path() / "magic");
    expect_both_fail("magic", errc::escapes_root);
}

TEST_P(path_test, symlink_inside_the_root_is_followed) {
    write_file(dir_.file("target"), pattern(77));
    std::filesystem::create_directory(dir_.path() / "sub");
    std::filesystem::create_symlink("../target", dir_.path() / "sub" / "link");
    auto v = instance_.validate("sub/link");
    ASSERT_TRUE(v) << describe(v.error());
    EXPECT_EQ(v->size, 77U);
}

TEST_P(path_test, empty_path_is_invalid) {
    auto v = instance_.validate("");
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, errc::invalid_argument);
}

TEST_P(path_test, range_past_the_end_is_out_of_range) {
    write_file(dir_.file("f"), pattern(1000));
    EXPECT_TRUE(instance_.validate("f", {1000, 0}));  // the empty range at the end is fine
    EXPECT_TRUE(instance_.validate("f", {0, 1000}));
    auto past = instance_.validate("f", {1001, 0});
    ASSERT_FALSE(past);
    EXPECT_EQ(past.error().code, errc::out_of_range);
    auto runs_over = instance_.validate("f", {500, 501});
    ASSERT_FALSE(runs_over);
    EXPECT_EQ(runs_over.error().code, errc::out_of_range);
    auto huge = instance_.validate("f", {1, ~std::uint64_t{0}});
    ASSERT_FALSE(huge);
    EXPECT_EQ(huge.error().code, errc::out_of_range);
}

TEST_P(path_test, loan_read_past_the_end_is_out_of_range) {
    write_file(dir_.file("f"), pattern(1000));
    auto f = std::move(*instance_.open("f"));
    auto past = f.loan_read(1001, 10);
    ASSERT_FALSE(past);
    EXPECT_EQ(past.error().code, errc::out_of_range);
}

INSTANTIATE_TEST_SUITE_P(providers, path_test, ::testing::ValuesIn(all_setups), setup_name);

}  // namespace
}  // namespace datapump::test
