// A 3-stage pipeline of 1 MiB buffers (issue 6): source -> mid -> sink, as
//   rt      one rt connection {source, mid, sink} (rt::system defaults: the chain runs on one VP,
//           SCHED_FIFO, each stage upcalled with the same buffer: zero copies), at the highest
//           rate admission takes (1e6 buffers/s) with tiny declared budgets, so the VP is behind
//           whenever a buffer takes over 1 us and then runs buffers back to back; with
//           --rate-auto at 1.5x the capacity a 0.5 s probe at 1e6/s measured (still behind,
//           without releasing and starving ~1e6 instants a second); the engine loop is off
//   queues  the same stage functions on 3 threads joined by 2 bounded SPSC queues (mutex +
//           condition variables, 4 slots of 1 MiB each) that COPY the buffer at each hand-off:
//           the producer copies its buffer into a free slot (outside the lock), the consumer works
//           on the slot in place and frees it; 2 copies per buffer in all
// Work per stage (--work):
//   full   source writes every word of the buffer, mid xors every word in place, sink sums every
//          word: throughput (GB/s, buffers/s)
//   none   each stage touches one word: what is left is the hand-off
//   spin   each stage spins --spin-ns on the clock without touching memory: a known, memory-free
//          work that keeps rt behind its 1 us period, so its back-to-back cycle can be measured
// Every stage is timed from inside (clock on entry and exit) and leaves its exit time in the
// buffer's header; the next stage's entry minus that is the hand-off (stamp method; it includes
// one clock read, clock_ns). The per-stage overhead is (busy time per buffer - summed stage work
// per buffer) / 3, where busy time is the VP's wall time for rt (valid when back_to_back=1: the
// VP never waited for a release) and the process's CPU time for the queues (3 threads, 2 CPUs).
// One machine-readable line per run.
// Run: bench/rt/run.sh, or build/release/bench/rt/rt_pipeline_bench --help
#include "bench_util.hpp"

#include "datapump/base/log.hpp"
#include "datapump/rt/system.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace rt = datapump::rt;
using rt_bench::monotonic_ns;
using rt_bench::percentile;

constexpr std::size_t buffer_bytes = std::size_t{1} << 20;
constexpr unsigned stages = 3;

enum class work_kind : std::uint8_t { none, spin, full };

struct options {
    std::string peer = "rt";
    std::string work = "full";
    double seconds = 3;
    double warmup = 0.3;
    long spin_ns = 500;
    double rate = 1e6;       // rt
    bool rate_auto = false;  // rt: 1.5x the capacity a probe at 1e6 measured
    long budget_ns = 100;    // rt: declared per stage
    std::size_t slots = 4;   // rt buffer_count, queue slots
    bool engine = false;     // rt: start the system's engine loop
};

// The first 64 bytes of every buffer: written and read by the stages, carried by the copies.
struct header {
    std::uint64_t sequence;
    std::int64_t out_ns;  // when the previous stage returned
    std::uint64_t value;
};

// Written by the stage threads (one writer per field: a single relaxed store), read by main.
struct meter {
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> work_ns{0};  // Σ over stages of (exit - entry)
    std::atomic<std::uint64_t> sink{0};
    std::atomic<bool> recording{false};
    // Hand-off samples (stage 1 and 2 entries), pre-allocated; only while recording.
    std::vector<std::int64_t> handoff[2];
    std::size_t handoff_n[2] = {0, 0};

    void add_work(std::int64_t ns) {
        work_ns.store(work_ns.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(ns),
                      std::memory_order_relaxed);
    }
};

// The stage functions, shared by both peers. `buf` is the whole 1 MiB buffer.
class stage_fns {
public:
    stage_fns(work_kind kind, long spin_ns, meter& m) : kind_(kind), spin_ns_(spin_ns), m_(m) {}

