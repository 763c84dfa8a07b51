#include "logs/logs.hpp"

#include "datapump/base/error.hpp"
#include "datapump/base/internal/log.hpp"

#include <spdlog/async.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace datapump::daemon {
namespace {

// The syslog priority of a level, as the journal reads it from "<N>" at a line's start.
class priority_flag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm& /*tm*/, spdlog::memory_buf_t& dest) override {
        char digit = '6';
        switch (msg.level) {
            case spdlog::level::trace:
            case spdlog::level::debug: digit = '7'; break;
            case spdlog::level::info: digit = '6'; break;
            case spdlog::level::warn: digit = '4'; break;
            case spdlog::level::err: digit = '3'; break;
            case spdlog::level::critical: digit = '2'; break;
            default: break;
        }
        dest.push_back(digit);
    }
    [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<priority_flag>();
    }
};

// A sink writing to stderr or to a file it can reopen by path. Its format is fixed when it is
// made: configure_logging() sets a pattern on every logger, which this sink ignores, so a level
// change (or a reload) cannot take the journal's priorities or the timestamp's offset away.
class line_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    line_sink(std::string path, std::FILE* file, std::unique_ptr<spdlog::formatter> format)
        : path_(std::move(path)), file_(file) {
        formatter_ = std::move(format);
    }
    line_sink(const line_sink&) = delete;
    line_sink& operator=(const line_sink&) = delete;
    ~line_sink() override { close_file(); }

    // Empty, or why the file could not be opened again (the old one is kept).
    // Only the signal-waiting thread changes path_, and only it calls this.
    std::string reopen() { return path_.empty() ? std::string() : switch_to(std::string(path_), nullptr); }

    // Writes to `target` from now on: "stderr", "off" (nothing) or a path; with `format` when
    // given. Empty, or why the file could not be opened (the old target is kept).
    std::string switch_to(const std::string& target, std::unique_ptr<spdlog::formatter> format) {
        std::FILE* fresh = nullptr;
        if (target == "stderr") {
            fresh = stderr;
        } else if (target != "off" && !target.empty()) {
            fresh = std::fopen(target.c_str(), "ae");
            if (fresh == nullptr) {
                return target + ": " + datapump::errno_text(errno);
            }
        }
        const std::lock_guard lock(mutex_);
        close_file();
        file_ = fresh;
        path_ = fresh == stderr ? std::string() : target;
        if (format) {
            formatter_ = std::move(format);
        }
        return {};
    }

    [[nodiscard]] std::string target() {
        const std::lock_guard lock(mutex_);
        return file_ == stderr ? std::string("stderr") : file_ == nullptr ? std::string("off") : path_;
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        if (file_ == nullptr) {
            return;  // off
        }
        spdlog::memory_buf_t line;
        formatter_->format(msg, line);
        std::fwrite(line.data(), 1, line.size(), file_);
        std::fflush(file_);
    }
    void flush_() override {
        if (file_ != nullptr) {
            std::fflush(file_);
        }
    }
    void set_pattern_(const std::string& /*pattern*/) override {}
    void set_formatter_(std::unique_ptr<spdlog::formatter> /*formatter*/) override {}

private:
    void close_file() {
        if (file_ != nullptr && file_ != stderr) {
            std::fclose(file_);
        }
        file_ = nullptr;
    }

    std::string path_;  // the file's path; empty: stderr or off
    std::FILE* file_;   // stderr, a file, or null: off
};

struct log_state {
    std::shared_ptr<line_sink> daemon_sink;
    std::shared_ptr<line_sink> access_sink;
    std::shared_ptr<spdlog::async_logger> access_logger;
};

log_state& state() {
    static log_state s;
    return s;
}

// A sink to "stderr", "off" or a path (opened for appending, created 0640 by the umask's leave):
// switch_to() reads the target, as a reload's does.
std::shared_ptr<line_sink> make_sink(const std::string& target, std::unique_ptr<spdlog::formatter> format,
                                     std::string_view what, std::string& problem) {
    auto sink = std::make_shared<line_sink>(std::string(), nullptr, std::move(format));
    if (std::string why = sink->switch_to(target, nullptr); !why.empty()) {
        problem = "cannot open the " + std::string(what) + " " + why +
                  "; create its folder and let the daemon's user write there, or give another path";
        return nullptr;
    }
    return sink;
}

