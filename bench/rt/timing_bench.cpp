// Upcall timing error (issue 6): how far after its ideal instant t_k = t_0 + k*T a periodic piece
// of work starts, and how often it finishes after t_k + T (a deadline miss: the delay bound is one
// period), for
//   rt     an rt::system with its defaults (one VP per CPU, pinned, SCHED_FIFO 50, sleep on a
//          futex to spin_window before each instant, then spin); one connection source -> sink at
//          the rate, 4 KiB buffers; the source records clock.now() - up.ideal(), the source fills
//          the buffer and the sink checksums it
//   naive  a std::thread at normal priority that loops on clock_nanosleep(CLOCK_MONOTONIC,
//          TIMER_ABSTIME, t_k), then does the same fill + checksum on its own 4 KiB buffer and
//          records now - t_k: what people write
//   naive-fifo  the control (not one of the peers): the same loop pinned to CPU 0 at
//          SCHED_FIFO 50, like a VP but without rt's code: what the kernel and the VM give a
//          real-time sleeper, to tell rt's errors from the platform's
// with or without a competing load (--load busy: one spinning process pinned to each CPU, normal
// priority, forked before the measurement and killed after). 0.5 s of warm-up is not recorded.
// One machine-readable line per run:
//   rate=1000 peer=rt load=busy n=10000 p50_us=.. p99_us=.. p999_us=.. max_us=.. misses=.. ...
// Run: bench/rt/run.sh (medians and ratios), or build/release/bench/rt/rt_timing_bench --help
#include "bench_util.hpp"

#include "datapump/base/log.hpp"
#include "datapump/rt/system.hpp"

#include <pthread.h>
#include <sched.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace rt = datapump::rt;
using namespace std::chrono_literals;
using rt_bench::percentile;

constexpr std::size_t buffer_bytes = 4096;

struct options {
    double rate = 1000;
    double seconds = 10;
    double warmup = 0.5;
    std::string peer = "rt";
    std::string load = "idle";
    std::string priority = "fifo";  // rt only: the best the VPs ask for
    int spin_window_us = -1;        // rt only: -1 = the system's default
    long budget_us = 20;            // rt only: declared budget per stage
    bool engine = false;            // rt only: start the system's engine loop
    long timer_slack_ns = -1;       // naive only: PR_SET_TIMERSLACK for its thread (-1: the default, 50 us)
};

// "The work": the source fills the buffer from the sequence number, the sink checksums it
// (FNV-1a over every byte: a dependent chain, a few microseconds for 4 KiB).
void fill(std::span<std::byte> buf, std::uint64_t seq) {
    auto* words = reinterpret_cast<std::uint64_t*>(buf.data());
    std::size_t n = buf.size() / sizeof(std::uint64_t);
    for (std::size_t i = 0; i < n; ++i) {
        words[i] = seq * 0x9E3779B97F4A7C15ULL + i;
    }
}

std::uint64_t checksum(std::span<const std::byte> buf) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (std::byte b : buf) {
        h ^= static_cast<std::uint64_t>(b);
        h *= 0x100000001b3ULL;
    }
    return h;
}

// What one run measured.
struct record {
    std::vector<double> error_us;     // start - ideal, per recorded buffer
    std::vector<double> response_us;  // end of the work - ideal
    std::uint64_t misses = 0;         // recorded buffers whose work ended after ideal + period
    std::uint64_t sink = 0;           // checksums (kept so the work is not optimised away)
    std::string extra;                // peer-specific fields
};

std::int64_t ns_since(rt::time_point a, rt::time_point b) { return (a - b).count(); }