    void run(unsigned stage, std::span<std::byte> buf, std::uint64_t seq) {
        std::int64_t in = monotonic_ns();
        auto* h = reinterpret_cast<header*>(buf.data());
        if (stage > 0 && m_.recording.load(std::memory_order_relaxed)) {
            auto& samples = m_.handoff[stage - 1];
            std::size_t& n = m_.handoff_n[stage - 1];
            if (n < samples.size()) {
                samples[n++] = in - h->out_ns;
            }
        }
        auto* words = reinterpret_cast<std::uint64_t*>(buf.data() + sizeof(header));
        const std::size_t count = (buf.size() - sizeof(header)) / sizeof(std::uint64_t);
        switch (stage) {
        case 0:
            h->sequence = seq;
            h->value = seq;
            if (kind_ == work_kind::full) {
                for (std::size_t i = 0; i < count; ++i) {
                    words[i] = seq + i;
                }
            }
            break;
        case 1:
            h->value ^= 0x5555;
            if (kind_ == work_kind::full) {
                for (std::size_t i = 0; i < count; ++i) {
                    words[i] ^= 0x5a5a5a5a5a5a5a5aULL;
                }
            }
            break;
        default: {
            std::uint64_t sum = h->value;
            if (kind_ == work_kind::full) {
                for (std::size_t i = 0; i < count; ++i) {
                    sum += words[i];
                }
            }
            m_.sink.store(m_.sink.load(std::memory_order_relaxed) + sum, std::memory_order_relaxed);
            break;
        }
        }
        if (kind_ == work_kind::spin) {
            while (monotonic_ns() - in < spin_ns_) {
            }
        }
        std::int64_t out = monotonic_ns();
        h->out_ns = out;
        m_.add_work(out - in);
        if (stage == stages - 1) {
            m_.completed.store(m_.completed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
    }

private:
    work_kind kind_;
    std::int64_t spin_ns_;
    meter& m_;
};

struct snapshot {
    std::int64_t t_ns = 0;
    double cpu_s = 0;
    std::uint64_t completed = 0;
    std::uint64_t work_ns = 0;
};

snapshot take(const meter& m) {
    snapshot s;
    s.t_ns = monotonic_ns();
    s.cpu_s = rt_bench::process_cpu_seconds();
    s.completed = m.completed.load(std::memory_order_relaxed);
    s.work_ns = m.work_ns.load(std::memory_order_relaxed);
    return s;
}

// Waits the warm-up, measures for `seconds`: the two snapshots.
std::pair<snapshot, snapshot> measure(const options& opt, meter& m) {
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.warmup));
    snapshot a = take(m);
    m.recording.store(true, std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.seconds));
    m.recording.store(false, std::memory_order_relaxed);
    snapshot b = take(m);
    return {a, b};
}

// ---- rt ----

