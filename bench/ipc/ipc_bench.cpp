// Command-channel benchmark: datapump's ipc channel and loans against the peers a command channel
// is built from or replaces, in one run, client on CPU 0 and server on CPU 1:
//   latency     round trips: pipe, AF_UNIX seqpacket, busy-polled atomics (the floor), datapump
//               sync commands busy-polling and sleeping
//   throughput  8-byte messages through a raw SPSC ring vs datapump async 64-byte commands
//   bulk        a warm file through a pipe, an AF_UNIX stream and datapump loans, and the memory
//               ceiling (the same checksum over an in-memory copy, no transport)
// Every peer runs --rounds times (rounds interleave the peers, so drift hits all alike); the
// table shows the median over rounds and the spread, then the ratios against the targets, then
// one `figure peer=... kind=... value=...` line per figure for scripts. MB = 10^6 bytes.
// The bulk group also prints, per round, loans / AF_UNIX of that round and the host's steal time
// (CPU time the hypervisor gave to others, from /proc/stat) as a share of the round's CPU time:
// on a shared host the memory-bound peers slow down by up to 2x in rounds with steal, so a
// figure is read together with it (docs/benchmarks.md, "Loans with one memfd per buffer").
// Run: bench/ipc/run.sh [rounds], or build/release/bench/ipc/ipc_bench --help
#include "datapump_side.hpp"
#include "peers.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace ipc_bench;

constexpr const char* default_bulk_dir = "/var/tmp/datapump-bench";
constexpr const char* default_bulk_file = "/var/tmp/datapump-bench/ipc_bulk_1g";
constexpr std::uint64_t default_bulk_bytes = std::uint64_t{1} << 30;

struct options {
    int rounds = 3;
    int iterations = 200'000;
    std::uint64_t messages = 50'000'000;
    std::string bulk_file;
    std::string only;  // empty: everything
};

// One figure over the rounds. A round that measured nothing (the datapump side not wired) makes
// the whole figure n/a rather than a median of fewer rounds.
class series {
public:
    void add(double v) {
        missing_ = missing_ || !(v > 0);
        values_.push_back(v);
    }
    [[nodiscard]] std::optional<double> median() const {
        if (missing_ || values_.empty()) {
            return std::nullopt;
        }
        std::vector<double> v = values_;
        std::sort(v.begin(), v.end());
        const std::size_t n = v.size();
        return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    // Round i's value (n/a when that round measured nothing).
    [[nodiscard]] std::optional<double> at(std::size_t i) const {
        if (i >= values_.size() || !(values_[i] > 0)) {
            return std::nullopt;
        }
        return values_[i];
    }
    [[nodiscard]] std::string spread(int decimals) const {
        if (missing_ || values_.empty()) {
            return "n/a";
        }
        const auto [lo, hi] = std::minmax_element(values_.begin(), values_.end());
        char text[64];
        std::snprintf(text, sizeof text, "%.*f-%.*f", decimals, *lo, decimals, *hi);
        return text;
    }

private:
    std::vector<double> values_;
    bool missing_ = false;
};

std::string format(std::optional<double> v, int decimals) {
    if (!v) {
        return "n/a";
    }
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", decimals, *v);
    return text;
}

// CPU time the hypervisor ran something else while this machine's vCPUs wanted to run (the
// `steal` column of /proc/stat's `cpu` line, all CPUs together), in seconds; 0 where the kernel
// does not account it.
double host_steal_seconds() {
    std::FILE* f = std::fopen("/proc/stat", "re");
    if (f == nullptr) {
        return 0;
    }
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait,
                              &irq, &softirq, &steal);
    std::fclose(f);
    const long tick = sysconf(_SC_CLK_TCK);
    return n == 8 && tick > 0 ? static_cast<double>(steal) / static_cast<double>(tick) : 0;
}

void print_figure(const std::string& peer, const char* kind, std::optional<double> v) {
    std::printf("figure peer=%s kind=%s value=%s\n", peer.c_str(), kind, format(v, 4).c_str());
}

struct latency_row {
    std::string label;
    std::string peer;  // the name in figure lines
    series p50, p99, p999, max;

    void add(const latency_samples& s) {
        // Empty samples give 0 everywhere, which series records as missing.
        const auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
        p50.add(us(s.p50()));
        p99.add(us(s.p99()));
        p999.add(us(s.p999()));
        max.add(us(s.max()));
    }
};

