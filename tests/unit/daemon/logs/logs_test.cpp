// logs: datapumpd's log targets (src/daemon/logs/logs.hpp): files, reopening after a rename,
// switching targets (a reload), and the level that reaches the daemon log but not the access log.
#include "logs/logs.hpp"

#include "datapump/base/internal/log.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

namespace datapump::daemon {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The logging thread writes soon after: wait (bounded) until `p` holds `text`.
bool holds(const fs::path& p, const std::string& text) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        if (read(p).find(text) != std::string::npos) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

// One test: open_logs() sets spdlog's process-wide default logger and thread pool once.
TEST(daemon_logs, files_levels_reopen_and_switch) {
    const fs::path dir = fs::temp_directory_path() / ("dp-logs-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const fs::path daemon_log = dir / "daemon.log";
    const fs::path access_log = dir / "access.log";
    ASSERT_EQ(open_logs({.log_file = daemon_log.string(), .access_log = access_log.string()}), "");
    ASSERT_TRUE(configure_logging("error"));
    const auto access = access_line_sink();
    ASSERT_TRUE(access);

    spdlog::info("info-one");
    spdlog::error("error-one");
    access("access-one");
    ASSERT_TRUE(holds(access_log, "access-one\n"));  // not silenced by the level
    ASSERT_TRUE(holds(daemon_log, "error-one"));
    EXPECT_EQ(read(daemon_log).find("info-one"), std::string::npos);
    EXPECT_EQ(read(access_log), "access-one\n");  // the line as given: no timestamp, no level
    // ISO 8601 with the UTC offset, then the level.
    EXPECT_TRUE(read(daemon_log).find(" error [") != std::string::npos) << read(daemon_log);
    EXPECT_EQ(read(daemon_log)[10], 'T');
    EXPECT_TRUE(read(daemon_log)[23] == '+' || read(daemon_log)[23] == '-') << read(daemon_log);

    // logrotate: rename, then SIGUSR1.
    fs::rename(access_log, dir / "access.log.1");
    fs::rename(daemon_log, dir / "daemon.log.1");
    ASSERT_TRUE(configure_logging("info"));
    reopen_logs();
    access("access-two");
    ASSERT_TRUE(holds(access_log, "access-two\n"));
    ASSERT_TRUE(holds(daemon_log, "log files reopened"));
    EXPECT_EQ(read(dir / "access.log.1"), "access-one\n");

    // A reload names other files, then turns the access log off.
    const fs::path other_access = dir / "other-access.log";
    const fs::path other_daemon = dir / "other-daemon.log";
    EXPECT_EQ(set_log_targets({.log_file = other_daemon.string(), .access_log = other_access.string()}), "");
    spdlog::warn("warn-three");
    access("access-three");
    ASSERT_TRUE(holds(other_access, "access-three\n"));
    ASSERT_TRUE(holds(other_daemon, "warn-three"));
    EXPECT_EQ(set_log_targets({.log_file = other_daemon.string(), .access_log = "off"}), "");
    access("access-four");
    spdlog::warn("warn-four");
    ASSERT_TRUE(holds(other_daemon, "warn-four"));  // queued after access-four: that one is done
    EXPECT_EQ(read(other_access), "access-three\n");

    // A target that cannot be opened keeps the old one.
    const std::string why = set_log_targets({.log_file = (dir / "no/such/dir/d.log").string(), .access_log = "off"});
    EXPECT_NE(why.find("no/such/dir/d.log"), std::string::npos) << why;
    spdlog::warn("warn-five");
    EXPECT_TRUE(holds(other_daemon, "warn-five"));
    spdlog::shutdown();
    fs::remove_all(dir);
}

TEST(daemon_logs, journal_stream_must_name_stderr) {
    ::setenv("JOURNAL_STREAM", "1:2", 1);
    EXPECT_FALSE(stderr_is_journal());
    struct stat st {};
    ASSERT_EQ(::fstat(STDERR_FILENO, &st), 0);
    const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    ::setenv("JOURNAL_STREAM", mine.c_str(), 1);
    EXPECT_TRUE(stderr_is_journal());
    ::setenv("JOURNAL_STREAM", (mine + "x").c_str(), 1);
    EXPECT_FALSE(stderr_is_journal());
    ::unsetenv("JOURNAL_STREAM");
    EXPECT_FALSE(stderr_is_journal());
}

}  // namespace
}  // namespace datapump::daemon