bool run_rt(const options& opt, stage_fns& fns, meter& m, std::pair<snapshot, snapshot>& window,
            std::string& extra, bool& back_to_back) {
    rt::system_config config;
    config.engine = opt.engine;  // post() is unused here: only the VPs run (see timing_bench.cpp)
    auto created = rt::system::create(config);
    if (!created) {
        std::fprintf(stderr, "rt::system::create failed\n");
        return false;
    }
    rt::system& sys = **created;
    auto handler = [&fns](rt::upcall& up) {
        if (up.calibrating()) {
            return;
        }
        fns.run(up.stage(), up.data(), up.sequence());
    };
    rt::port_options po{.budget = std::chrono::nanoseconds(opt.budget_ns)};
    auto p0 = sys.open_port("source", handler, po);
    auto p1 = sys.open_port("mid", handler, po);
    auto p2 = sys.open_port("sink", handler, po);
    if (!p0 || !p1 || !p2) {
        std::fprintf(stderr, "open_port failed\n");
        return false;
    }
    rt::qos q;
    q.rate = opt.rate;
    if (opt.rate_auto) {
        // A probe at the highest rate admission takes: what the VP completes back to back. Then
        // the run at 1.5x that: still behind (back to back), but without releasing and starving
        // ~1e6 instants a second.
        q.rate = 1e6;
        q.delay = std::chrono::milliseconds(100);
        q.buffer_size = buffer_bytes;
        q.buffer_count = opt.slots;
        auto probe = sys.connect({"source", "mid", "sink"}, q);
        if (!probe) {
            std::fprintf(stderr, "connect refused: %s\n", probe.error().reason.c_str());
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        std::uint64_t c0 = m.completed.load(std::memory_order_relaxed);
        std::int64_t t0 = monotonic_ns();
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        std::uint64_t c1 = m.completed.load(std::memory_order_relaxed);
        std::int64_t t1 = monotonic_ns();
        probe->disconnect();
        double capacity = static_cast<double>(c1 - c0) * 1e9 / static_cast<double>(t1 - t0);
        q.rate = std::clamp(1.5 * capacity, 1.0, 1e6);
    }
    q.delay = std::chrono::milliseconds(100);
    q.buffer_size = buffer_bytes;
    q.buffer_count = opt.slots;
    auto conn = sys.connect({"source", "mid", "sink"}, q);
    if (!conn) {
        std::fprintf(stderr, "connect refused: %s\n", conn.error().reason.c_str());
        return false;
    }
    rt::connection_stats before = conn->stats();
    window = measure(opt, m);
    rt::connection_stats s = conn->stats();
    // Behind all the time (buffers completed well under the rate asked for, releases starved):
    // the VP never waits, and its wall time is all upcalls and scheduling. Otherwise it also
    // waited for releases.
    std::uint64_t starved = s.starved - before.starved;
    double secs = static_cast<double>(window.second.t_ns - window.first.t_ns) / 1e9;
    auto done = static_cast<double>(window.second.completed - window.first.completed);
    back_to_back = starved > 0 && done < 0.9 * q.rate * secs;
    rt::vp_info vp = sys.vp(conn->vp());
    double density = conn->density();
    conn->disconnect();
    p0->close();
    p1->close();
    p2->close();
    std::string prio(rt::to_string(vp.priority));
    std::replace(prio.begin(), prio.end(), ' ', '_');
    char text[400];
    std::snprintf(text, sizeof text,
                  "asked_rate=%.0f released=%llu completed_total=%llu starved=%llu late=%llu overruns=%llu "
                  "density=%.3f prio=%s",
                  q.rate, static_cast<unsigned long long>(s.released), static_cast<unsigned long long>(s.completed),
                  static_cast<unsigned long long>(starved), static_cast<unsigned long long>(s.late),
                  static_cast<unsigned long long>(s.overruns), density, prio.c_str());
    extra = text;
    return true;
}

// ---- copying queues ----

// SPSC, bounded, holding buffers by value: push copies the producer's bytes into a slot.
class copy_queue {
public:
    copy_queue(std::size_t slots, std::size_t size) : size_(size), slots_(slots), storage_(slots * size) {}

    // Copies `src` into a free slot. False when closed.
    bool push(std::span<const std::byte> src) {
        {
            std::unique_lock lock(mutex_);
            not_full_.wait(lock, [this] { return count_ < slots_ || closed_; });
            if (closed_) {
                return false;
            }
        }
        std::memcpy(slot(tail_), src.data(), std::min(src.size(), size_));  // the slot is the producer's
        {
            std::lock_guard lock(mutex_);
            tail_ = (tail_ + 1) % slots_;
            ++count_;
        }
        not_empty_.notify_one();
        return true;
    }
    // The oldest full slot (the consumer works on it in place, then calls pop_done). Empty span
    // when closed and drained.
    std::span<std::byte> front() {
        std::unique_lock lock(mutex_);
        not_empty_.wait(lock, [this] { return count_ > 0 || closed_; });
        if (count_ == 0) {
            return {};
        }
        return {slot(head_), size_};
    }
    void pop_done() {
        {
            std::lock_guard lock(mutex_);
            head_ = (head_ + 1) % slots_;
            --count_;
        }
        not_full_.notify_one();
    }
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        not_full_.notify_all();
        not_empty_.notify_all();
    }

private:
    std::byte* slot(std::size_t i) { return storage_.data() + i * size_; }

    std::size_t size_;
    std::size_t slots_;
    std::vector<std::byte> storage_;
    std::mutex mutex_;
    std::condition_variable not_full_;
    std::condition_variable not_empty_;
    std::size_t head_ = 0;   // consumer's
    std::size_t tail_ = 0;   // producer's
    std::size_t count_ = 0;  // guarded by mutex_
    bool closed_ = false;    // guarded by mutex_
};

