// logs: process_* metrics (docs/daemon.md, "Metrics"), read as Prometheus's client libraries do.
#include "latency_histogram.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

namespace datapump::http {
namespace {

// Seconds since the epoch at boot (/proc/stat "btime").
std::uint64_t boot_time_s() {
    std::ifstream in("/proc/stat");
    std::string key;
    while (in >> key) {
        if (key == "btime") {
            std::uint64_t t = 0;
            in >> t;
            return t;
        }
        in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return 0;
}

// /proc/self/stat field 22: the start time in clock ticks after boot. The command name (field 2)
// may hold spaces and parentheses: fields are counted after its last ')'.
std::uint64_t start_ticks() {
    std::ifstream in("/proc/self/stat");
    std::string line;
    std::getline(in, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) {
        return 0;
    }
    std::istringstream rest(line.substr(close + 1));
    std::string field;
    for (int i = 3; i < 22 && (rest >> field); ++i) {
    }
    std::uint64_t ticks = 0;
    rest >> ticks;
    return ticks;
}

std::uint64_t open_fds() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        return 0;
    }
    std::uint64_t n = 0;
    // readdir is safe here: this thread owns `dir` (the tidy check is about sharing one DIR).
    while (const dirent* e = ::readdir(dir)) {  // NOLINT(concurrency-mt-unsafe)
        if (e->d_name[0] != '.') {
            ++n;
        }
    }
    ::closedir(dir);
    return n > 0 ? n - 1 : 0;  // less the directory's own descriptor
}

}  // namespace

process_view read_process_view() {
    process_view v;
    static const std::uint64_t start_ms = [] {
        const long hz = ::sysconf(_SC_CLK_TCK);
        return hz > 0 ? boot_time_s() * 1000 + start_ticks() * 1000 / static_cast<std::uint64_t>(hz) : 0;
    }();
    v.start_time_ms = start_ms;
    rusage use{};
    if (::getrusage(RUSAGE_SELF, &use) == 0) {
        const auto us = [](const timeval& t) {
            return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(t.tv_usec);
        };
        v.cpu_us = us(use.ru_utime) + us(use.ru_stime);
    }
    if (std::FILE* statm = std::fopen("/proc/self/statm", "re")) {
        unsigned long long size = 0;
        unsigned long long resident = 0;
        if (std::fscanf(statm, "%llu %llu", &size, &resident) == 2) {
            v.resident_bytes = resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        }
        std::fclose(statm);
    }
    v.open_fds = open_fds();
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        v.max_fds = lim.rlim_cur == RLIM_INFINITY ? 0 : static_cast<std::uint64_t>(lim.rlim_cur);
    }
    return v;
}

}  // namespace datapump::http