struct rate_row {
    std::string label;
    std::string peer;
    series value;  // per second, in the unit's scale (M msg/s or MB/s)
};

void print_latency(const std::vector<latency_row>& rows) {
    std::printf("\n%-40s %9s %9s %9s %9s   %s\n", "latency, round trip (us)", "p50", "p99", "p99.9", "max",
                "p50 spread");
    for (const auto& r : rows) {
        std::printf("  %-38s %9s %9s %9s %9s   %s\n", r.label.c_str(), format(r.p50.median(), 2).c_str(),
                    format(r.p99.median(), 2).c_str(), format(r.p999.median(), 2).c_str(),
                    format(r.max.median(), 2).c_str(), r.p50.spread(2).c_str());
    }
}

void print_rates(const char* title, const char* unit, const std::vector<rate_row>& rows) {
    std::printf("\n%-40s %9s   %s\n", title, unit, "spread");
    for (const auto& r : rows) {
        std::printf("  %-38s %9s   %s\n", r.label.c_str(), format(r.value.median(), 1).c_str(),
                    r.value.spread(1).c_str());
    }
}

struct ratio_line {
    std::string label;
    std::string kind;
    std::optional<double> value;
    std::string target;  // "<= 2", ">= 5", or empty: for scale only
    bool met;
};

ratio_line make_ratio(std::string label, std::string kind, std::optional<double> num, std::optional<double> den,
                      std::string target, bool lower_is_better, double bound) {
    ratio_line r{std::move(label), std::move(kind), std::nullopt, std::move(target), false};
    if (num && den && *den > 0) {
        r.value = *num / *den;
        r.met = lower_is_better ? *r.value <= bound : *r.value >= bound;
    }
    return r;
}

// ---- the bulk file ----

void write_random_file(const std::string& path, std::uint64_t bytes) {
    std::fprintf(stderr, "ipc_bench: creating %s (%llu MiB of random bytes: zeros would flatter the disk)\n",
                 path.c_str(), static_cast<unsigned long long>(bytes >> 20));
    if (mkdir(default_bulk_dir, 0755) != 0 && errno != EEXIST) {
        die_errno(std::string("mkdir ") + default_bulk_dir);
    }
    const std::string tmp = path + ".tmp";
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        die_errno("create " + tmp);
    }
    std::vector<unsigned char> buffer(std::size_t{1} << 20);
    for (std::uint64_t done = 0; done < bytes;) {
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), bytes - done));
        for (std::size_t filled = 0; filled < want;) {
            const ssize_t n = getrandom(buffer.data() + filled, want - filled, 0);
            if (n < 0 && errno != EINTR) {
                die_errno("getrandom");
            }
            filled += n > 0 ? static_cast<std::size_t>(n) : 0;
        }
        for (std::size_t written = 0; written < want;) {
            const ssize_t n = write(fd, buffer.data() + written, want - written);
            if (n < 0 && errno != EINTR) {
                die_errno("write " + tmp);
            }
            written += n > 0 ? static_cast<std::size_t>(n) : 0;
        }
        done += want;
    }
    if (close(fd) != 0) {
        die_errno("close " + tmp);
    }
    // Renamed only when complete, so an interrupted run never leaves a short file behind.
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        die_errno("rename " + tmp);
    }
}

// The file the bulk peers read: --bulk-file must exist; the default is created when missing.
std::string bulk_file(const options& opt) {
    struct stat st {};
    if (!opt.bulk_file.empty()) {
        if (stat(opt.bulk_file.c_str(), &st) != 0) {
            die_errno("--bulk-file " + opt.bulk_file);
        }
        return opt.bulk_file;
    }
    if (stat(default_bulk_file, &st) != 0 || static_cast<std::uint64_t>(st.st_size) != default_bulk_bytes) {
        write_random_file(default_bulk_file, default_bulk_bytes);
    }
    return default_bulk_file;
}

std::uint64_t file_size(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        die_errno("stat " + path);
    }
    return static_cast<std::uint64_t>(st.st_size);
}

