#include "vp.hpp"

#include "datapump/base/internal/log.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace datapump::rt::detail {

namespace {

// SCHED_DEADLINE needs sched_setattr, which glibc 2.36 does not wrap.
struct sched_attr_v1 {
    std::uint32_t size;
    std::uint32_t sched_policy;
    std::uint64_t sched_flags;
    std::int32_t sched_nice;
    std::uint32_t sched_priority;
    std::uint64_t sched_runtime;
    std::uint64_t sched_deadline;
    std::uint64_t sched_period;
};

#ifndef SCHED_DEADLINE
constexpr int SCHED_DEADLINE = 6;
#endif

// The VP's reservation under SCHED_DEADLINE: up to half a CPU in every millisecond. The VP sleeps
// between upcalls; the reservation bounds what a runaway handler can take.
constexpr std::uint64_t deadline_period_ns = 1'000'000;
constexpr std::uint64_t deadline_runtime_ns = 500'000;

int try_deadline() {
    sched_attr_v1 attr{};
    attr.size = sizeof(attr);
    attr.sched_policy = SCHED_DEADLINE;
    attr.sched_runtime = deadline_runtime_ns;
    attr.sched_deadline = deadline_period_ns;
    attr.sched_period = deadline_period_ns;
    if (::syscall(SYS_sched_setattr, 0, &attr, 0) == 0) {
        return 0;
    }
    return errno;
}

int futex_wait_until(std::atomic<std::uint32_t>* word, std::uint32_t seen, const timespec* abs) {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (FUTEX_CLOCK_REALTIME not set).
    return static_cast<int>(::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_BITSET_PRIVATE,
                                      seen, abs, nullptr, FUTEX_BITSET_MATCH_ANY));
}

}  // namespace

priority_outcome apply_kernel_priority(const vp_options& options) {
    priority_outcome out;
    std::string note;
    auto refused = [&note](std::string_view what, int err) {
        if (!note.empty()) {
            note += "; ";
        }
        note += std::string(what) + " refused (" + errno_text(err) + ")";
    };
    kernel_priority step = options.priority;
    if (step == kernel_priority::deadline) {
        int err = try_deadline();
        if (err == 0) {
            out.granted = kernel_priority::deadline;
        } else {
            refused("SCHED_DEADLINE", err);
            step = kernel_priority::fifo;
        }
    }
    if (out.granted != kernel_priority::deadline && options.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(static_cast<std::size_t>(options.cpu), &set);
        if (::sched_setaffinity(0, sizeof(set), &set) == 0) {
            out.cpu = options.cpu;
        } else {
            refused("pinning to cpu " + std::to_string(options.cpu), errno);
        }
    }
    if (out.granted == kernel_priority::none && step == kernel_priority::fifo) {
        sched_param param{};
        param.sched_priority = options.fifo_priority;
        int err = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &param);
        if (err == 0) {
            out.granted = kernel_priority::fifo;
        } else {
            refused("SCHED_FIFO " + std::to_string(options.fifo_priority), err);
            step = kernel_priority::nice;
        }
    }
    if (out.granted == kernel_priority::none && step == kernel_priority::nice) {
        if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), -20) == 0) {
            out.granted = kernel_priority::nice;
        } else {
            refused("nice -20", errno);
        }
    }
    out.note = note;
    if (note.empty()) {
        spdlog::info("{}: {} (cpu {})", options.name, to_string(out.granted), out.cpu);
    } else {
        spdlog::warn("{}: running with {} (cpu {}): {}", options.name, to_string(out.granted), out.cpu, note);
    }
    return out;
}

vp::vp(const clock& time, const vp_options& options)
    : clock_(time), options_(options), scheduler_(time), threaded_(time.is_steady()) {
    if (threaded_) {
        thread_ = std::thread([this] { main(); });
        std::unique_lock lock(mutex_);
        done_cv_.wait(lock, [this] { return started_; });
    } else {
        outcome_.granted = kernel_priority::none;
        outcome_.note = "manual clock: no thread";
    }
}

vp::~vp() {
    if (threaded_) {
        stop_.store(true, std::memory_order_release);
        ring();
        thread_.join();
    }
}

priority_outcome vp::outcome() const {
    std::lock_guard lock(mutex_);
    return outcome_;
}