bool run_queues(const options& opt, stage_fns& fns, meter& m, std::pair<snapshot, snapshot>& window,
                std::string& extra) {
    copy_queue q1(opt.slots, buffer_bytes);
    copy_queue q2(opt.slots, buffer_bytes);
    std::atomic<bool> stop{false};
    // Pre-fault everything before the clock starts (the rt pool is pre-faulted too).
    std::vector<std::byte> own(buffer_bytes, std::byte{1});
    std::thread source([&] {
        for (std::uint64_t seq = 0; !stop.load(std::memory_order_relaxed); ++seq) {
            fns.run(0, own, seq);
            if (!q1.push(own)) {
                break;
            }
        }
    });
    std::thread mid([&] {
        while (true) {
            std::span<std::byte> b = q1.front();
            if (b.empty()) {
                break;
            }
            fns.run(1, b, 0);
            bool pushed = q2.push(b);
            q1.pop_done();
            if (!pushed) {
                break;
            }
        }
    });
    std::thread sink([&] {
        while (true) {
            std::span<std::byte> b = q2.front();
            if (b.empty()) {
                break;
            }
            fns.run(2, b, 0);
            q2.pop_done();
        }
    });
    window = measure(opt, m);
    stop.store(true, std::memory_order_relaxed);
    q1.close();
    q2.close();
    source.join();
    mid.join();
    sink.join();
    extra = "copies_per_buffer=2";
    return true;
}

// The median cost of one clock read (pairs of back-to-back reads): what a stamp adds.
double clock_read_ns() {
    std::vector<double> d(10000);
    for (double& v : d) {
        std::int64_t a = monotonic_ns();
        std::int64_t b = monotonic_ns();
        v = static_cast<double>(b - a);
    }
    std::sort(d.begin(), d.end());
    return percentile(d, 0.5);
}

}  // namespace