bool run_rt(const options& opt, std::uint64_t first, std::uint64_t n, record& rec) {
    rt::system_config config;
    // The engine loop (post()) is not used here: off, so that only the VPs run (an earlier
    // version of it spun on EEXIST from its single-issuer ring). --engine turns it on.
    config.engine = opt.engine;
    if (opt.priority == "none") {
        config.priority = rt::kernel_priority::none;
    } else if (opt.priority == "nice") {
        config.priority = rt::kernel_priority::nice;
    } else if (opt.priority == "deadline") {
        config.priority = rt::kernel_priority::deadline;
    }
    if (opt.spin_window_us >= 0) {
        config.spin_window = std::chrono::microseconds(opt.spin_window_us);
    }
    auto created = rt::system::create(config);
    if (!created) {
        std::fprintf(stderr, "rt::system::create failed\n");
        return false;
    }
    rt::system& sys = **created;
    const rt::clock& clock = sys.time();
    const std::uint64_t last = first + n - 1;
    std::int64_t period_ns = 0;  // set before the first upcall (connect returns first)

    auto source = sys.open_port(
        "source",
        [&](rt::upcall& up) {
            rt::time_point start = clock.now();
            std::uint64_t seq = up.sequence();
            fill(up.data(), seq);
            if (up.calibrating()) {
                return;
            }
            if (seq >= first && seq <= last) {
                rec.error_us[seq - first] = static_cast<double>(ns_since(start, up.ideal())) / 1e3;
            }
            if (seq >= last) {
                // >=: a release skipped for want of a free buffer (starved) never reaches the
                // source, so the last sequence may be one it never sees.
                up.end_of_stream();
            }
        },
        rt::port_options{.budget = std::chrono::microseconds(opt.budget_us)});
    auto sink = sys.open_port(
        "sink",
        [&](rt::upcall& up) {
            rec.sink += checksum(up.data());
            if (up.calibrating()) {
                return;
            }
            rt::time_point end = clock.now();
            std::uint64_t seq = up.sequence();
            if (seq >= first && seq <= last) {
                std::int64_t response = ns_since(end, up.ideal());
                rec.response_us[seq - first] = static_cast<double>(response) / 1e3;
                if (response > period_ns) {
                    ++rec.misses;
                }
            }
        },
        rt::port_options{.budget = std::chrono::microseconds(opt.budget_us)});
    if (!source || !sink) {
        std::fprintf(stderr, "open_port failed\n");
        return false;
    }
    rt::qos q;
    q.rate = opt.rate;
    q.buffer_size = buffer_bytes;
    q.buffer_count = 4;
    // period_ns is read by the sink on the VP; the VP sees the connection (and so this store,
    // through the VP's inbox mutex) only after connect() queued it.
    period_ns = static_cast<std::int64_t>(1e9 / opt.rate + 0.5);
    auto conn = sys.connect({"source", "sink"}, q);
    if (!conn) {
        std::fprintf(stderr, "connect refused: %s\n", conn.error().reason.c_str());
        return false;
    }
    auto timeout = std::chrono::duration<double>(opt.seconds + opt.warmup + 10.0);
    bool finished = conn->wait_finished(std::chrono::duration_cast<rt::duration>(timeout));
    rt::connection_stats s = conn->stats();
    rt::vp_info vp = sys.vp(conn->vp());
    conn->disconnect();
    source->close();
    sink->close();
    std::string prio(rt::to_string(vp.priority));
    std::replace(prio.begin(), prio.end(), ' ', '_');
    char text[512];
    std::snprintf(text, sizeof text,
                  "sys_misses=%llu late=%llu starved=%llu overruns=%llu max_start_error_us=%.1f "
                  "max_response_us=%.1f vp=%u cpu=%d prio=%s finished=%d",
                  static_cast<unsigned long long>(s.misses()), static_cast<unsigned long long>(s.late),
                  static_cast<unsigned long long>(s.starved), static_cast<unsigned long long>(s.overruns),
                  static_cast<double>(s.max_start_error.count()) / 1e3,
                  static_cast<double>(s.max_response.count()) / 1e3, vp.index, vp.cpu,
                  prio.c_str(), finished ? 1 : 0);
    rec.extra = text;
    if (!vp.priority_note.empty()) {
        std::fprintf(stderr, "rt: vp%u: %s\n", vp.index, vp.priority_note.c_str());
    }
    return finished;
}

