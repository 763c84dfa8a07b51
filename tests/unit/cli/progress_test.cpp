#include "progress.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace datapump::cli {
namespace {

std::string contents(std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string text;
    char buf[256];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        text.append(buf, n);
    }
    return text;
}

TEST(ProgressLine, DrawsAtOnceAndAtTheEndThenErasesItself) {
    std::FILE* out = std::tmpfile();
    ASSERT_NE(out, nullptr);
    std::atomic<std::uint64_t> done{0};
    {
        progress_line line(out, "reading data.bin", 2048, done, std::chrono::hours(1));
        done.store(1024);
        line.finish();
    }
    const std::string text = contents(out);
    std::fclose(out);
    // The first draw, before any work; the last, with the final count; then the erase.
    EXPECT_NE(text.find("\rreading data.bin: 0 B of 2.00 KiB (0%), "), std::string::npos) << text;
    EXPECT_NE(text.find("\rreading data.bin: 1.00 KiB of 2.00 KiB (50%), "), std::string::npos) << text;
    EXPECT_TRUE(text.ends_with("\r\033[K")) << text;
    EXPECT_EQ(text.find('\n'), std::string::npos) << "a progress line never scrolls the terminal";
}

TEST(ProgressLine, WantedOnATerminalOnlyUnlessAsked) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    EXPECT_FALSE(progress_wanted(progress_mode::automatic, pipe_fds[1]));
    EXPECT_TRUE(progress_wanted(progress_mode::always, pipe_fds[1]));
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);

    const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) {
        GTEST_SKIP() << "no pseudo-terminal available";
    }
    ASSERT_EQ(::grantpt(master), 0);
    ASSERT_EQ(::unlockpt(master), 0);
    const int terminal = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
    ASSERT_GE(terminal, 0);
    EXPECT_TRUE(progress_wanted(progress_mode::automatic, terminal));
    EXPECT_FALSE(progress_wanted(progress_mode::never, terminal));
    ::close(terminal);
    ::close(master);
}

}  // namespace
}  // namespace datapump::cli
