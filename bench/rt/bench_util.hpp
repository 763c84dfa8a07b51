// Shared by bench/rt/*: percentiles, the competing load (one spinning process per CPU), and the
// accounting that tells whether something else ran during a measurement (CPU used by others, tasks
// created by others).
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>
#include <vector>

namespace rt_bench {

// The nearest-rank percentile of `sorted` (ascending), q in [0, 1].
inline double percentile(const std::vector<double>& sorted, double q) {
    if (sorted.empty()) {
        return 0;
    }
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

inline std::int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline double process_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// One process per online CPU, pinned to it, spinning at normal priority (SCHED_OTHER, nice 0):
// "a competing busy process on each core". They die with the parent (PR_SET_PDEATHSIG).
class busy_load {
public:
    busy_load() = default;
    busy_load(const busy_load&) = delete;
    busy_load& operator=(const busy_load&) = delete;
    ~busy_load() { stop(); }

    [[nodiscard]] static unsigned cpus() { return static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN)); }

    void start() {
        long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
        for (long cpu = 0; cpu < cpus; ++cpu) {
            pid_t pid = ::fork();
            if (pid == 0) {
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(static_cast<std::size_t>(cpu), &set);
                ::sched_setaffinity(0, sizeof(set), &set);
                volatile std::uint64_t spin = 0;
                while (true) {
                    spin = spin + 1;
                }
            }
            if (pid < 0) {
                std::perror("fork");
                std::exit(2);
            }
            pids_.push_back(pid);
        }
        // Let them reach their CPUs and build up their share before anything is measured.
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }

    void stop() {
        for (pid_t pid : pids_) {
            ::kill(pid, SIGKILL);
        }
        for (pid_t pid : pids_) {
            int status = 0;
            ::waitpid(pid, &status, 0);
        }
        pids_.clear();
    }

private:
    std::vector<pid_t> pids_;
};

// CPU used on the machine during an interval by anything but this process and its (reaped)
// children, from /proc/stat: a disturbance check (another program running during the
// measurement). Also the hypervisor's steal time.
class cpu_audit {
public:
    void start() {
        read_stat(busy0_, steal0_, tasks0_);
        self0_ = own_seconds();
        t0_ = monotonic_ns();
    }
    // Call after the load's children were reaped.
    void stop() {
        read_stat(busy1_, steal1_, tasks1_);
        self1_ = own_seconds();
        t1_ = monotonic_ns();
    }
    [[nodiscard]] double wall_seconds() const { return static_cast<double>(t1_ - t0_) / 1e9; }
    // Seconds of CPU (summed over CPUs) used by others; ±0.02 (tick accounting).
    [[nodiscard]] double others_seconds() const {
        double busy = static_cast<double>(busy1_ - busy0_) / ticks_per_second();
        return std::max(0.0, busy - (self1_ - self0_));
    }
    // Tasks (processes or threads) created on the machine during the interval, ours included: a
    // test another program started during the measurement shows here even when it was too short
    // to show in others_seconds (a real-time thread of another program stalls a VP at once).
    [[nodiscard]] std::uint64_t tasks_created() const { return tasks1_ - tasks0_; }
    [[nodiscard]] double steal_seconds() const {
        return static_cast<double>(steal1_ - steal0_) / ticks_per_second();
    }

private:
    static double ticks_per_second() { return static_cast<double>(::sysconf(_SC_CLK_TCK)); }
    static double own_seconds() {
        auto secs = [](const rusage& r) {
            return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
                   static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
        };
        rusage self{};
        rusage children{};
        ::getrusage(RUSAGE_SELF, &self);
        ::getrusage(RUSAGE_CHILDREN, &children);
        return secs(self) + secs(children);
    }
    static void read_stat(std::uint64_t& busy, std::uint64_t& steal, std::uint64_t& tasks) {
        busy = 0;
        steal = 0;
        tasks = 0;
        std::FILE* f = std::fopen("/proc/stat", "r");
        if (f == nullptr) {
            return;
        }
        unsigned long long v[8] = {};
        // cpu  user nice system idle iowait irq softirq steal ...
        if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                        &v[6], &v[7]) == 8) {
            busy = v[0] + v[1] + v[2] + v[5] + v[6];
            steal = v[7];
        }
        // "processes N": tasks (processes and threads) created since boot.
        char line[256];
        while (std::fgets(line, sizeof line, f) != nullptr) {
            unsigned long long n = 0;
            if (std::sscanf(line, "processes %llu", &n) == 1) {
                tasks = n;
                break;
            }
        }
        std::fclose(f);
    }

    std::uint64_t busy0_ = 0;
    std::uint64_t busy1_ = 0;
    std::uint64_t steal0_ = 0;
    std::uint64_t steal1_ = 0;
    std::uint64_t tasks0_ = 0;
    std::uint64_t tasks1_ = 0;
    double self0_ = 0;
    double self1_ = 0;
    std::int64_t t0_ = 0;
    std::int64_t t1_ = 0;
};

}  // namespace rt_bench