std::unique_ptr<spdlog::formatter> daemon_format(bool journal) {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    if (journal) {
        // The journal stamps each line itself; the priority prefix is its level.
        f->add_flag<priority_flag>('*').set_pattern("<%*>%l [%t] %v");
    } else {
        f->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l [%t] %v");
    }
    return f;
}

}  // namespace

bool stderr_is_journal() {
    // secure_getenv: read once from main before any thread changes the environment.
    const char* env = ::secure_getenv("JOURNAL_STREAM");
    if (env == nullptr) {
        return false;
    }
    const std::string_view text(env);
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) {
        return false;
    }
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    const auto d = std::from_chars(text.data(), text.data() + colon, dev);
    const auto i = std::from_chars(text.data() + colon + 1, text.data() + text.size(), ino);
    if (d.ec != std::errc{} || i.ec != std::errc{} || d.ptr != text.data() + colon ||
        i.ptr != text.data() + text.size()) {
        return false;
    }
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) {
        return false;
    }
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

std::string open_logs(const log_targets& targets) {
    std::string problem;
    auto& s = state();
    const bool journal = targets.log_file == "stderr" && stderr_is_journal();
    s.daemon_sink = make_sink(targets.log_file, daemon_format(journal), "daemon log (--log-file)", problem);
    if (!s.daemon_sink) {
        return problem;
    }
    s.access_sink = make_sink(targets.access_log, std::make_unique<spdlog::pattern_formatter>("%v"),
                              "access log (--access-log)", problem);
    if (!s.access_sink) {
        return problem;
    }
    // One worker thread for both: lines of the two logs to one stderr never interleave.
    spdlog::init_thread_pool(8192, 1);
    auto logger = std::make_shared<spdlog::async_logger>("datapumpd", s.daemon_sink, spdlog::thread_pool(),
                                                         spdlog::async_overflow_policy::overrun_oldest);
    spdlog::set_default_logger(logger);
    // Not registered with spdlog: spdlog::set_level() (the daemon log's level) and set_pattern()
    // reach registered loggers only, and the access log has neither.
    s.access_logger = std::make_shared<spdlog::async_logger>("access", s.access_sink, spdlog::thread_pool(),
                                                             spdlog::async_overflow_policy::overrun_oldest);
    s.access_logger->set_level(spdlog::level::info);
    return {};
}

std::string set_log_targets(const log_targets& targets) {
    auto& s = state();
    if (!s.daemon_sink || !s.access_sink) {
        return "the logs are not open";
    }
    std::string failed;
    if (s.daemon_sink->target() != targets.log_file) {
        const bool journal = targets.log_file == "stderr" && stderr_is_journal();
        if (std::string why = s.daemon_sink->switch_to(targets.log_file, daemon_format(journal)); !why.empty()) {
            failed += "cannot open the daemon log " + why + "; ";
        }
    }
    if (s.access_sink->target() != targets.access_log) {
        if (std::string why = s.access_sink->switch_to(targets.access_log, nullptr); !why.empty()) {
            failed += "cannot open the access log " + why + "; ";
        }
    }
    if (!failed.empty()) {
        failed += "kept the old target";
    }
    return failed;
}

std::function<void(std::string_view)> access_line_sink() {
    auto logger = state().access_logger;
    if (!logger) {
        return {};
    }
    return [logger](std::string_view line) { logger->info("{}", line); };
}

void reopen_logs() {
    auto& s = state();
    std::vector<std::string> failed;
    for (const auto& sink : {s.daemon_sink, s.access_sink}) {
        if (sink) {
            if (std::string why = sink->reopen(); !why.empty()) {
                failed.push_back(std::move(why));
            }
        }
    }
    if (failed.empty()) {
        spdlog::info("SIGUSR1: log files reopened");
    }
    for (const auto& why : failed) {
        spdlog::error("SIGUSR1: cannot reopen {}; still writing to the file it had open", why);
    }
}

}  // namespace datapump::daemon
