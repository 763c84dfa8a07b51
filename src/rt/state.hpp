// File: src/rt/state.hpp
//
// The records the system, its VPs and the handles share. Internal to rt/.
//
//   system_state ──owns──> port_state (by name)
//                ──owns──> vp (thread + scheduler)
//   connection handle ──shares──> connection_state <──shares── the VP's scheduler
//   connection_state ──shares──> pool <──shares── loan records (kept buffers)
#pragma once

#include "admission.hpp"
#include "pool.hpp"

#include "datapump/rt/handler.hpp"
#include "datapump/rt/qos.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace datapump::rt::detail {

struct connection_state;
struct job;
class direct_mover;

// Where a chain leaves this process: its last stage is a port in another process or machine. The
// VP hands it the buffer (send) and the buffer stays in the chain until the link resumes the job
// (system: vp::resume) once the peer is done with it, or fails it.
class outbound_link {
public:
    virtual ~outbound_link() = default;
    // VP thread. Never blocks.
    virtual void send(const job& j) = 0;
    // VP thread: the source ended and every buffer came back.
    virtual void end() = 0;
    // The connection is disconnected (the VP no longer runs it): tell the peer, forget the rest.
    virtual void close() = 0;
};

struct port_state {
    std::string name;
    handler fn;
    duration declared{0};
    // The budget in force: declared, or measured by the first connect. Written under the
    // system's mutex; relaxed loads (monitoring).
    std::atomic<std::int64_t> budget_ns{0};
    connection_state* in = nullptr;  // guarded by the system's mutex
    // The system went first (its destructor): the handle owns this record and deletes it on close.
    bool orphaned = false;
};

// Counters the VP writes (relaxed: a single writer; readers take monitoring snapshots).
struct connection_counters {
    std::atomic<std::uint64_t> released{0};
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> late{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> starved{0};
    std::atomic<std::uint64_t> jitter_misses{0};
    std::atomic<std::uint64_t> overruns{0};
    std::atomic<std::uint64_t> reclaims{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::int64_t> max_start_error_ns{0};
    std::atomic<std::int64_t> max_response_ns{0};

    static void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) {
        c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
    }
    static void raise(std::atomic<std::int64_t>& c, std::int64_t v) {
        if (v > c.load(std::memory_order_relaxed)) {
            c.store(v, std::memory_order_relaxed);
        }
    }
};

struct connection_state : std::enable_shared_from_this<connection_state> {
    std::uint64_t id = 0;
    unsigned vp = 0;
    std::vector<port_state*> stages;      // fixed at connect; the ports outlive the connection
    std::vector<duration> budgets;        // per stage
    task admitted{};                      // C, T, D as admission saw them
    double density = 0;
    double rate = 0;
    duration jitter{0};
    late_policy on_late = late_policy::deliver_late;
    std::shared_ptr<pool> buffers;        // null for a direct connection
    // A direct connection: stage 0 is the engine's move (stages[0] is null), at most
    // `direct_limit` chunks posted at once.
    std::shared_ptr<direct_mover> direct;
    std::size_t direct_limit = 0;
    std::size_t buffer_size = 0;          // qos.buffer_size (the chunk of a direct connection)
    // Fed by a peer (the receiving end of an inter-process or inter-machine connection): no
    // releases of its own; stage 0 (null) is the peer, buffers arrive (vp::arrive).
    bool fed = false;
    // The last stage (null) is a port elsewhere, reached through this link.
    std::shared_ptr<outbound_link> out;
    time_point start{};                   // t_0

    // Scheduler state: the VP's thread only (or run_until's).
    std::uint64_t next_sequence = 0;
    bool source_ended = false;
    bool has_loans = false;
    unsigned in_flight = 0;
    bool queued = false;   // has an entry in the scheduler's release queue
    bool parked = false;   // a direct connection at its limit of chunks: queued again when one ends
    bool loaning = false;  // in the scheduler's list of connections with kept buffers

    connection_counters counters;

    // Set (release) once the system has disconnected it (a port closed, or the system went): the
    // handle then lets go without calling the system, which may be gone. Acquire in the handle.
    std::atomic<bool> detached{false};

    // finished: set once by the VP (release), read by any thread (acquire) and waited on.
    std::atomic<bool> finished{false};
    std::mutex finished_mutex;
    std::condition_variable finished_cv;

    // The first buffer number (at least `from`) whose ideal instant is after `now`.
    [[nodiscard]] std::uint64_t first_after(time_point now, std::uint64_t from) const {
        if (now < start) {
            return from;
        }
        double elapsed = static_cast<double>((now - start).count());
        auto k = static_cast<std::uint64_t>(elapsed * rate / 1e9);
        k = std::max(k, from);
        while (ideal(k) <= now) {
            ++k;
        }
        while (k > from && ideal(k - 1) > now) {
            --k;
        }
        return k;
    }

    // The ideal instant of buffer k: t_0 + k/rate, computed from k (no accumulated drift).
    [[nodiscard]] time_point ideal(std::uint64_t k) const {
        double ns = static_cast<double>(k) * 1e9 / rate;
        return start + std::chrono::nanoseconds(std::llround(ns));
    }
};

// One buffer of one connection, between stages.
struct job {
    connection_state* c = nullptr;
    unsigned stage = 0;
    pool::slot_ref slot{0, nullptr};
    std::uint64_t sequence = 0;
    time_point ideal{};
    time_point deadline{};
    std::size_t length = 0;

    static held_buffer make_held(std::shared_ptr<loan_record> record) { return held_buffer(std::move(record)); }

    // Calls f(upcall&) with a calibration upcall on `scratch` (upcall is built only by friends).
    template <class F>
    static void with_calibration_upcall(std::span<std::byte> scratch, unsigned stage, unsigned stages, time_point now,
                                        F&& f) {
        upcall up;
        up.data_ = scratch;
        up.length_ = scratch.size();
        up.stage_ = stage;
        up.stages_ = stages;
        up.ideal_ = now;
        up.deadline_ = now;
        up.calibrating_ = true;
        f(up);
    }
};

// The figures every connection needs (checked before anything is claimed); nullopt: fine.
[[nodiscard]] std::optional<refusal> check_qos(const qos& q, bool direct);

}  // namespace datapump::rt::detail
