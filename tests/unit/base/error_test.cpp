#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

namespace datapump {
namespace {

TEST(error, describe_names_operation_code_errno_and_subject) {
    const auto e = fail_errno("open", ENOENT).error();
    EXPECT_EQ(e.code, errc::not_found);
    const std::string text = describe(e, "videos/a.mp4");
    EXPECT_NE(text.find("open"), std::string::npos);
    EXPECT_NE(text.find("not found"), std::string::npos);
    EXPECT_NE(text.find("No such file"), std::string::npos);
    EXPECT_NE(text.find("videos/a.mp4"), std::string::npos);
}

TEST(error, errno_mapping) {
    EXPECT_EQ(fail_errno("x", EXDEV).error().code, errc::escapes_root);
    EXPECT_EQ(fail_errno("x", EISDIR).error().code, errc::not_regular_file);
    EXPECT_EQ(fail_errno("x", EIO).error().code, errc::io_error);
    EXPECT_EQ(fail_errno("x", EIO).error().sys, EIO);
}

TEST(unique_fd, closes_on_drop_and_moves) {
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(raw, 0);
    {
        unique_fd a(raw);
        unique_fd b(std::move(a));
        EXPECT_FALSE(a.valid());
        EXPECT_EQ(b.get(), raw);
    }
    EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
    EXPECT_EQ(errno, EBADF);
}

}  // namespace
}  // namespace datapump