bool run_naive(const options& opt, std::uint64_t first, std::uint64_t n, record& rec) {
    const std::uint64_t last = first + n - 1;
    const auto period_ns = static_cast<std::int64_t>(1e9 / opt.rate + 0.5);
    int slack = 0;
    const bool fifo = opt.peer == "naive-fifo";
    std::string fifo_note;
    std::thread worker([&] {
        if (fifo) {
            // The control: the same loop as an rt VP's thread is set up (CPU 0, SCHED_FIFO 50),
            // without rt's code: what the kernel and this VM give a real-time sleeper.
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(0, &set);
            sched_param param{};
            param.sched_priority = 50;
            int pin = ::sched_setaffinity(0, sizeof(set), &set);
            int err = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &param);
            fifo_note = pin == 0 && err == 0 ? "SCHED_FIFO cpu=0" : "SCHED_FIFO_refused";
        }
        if (opt.timer_slack_ns >= 0) {
            ::prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(std::max(1L, opt.timer_slack_ns)));
        }
        slack = ::prctl(PR_GET_TIMERSLACK);
        std::vector<std::byte> buf(buffer_bytes);
        std::int64_t t0 = rt_bench::monotonic_ns() + 1'000'000;
        for (std::uint64_t k = 0; k <= last; ++k) {
            // From k, not accumulated: no drift (the same as rt's ideal instants).
            std::int64_t tk = t0 + static_cast<std::int64_t>(static_cast<double>(k) * 1e9 / opt.rate + 0.5);
            timespec ts{};
            ts.tv_sec = static_cast<time_t>(tk / 1'000'000'000);
            ts.tv_nsec = static_cast<long>(tk % 1'000'000'000);
            while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
            }
            std::int64_t start = rt_bench::monotonic_ns();
            fill(buf, k);
            rec.sink += checksum(buf);
            std::int64_t end = rt_bench::monotonic_ns();
            if (k >= first) {
                rec.error_us[k - first] = static_cast<double>(start - tk) / 1e3;
                rec.response_us[k - first] = static_cast<double>(end - tk) / 1e3;
                if (end - tk > period_ns) {
                    ++rec.misses;
                }
            }
        }
    });
    worker.join();
    rec.extra = std::string("prio=") + (fifo ? fifo_note : "SCHED_OTHER") + " timer_slack_ns=" + std::to_string(slack);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    options opt;
    CLI::App app{"rt_timing_bench: periodic upcall timing error, rt::system against a clock_nanosleep loop"};
    app.add_option("--rate", opt.rate, "instants per second (1000, 100, ...)")->check(CLI::Range(1.0, 100000.0));
    app.add_option("--seconds", opt.seconds, "recorded seconds (after the warm-up)")->check(CLI::Range(0.1, 3600.0));
    app.add_option("--warmup", opt.warmup, "seconds run before recording")->check(CLI::Range(0.0, 60.0));
    app.add_option("--peer", opt.peer, "rt, naive, or naive-fifo (the control: the naive loop pinned to CPU 0 at "
                                       "SCHED_FIFO 50, as a VP is)")
        ->check(CLI::IsMember({"rt", "naive", "naive-fifo"}));
    app.add_option("--load", opt.load, "idle, or busy: one spinning process pinned to each CPU")
        ->check(CLI::IsMember({"idle", "busy"}));
    app.add_option("--priority", opt.priority, "rt: what the VPs ask the kernel for")
        ->check(CLI::IsMember({"deadline", "fifo", "nice", "none"}));
    app.add_option("--spin-window-us", opt.spin_window_us, "rt: the VPs' spin window (default: the system's)");
    app.add_option("--budget-us", opt.budget_us, "rt: declared budget of each of the two stages");
    app.add_option("--timer-slack-ns", opt.timer_slack_ns, "naive: the thread's timer slack (default: as inherited)");
    app.add_flag("--engine", opt.engine, "rt: start the system's engine loop (unused here; off by default)");
    std::string log_level = "warn";
    app.add_option("--log", log_level, "datapump log level");
    CLI11_PARSE(app, argc, argv);
    datapump::configure_logging(log_level);

    const auto first = static_cast<std::uint64_t>(opt.warmup * opt.rate + 0.5);
    const auto n = static_cast<std::uint64_t>(opt.seconds * opt.rate + 0.5);
    record rec;
    rec.error_us.assign(n, -1.0);
    rec.response_us.assign(n, -1.0);

    rt_bench::cpu_audit audit;
    rt_bench::busy_load load;
    audit.start();
    if (opt.load == "busy") {
        load.start();
    }
    bool ok = opt.peer == "rt" ? run_rt(opt, first, n, rec) : run_naive(opt, first, n, rec);
    load.stop();
    audit.stop();

    std::vector<double> errors;
    std::vector<double> responses;
    errors.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (rec.error_us[i] >= 0) {
            errors.push_back(rec.error_us[i]);
        }
        if (rec.response_us[i] >= 0) {
            responses.push_back(rec.response_us[i]);
        }
    }
    std::sort(errors.begin(), errors.end());
    std::sort(responses.begin(), responses.end());
    // Buffers never run (starved releases, a run that did not finish) are misses too.
    std::uint64_t unrun = n - std::min<std::uint64_t>(n, responses.size());
    // Tasks this program created: the load's processes, and rt's VP threads (one per CPU; the
    // engine is off) or the naive thread. More during the run: another program started something.
    unsigned vps = std::max(1U, std::thread::hardware_concurrency());
    std::uint64_t own_tasks = (opt.load == "busy" ? rt_bench::busy_load::cpus() : 0U) +
                              (opt.peer == "rt" ? vps + (opt.engine ? 1U : 0U) : 1U);
    std::uint64_t created = audit.tasks_created();
    std::uint64_t foreign = created > own_tasks ? created - own_tasks : 0;
    std::printf("rate=%g peer=%s load=%s n=%zu p50_us=%.2f p99_us=%.2f p999_us=%.2f max_us=%.2f misses=%llu "
                "resp_p99_us=%.2f resp_max_us=%.2f %s others_cpu_s=%.2f foreign_tasks=%llu steal_s=%.2f wall_s=%.2f "
                "sum=%llx\n",
                opt.rate, opt.peer.c_str(), opt.load.c_str(), errors.size(), percentile(errors, 0.50),
                percentile(errors, 0.99), percentile(errors, 0.999), errors.empty() ? 0.0 : errors.back(),
                static_cast<unsigned long long>(rec.misses + unrun), percentile(responses, 0.99),
                responses.empty() ? 0.0 : responses.back(), rec.extra.c_str(), audit.others_seconds(),
                static_cast<unsigned long long>(foreign), audit.steal_seconds(), audit.wall_seconds(),
                static_cast<unsigned long long>(rec.sink & 0xffff));
    return ok ? 0 : 1;
}