void progress(int round, int rounds, const char* what) {
    std::fprintf(stderr, "ipc_bench: round %d/%d: %s\n", round + 1, rounds, what);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ipc_bench: datapump's command channel and loans against pipes, AF_UNIX sockets, "
                 "shared-memory atomics and a raw SPSC ring"};
    options opt;
    app.add_option("--rounds", opt.rounds, "runs of every peer; figures are medians over them")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    app.add_option("--iterations", opt.iterations, "measured round trips per latency run (plus 10% warm-up)")
        ->check(CLI::Range(1, 1'000'000'000))
        ->capture_default_str();
    app.add_option("--messages", opt.messages, "measured messages / commands per throughput run (plus 10% warm-up)")
        ->check(CLI::Range(std::uint64_t{2}, std::uint64_t{1} << 40))
        ->capture_default_str();
    app.add_option("--bulk-file", opt.bulk_file,
                   std::string("file for the bulk runs (default: ") + default_bulk_file +
                       ", 1 GiB of random bytes, created when missing)");
    app.add_option("--only", opt.only, "run one group only")->check(CLI::IsMember({"latency", "throughput", "bulk"}));
    CLI11_PARSE(app, argc, argv);

    const bool run_latency = opt.only.empty() || opt.only == "latency";
    const bool run_throughput = opt.only.empty() || opt.only == "throughput";
    const bool run_bulk = opt.only.empty() || opt.only == "bulk";
    const std::string bulk_path = run_bulk ? bulk_file(opt) : std::string{};

    std::printf("ipc_bench: %ld CPUs online, client on CPU %d, server on CPU %d; %d round(s)",
                sysconf(_SC_NPROCESSORS_ONLN), client_cpu, server_cpu, opt.rounds);
    if (run_latency) {
        std::printf("; %d round trips", opt.iterations);
    }
    if (run_throughput) {
        std::printf("; %llu messages", static_cast<unsigned long long>(opt.messages));
    }
    if (run_bulk) {
        std::printf("; bulk %s (%llu MiB)", bulk_path.c_str(),
                    static_cast<unsigned long long>(file_size(bulk_path) >> 20));
    }
    std::printf("\n");
    std::fflush(stdout);  // before the progress lines on stderr

    std::vector<latency_row> latency{{"pipe", "pipe", {}, {}, {}, {}},
                                     {"unix seqpacket", "unix", {}, {}, {}, {}},
                                     {"atomic, busy-poll (floor)", "atomic", {}, {}, {}, {}},
                                     {"datapump sync, busy-poll", "datapump_busy", {}, {}, {}, {}},
                                     {"datapump sync, sleeping", "datapump_sleep", {}, {}, {}, {}}};
    std::vector<rate_row> throughput{{"spsc ring, 8 B messages", "spsc_ring", {}},
                                     {"datapump async, 64 B commands", "datapump_async", {}}};
    std::vector<rate_row> bulk{{"pipe (1 MiB pipe)", "pipe", {}},
                               {"unix stream", "unix", {}},
                               {"datapump loans", "datapump_loans", {}},
                               {"memory ceiling (checksum in place)", "memory_ceiling", {}}};

    series loans_over_unix_by_round;
    std::vector<double> steal_share_by_round;  // of the bulk group's CPU time, 0..1

    for (int round = 0; round < opt.rounds; ++round) {
        if (run_latency) {
            progress(round, opt.rounds, "latency");
            latency[0].add(pipe_pingpong(opt.iterations));
            latency[1].add(unix_pingpong(opt.iterations));
            latency[2].add(atomic_pingpong(opt.iterations));
            // datapump side: plugged in by ipc_bench_datapump.cpp (for now datapump_side.cpp)
            latency[3].add(datapump_sync_latency(opt.iterations, true));
            latency[4].add(datapump_sync_latency(opt.iterations, false));
        }
        if (run_throughput) {
            progress(round, opt.rounds, "throughput");
            throughput[0].value.add(spsc_ring_throughput(opt.messages) / 1e6);
            // datapump side: plugged in by ipc_bench_datapump.cpp (for now datapump_side.cpp)
            throughput[1].value.add(datapump_async_throughput(opt.messages) / 1e6);
        }
        if (run_bulk) {
            progress(round, opt.rounds, "bulk");
            const double steal_before = host_steal_seconds();
            const std::uint64_t wall_before = monotonic_ns();
            bulk[0].value.add(bulk_pipe(bulk_path) / 1e6);
            const double unix_mb = bulk_unix(bulk_path) / 1e6;
            bulk[1].value.add(unix_mb);
            // datapump side: plugged in by ipc_bench_datapump.cpp (for now datapump_side.cpp)
            const double loans_mb = datapump_bulk_loans(bulk_path) / 1e6;
            bulk[2].value.add(loans_mb);
            bulk[3].value.add(bulk_memory_ceiling(bulk_path) / 1e6);
            loans_over_unix_by_round.add(unix_mb > 0 ? loans_mb / unix_mb : 0);
            const double cpu_seconds = static_cast<double>(monotonic_ns() - wall_before) / 1e9 *
                                       static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
            steal_share_by_round.push_back(cpu_seconds > 0 ? (host_steal_seconds() - steal_before) / cpu_seconds : 0);
        }
    }

    std::printf("\nmedians over %d round(s); spread = min-max over rounds\n", opt.rounds);
    std::vector<ratio_line> ratios;
    if (run_latency) {
        print_latency(latency);
        ratios.push_back(make_ratio("datapump busy-poll p50 / atomic p50", "busy_p50_over_atomic_p50",
                                    latency[3].p50.median(), latency[2].p50.median(), "<= 2", true, 2.0));
        ratios.push_back(make_ratio("datapump sleeping p50 / unix p50", "sleep_p50_over_unix_p50",
                                    latency[4].p50.median(), latency[1].p50.median(), "<= 1.2", true, 1.2));
    }
    if (run_throughput) {
        print_rates("throughput", "M msg/s", throughput);
        ratios.push_back(make_ratio("datapump async / 20 M cmd/s", "async_over_20m", throughput[1].value.median(), 20.0,
                                    ">= 1", false, 1.0));
        ratios.push_back(make_ratio("datapump async / raw spsc ring", "async_over_ring", throughput[1].value.median(),
                                    throughput[0].value.median(), "", false, 0.0));
    }
    if (run_bulk) {
        print_rates("bulk", "MB/s", bulk);
        std::printf("\n%-40s %9s %9s\n", "bulk, by round", "loans/unix", "host steal");
        for (std::size_t i = 0; i < steal_share_by_round.size(); ++i) {
            std::printf("  round %-32zu %9s %8.1f%%\n", i + 1,
                        format(loans_over_unix_by_round.at(i), 2).c_str(), steal_share_by_round[i] * 100);
        }
        ratios.push_back(make_ratio("datapump loans / unix stream", "loans_over_unix", bulk[2].value.median(),
                                    bulk[1].value.median(), ">= 5", false, 5.0));
        // Issue 14's floor for loans with one memfd per buffer, on the same round's pair.
        ratios.push_back(make_ratio("loans / unix, median of the rounds", "loans_over_unix_by_round",
                                    loans_over_unix_by_round.median(), 1.0, ">= 3", false, 3.0));
        ratios.push_back(make_ratio("datapump loans / memory ceiling", "loans_over_memory", bulk[2].value.median(),
                                    bulk[3].value.median(), "", false, 0.0));
        ratios.push_back(make_ratio("memory ceiling / unix stream", "memory_over_unix", bulk[3].value.median(),
                                    bulk[1].value.median(), "", false, 0.0));
    }

    std::printf("\n%-40s %9s\n", "ratios", "");
    for (const auto& r : ratios) {
        std::string verdict = r.target.empty() ? "(for scale)" : "(target " + r.target + ")";
        if (r.value && !r.target.empty()) {
            verdict += r.met ? " met" : " MISSED";
        }
        std::printf("  %-38s %9s   %s\n", r.label.c_str(), format(r.value, 2).c_str(), verdict.c_str());
    }

    std::printf("\n");
    if (run_latency) {
        for (const auto& r : latency) {
            print_figure(r.peer, "p50_us", r.p50.median());
            print_figure(r.peer, "p99_us", r.p99.median());
            print_figure(r.peer, "p999_us", r.p999.median());
            print_figure(r.peer, "max_us", r.max.median());
        }
    }
    if (run_throughput) {
        for (const auto& r : throughput) {
            print_figure(r.peer, "mmsg_per_s", r.value.median());
        }
    }
    if (run_bulk) {
        for (const auto& r : bulk) {
            print_figure(r.peer, "bulk_mb_per_s", r.value.median());
        }
        std::vector<double> steal = steal_share_by_round;
        std::sort(steal.begin(), steal.end());
        const std::size_t n = steal.size();
        if (n > 0) {
            print_figure("host", "bulk_steal_share", n % 2 == 1 ? steal[n / 2] : (steal[n / 2 - 1] + steal[n / 2]) / 2);
        }
    }
    for (const auto& r : ratios) {
        print_figure("ratio", r.kind.c_str(), r.value);
    }
    return 0;
}