int main(int argc, char** argv) {
    options opt;
    CLI::App app{"rt_pipeline_bench: a 3-stage pipeline of 1 MiB buffers, rt (zero copies) against copying queues"};
    app.add_option("--peer", opt.peer, "rt or queues")->check(CLI::IsMember({"rt", "queues"}));
    app.add_option("--work", opt.work, "full (touch every word), none (one word), spin (--spin-ns per stage)")
        ->check(CLI::IsMember({"full", "none", "spin"}));
    app.add_option("--seconds", opt.seconds, "measured seconds")->check(CLI::Range(0.1, 600.0));
    app.add_option("--warmup", opt.warmup, "seconds before measuring")->check(CLI::Range(0.0, 60.0));
    app.add_option("--spin-ns", opt.spin_ns, "work=spin: ns per stage")->check(CLI::Range(0L, 1'000'000L));
    app.add_option("--rate", opt.rate, "rt: buffers per second asked for")->check(CLI::Range(1.0, 1e6));
    app.add_flag("--rate-auto", opt.rate_auto, "rt: 1.5x the capacity measured by a probe at 1e6/s");
    app.add_option("--budget-ns", opt.budget_ns, "rt: declared budget per stage")
        ->check(CLI::Range(1L, 1'000'000'000L));
    app.add_option("--slots", opt.slots, "rt buffer_count and queue slots")->check(CLI::Range(2, 64));
    app.add_flag("--engine", opt.engine, "rt: start the system's engine loop (unused here; off by default)");
    std::string log_level = "warn";
    app.add_option("--log", log_level, "datapump log level");
    CLI11_PARSE(app, argc, argv);
    datapump::configure_logging(log_level);

    work_kind kind = opt.work == "full" ? work_kind::full : opt.work == "none" ? work_kind::none : work_kind::spin;
    meter m;
    for (auto& samples : m.handoff) {
        samples.assign(2'000'000, 0);
    }
    stage_fns fns(kind, opt.spin_ns, m);
    double clock_ns = clock_read_ns();

    rt_bench::cpu_audit audit;
    audit.start();
    std::pair<snapshot, snapshot> w;
    std::string extra;
    bool back_to_back = false;
    bool ok = opt.peer == "rt" ? run_rt(opt, fns, m, w, extra, back_to_back) : run_queues(opt, fns, m, w, extra);
    audit.stop();
    if (!ok) {
        return 1;
    }
    // Tasks this program created: rt's VP threads (one per CPU, engine off) or the 3 stage threads.
    unsigned vps = std::max(1U, std::thread::hardware_concurrency());
    std::uint64_t own_tasks = opt.peer == "rt" ? vps + (opt.engine ? 1U : 0U) : 3U;
    std::uint64_t created = audit.tasks_created();
    std::uint64_t foreign = created > own_tasks ? created - own_tasks : 0;
    const snapshot& a = w.first;
    const snapshot& b = w.second;
    double secs = static_cast<double>(b.t_ns - a.t_ns) / 1e9;
    auto buffers = static_cast<double>(b.completed - a.completed);
    double per_buffer_cpu_ns = buffers > 0 ? (b.cpu_s - a.cpu_s) * 1e9 / buffers : 0;
    double per_buffer_wall_ns = buffers > 0 ? secs * 1e9 / buffers : 0;
    double per_buffer_work_ns = buffers > 0 ? static_cast<double>(b.work_ns - a.work_ns) / buffers : 0;
    // The time the pipeline was busy per buffer. rt: the VP's wall time (one thread, busy all the
    // time when back to back; its CPU time is short of it by what the kernel's RT throttling took,
    // and the stages' work, timed on the wall clock, includes that). queues: the CPU time of the
    // three threads (they share 2 CPUs and sleep when blocked).
    bool wall_basis = opt.peer == "rt";
    double busy_ns = wall_basis ? per_buffer_wall_ns : per_buffer_cpu_ns;
    std::vector<double> handoff;
    for (unsigned i = 0; i < 2; ++i) {
        for (std::size_t k = 0; k < m.handoff_n[i]; ++k) {
            handoff.push_back(static_cast<double>(m.handoff[i][k]));
        }
    }
    std::sort(handoff.begin(), handoff.end());
    std::printf("peer=%s work=%s buffers=%.0f seconds=%.2f buffers_per_s=%.0f gbps=%.3f wall_ns_per_buffer=%.0f "
                "cpu_ns_per_buffer=%.0f work_ns_per_buffer=%.0f overhead_ns_per_stage=%.1f overhead_basis=%s "
                "back_to_back=%d handoff_p50_ns=%.0f handoff_p99_ns=%.0f clock_ns=%.0f %s others_cpu_s=%.2f "
                "foreign_tasks=%llu steal_s=%.2f sum=%llx\n",
                opt.peer == "rt" && opt.rate_auto ? "rt-auto" : opt.peer.c_str(), opt.work.c_str(), buffers, secs,
                buffers / secs,
                buffers * static_cast<double>(buffer_bytes) / secs / 1e9, per_buffer_wall_ns, per_buffer_cpu_ns,
                per_buffer_work_ns, (busy_ns - per_buffer_work_ns) / stages, wall_basis ? "wall" : "cpu",
                opt.peer == "rt" ? (back_to_back ? 1 : 0) : 1, percentile(handoff, 0.5),
                percentile(handoff, 0.99), clock_ns, extra.c_str(), audit.others_seconds(),
                static_cast<unsigned long long>(foreign), audit.steal_seconds(),
                static_cast<unsigned long long>(m.sink.load() & 0xffff));
    return 0;
}