void vp::ring() {
    // release: the VP's acquire load of the bell sees the command queued before it.
    bell_.fetch_add(1, std::memory_order_release);
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&bell_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

void vp::queue(command cmd) {
    if (!threaded_) {
        apply(cmd);
        return;
    }
    {
        std::lock_guard lock(mutex_);
        inbox_.push_back(std::move(cmd));
    }
    ring();
}

void vp::apply(command& cmd) {
    switch (cmd.what) {
    case command::kind::add: scheduler_.add(std::move(cmd.c)); break;
    case command::kind::remove: scheduler_.remove(cmd.removed); break;
    case command::kind::resume: scheduler_.resume(cmd.c, cmd.chunk); break;
    case command::kind::arrive:
        if (!scheduler_.arrive(cmd.c, cmd.chunk.j) && cmd.refused) {
            cmd.refused();
        }
        break;
    case command::kind::end: scheduler_.end_of_stream(cmd.c); break;
    }
}

void vp::add(std::shared_ptr<connection_state> c) {
    queue(command{.what = command::kind::add, .c = std::move(c), .removed = nullptr, .done = nullptr,
                  .chunk = {}, .refused = nullptr});
}

void vp::resume(std::shared_ptr<connection_state> c, const chunk_done& done) {
    queue(command{.what = command::kind::resume, .c = std::move(c), .removed = nullptr, .done = nullptr,
                  .chunk = done, .refused = nullptr});
}

void vp::arrive(std::shared_ptr<connection_state> c, const job& j, std::function<void()> refused) {
    chunk_done carrier{};
    carrier.j = j;
    queue(command{.what = command::kind::arrive, .c = std::move(c), .removed = nullptr, .done = nullptr,
                  .chunk = carrier, .refused = std::move(refused)});
}

void vp::end_of_stream(std::shared_ptr<connection_state> c) {
    queue(command{.what = command::kind::end, .c = std::move(c), .removed = nullptr, .done = nullptr,
                  .chunk = {}, .refused = nullptr});
}

void vp::remove(const connection_state* c) {
    if (!threaded_) {
        scheduler_.remove(c);
        return;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    queue(command{.what = command::kind::remove, .c = nullptr, .removed = c, .done = done, .chunk = {},
                  .refused = nullptr});
    std::unique_lock lock(mutex_);
    done_cv_.wait(lock, [&done] { return done->load(std::memory_order_relaxed); });
}

void vp::take_commands() {
    std::vector<command> commands;
    {
        std::lock_guard lock(mutex_);
        commands.swap(inbox_);
    }
    bool removed = false;
    for (command& cmd : commands) {
        apply(cmd);
        removed = removed || cmd.what == command::kind::remove;
    }
    if (removed) {
        {
            std::lock_guard lock(mutex_);
            for (command& cmd : commands) {
                if (cmd.done) {
                    cmd.done->store(true, std::memory_order_relaxed);  // read under the same mutex
                }
            }
        }
        done_cv_.notify_all();
    }
}

void vp::adapt_spin(std::int64_t late_ns, std::int64_t gap_ns) {
    // The lateness estimate: a maximum that decays by 1/128 per sleep, so that one stall is
    // forgotten after a few hundred sleeps and a machine whose wake-ups are slow keeps paying.
    std::int64_t est = wake_error_ns_.load(std::memory_order_relaxed);
    est = std::max(late_ns, est - est / 128);
    wake_error_ns_.store(est, std::memory_order_relaxed);
    gap_ns_ = gap_ns_ == 0 ? gap_ns : gap_ns_ + (gap_ns - gap_ns_) / 16;
    std::int64_t want = est + est / 2 + 5'000;
    want = std::min(want, options_.max_spin_window.count());
    want = std::min(want, gap_ns_ / 4);
    want = std::max(want, options_.spin_window.count());
    spin_ns_.store(want, std::memory_order_relaxed);
}

void vp::wait_until(time_point t, std::uint32_t seen) {
    if (t == time_point::max()) {
        futex_wait_until(&bell_, seen, nullptr);
        return;
    }
    time_point now = clock_.now();
    duration spin(spin_ns_.load(std::memory_order_relaxed));
    if (spin < options_.spin_window) {
        spin = options_.spin_window;
    }
    if (t - now > spin) {
        time_point wake_at = t - spin;
        auto wake = wake_at.time_since_epoch();
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(wake);
        timespec abs{};
        abs.tv_sec = static_cast<time_t>(secs.count());
        abs.tv_nsec = static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(wake - secs).count());
        futex_wait_until(&bell_, seen, &abs);
        time_point woke = clock_.now();
        if (woke >= wake_at) {  // slept to the end (not rung early): a sample of the lateness
            adapt_spin((woke - wake_at).count(), (t - now).count());
        }
        return;
    }
    // The spin: until the instant, or a command, or stop.
    while (clock_.now() < t && bell_.load(std::memory_order_acquire) == seen) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
}

void vp::main() {
    std::string thread_name = options_.name.substr(0, 15);
    ::pthread_setname_np(::pthread_self(), thread_name.c_str());
    priority_outcome got = apply_kernel_priority(options_);
    {
        std::lock_guard lock(mutex_);
        outcome_ = std::move(got);
        started_ = true;
    }
    done_cv_.notify_all();
    std::uint32_t handled = 0;
    while (true) {
        // acquire: pairs with ring()'s release; the inbox read below sees what was queued.
        std::uint32_t seen = bell_.load(std::memory_order_acquire);
        if (stop_.load(std::memory_order_acquire)) {
            break;
        }
        if (seen != handled) {
            take_commands();
            handled = seen;
        }
        if (scheduler_.step()) {
            continue;
        }
        wait_until(scheduler_.next_event(), seen);
    }
    // Connections still here are dropped with the scheduler (the system disconnected them).
}

}  // namespace datapump::rt::detail
