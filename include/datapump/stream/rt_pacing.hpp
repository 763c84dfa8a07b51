// File: datapump/stream/rt_pacing.hpp
//
// Paced streams on rt/ (docs/daemon.md, "Pacing and admission"; docs/rt.md, "The daemon on rt").
// Each paced stream is an rt timer connection: at each of its instants a VP upcalls the stream's
// port, which grants the stream one piece of credit (bytes it may send) and, when the stream is
// waiting for credit, calls the stream's wake function. The stream's own thread (its event loop)
// takes from the credit as it sends; rt never touches the stream itself.
//
//   rt_pacing (one per server) ──admits──> rt_stream (one per paced stream, owned by its thread)
//   rt_stream ──owns──> port "stream-<id>" + timer connection {rate/piece per second, piece bytes}
//             ──shares──> tick state: credit + wake <──shares── the port's handler (on a VP)
//
// The piece: the stream's burst, raised to rate / max_ticks_per_second (so that a stream ticks at
// most that often: 50/s by default) and to min_piece (64 KiB; at most a second of the rate), and
// lowered to an hour of its rate (a sane longest period). Each tick is a VP wake-up, an upcall and
// a loop wake-up: a client asking `burst=1` must not make its stream cost 1000 of them a second
// (45 such streams filled a VP and locked every other paced stream out).
// The credit is a token bucket one piece deep that starts full: the start-up burst stands for the
// connection's first instant, whose upcall grants nothing; each later instant grants one piece,
// capped at the depth (a stream that could not send keeps at most one piece). A stream thus
// sends a piece at once, then one piece per period: `rate` bytes per second on average.
//
// Admission: the connection's density is tick_budget / period (the declared budget of one upcall;
// delay bound = one period). A stream that does not fit any VP (system_config::max_density) is
// refused with rt's reason, counted in refusals().
//
// Thread-safety: rt_pacing's members may be called from any thread. An rt_stream belongs to one
// thread (its owner: allowance, consume, release); its wake function runs on a VP and must only
// post to the owner (never block, never call rt). The rt_pacing must outlive its rt_streams.
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/rt/system.hpp"

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

DATAPUMP_API_BEGIN

namespace datapump::stream {

// The bytes a paced stream may send: granted by ticks (any thread), taken by the stream's owner.
// A token bucket of `depth` bytes that starts full, filled in whole pieces.
//
// Thread-safety: grant() from any thread; the rest from the owner's thread. Lost wake-ups are
// impossible: allowance() marks the stream waiting before it looks at the credit a last time,
// and grant() adds the credit before it looks at the mark (both sequentially consistent).
class credit {
public:
    credit(std::uint64_t piece, std::uint64_t depth);
    credit(const credit&) = delete;
    credit& operator=(const credit&) = delete;

    // Adds one piece, at most up to the depth. True when the owner was waiting for credit (the
    // caller wakes it; the mark is cleared, so one wake-up per wait).
    bool grant();
    // Owner: how many of `want` bytes may go now (min(want, credit)). 0 when there is no credit:
    // the owner is then marked waiting, and the next grant() returns true.
    [[nodiscard]] std::uint64_t allowance(std::uint64_t want);
    // Owner: takes `n` bytes (n <= the last allowance).
    void consume(std::uint64_t n);

    [[nodiscard]] std::uint64_t available() const { return bytes_.load(std::memory_order_relaxed); }
    [[nodiscard]] bool waiting() const { return waiting_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t piece() const { return piece_; }
    [[nodiscard]] std::uint64_t depth() const { return depth_; }

private:
    std::uint64_t piece_;
    std::uint64_t depth_;
    std::atomic<std::uint64_t> bytes_;
    std::atomic<bool> waiting_{false};
};

struct rt_pacing_config {
    // The declared execution-time budget of one tick's upcall (what admission charges). An upcall
    // adds credit and, when the stream waits, posts one task to its loop (a mutex, an eventfd
    // write that wakes the loop): 2-20 us in a debug build, rarely up to 100 us; longer ones are
    // counted as overruns, which cost nothing else (the deadline is a whole period, >= 1 ms).
    rt::duration tick_budget = std::chrono::microseconds(20);
    // The most ticks per second one stream gets: its piece is raised to rate / this. 50 (a piece
    // every 20 ms at the most) keeps a stream's density at 0.001 (20 us x 50), so one VP takes
    // 900 streams whatever bursts they ask; a network stream cannot tell 20 ms pieces from 1 ms
    // ones once TCP has buffered them.
    std::uint32_t max_ticks_per_second = 50;
    // The smallest piece (bytes), capped at one second of the stream's rate: below ~3.2 MB/s it
    // ticks fewer than 50 times a second (a 64 KiB send is what a socket takes in one go anyway).
    std::uint64_t min_piece = 65536;
};

// The piece of a stream at `rate` (> 0) bytes per second that asked for bursts of `burst` bytes:
// max(burst, ceil(rate / max_ticks_per_second), min(min_piece, rate)), at most rate * 3600, at
// least 1.
[[nodiscard]] std::uint64_t rt_piece(std::uint64_t rate, std::uint64_t burst, std::uint32_t max_ticks_per_second,
                                     std::uint64_t min_piece);

class rt_pacing;

// One paced stream's pacing (empty: unpaced, every allowance is granted). Move-only; destroying
// it releases it.
class rt_stream {
public:
    rt_stream();
    rt_stream(rt_stream&& other) noexcept;
    rt_stream& operator=(rt_stream&& other) noexcept;
    rt_stream(const rt_stream&) = delete;
    rt_stream& operator=(const rt_stream&) = delete;
    ~rt_stream();

    [[nodiscard]] explicit operator bool() const { return record_ != nullptr; }
    // See credit::allowance and consume; unpaced: `want`, and consume does nothing.
    [[nodiscard]] std::uint64_t allowance(std::uint64_t want);
    void consume(std::uint64_t n);
    [[nodiscard]] std::uint64_t piece() const;
    [[nodiscard]] std::uint64_t available() const;
    // The rt connection's figures (0 / empty when unpaced).
    [[nodiscard]] rt::duration period() const;
    [[nodiscard]] unsigned vp() const;
    [[nodiscard]] rt::connection_stats stats() const;
    // Ends the pacing: closes the port, which disconnects the timer connection (waiting until no
    // VP runs its upcall: briefly, and never for the owner's thread), and adds its deadline misses
    // and overruns to rt_pacing's totals. Idempotent.
    void release();

private:
    friend class rt_pacing;
    struct DATAPUMP_INTERNAL record;
    rt_stream(rt_pacing* owner, std::unique_ptr<record> r);
    rt_pacing* owner_ = nullptr;
    std::unique_ptr<record> record_;
};

class rt_pacing {
public:
    explicit rt_pacing(rt::system& system, rt_pacing_config config = {});
    rt_pacing(const rt_pacing&) = delete;
    rt_pacing& operator=(const rt_pacing&) = delete;
    ~rt_pacing();  // logs the streams still admitted (their owners must have released them)

    // Admits stream `id` (unique among the live ones) at `rate` (> 0) bytes per second with bursts
    // of `burst`: opens port "stream-<id>" and connects it as a timer connection. `wake` runs on a
    // VP when credit arrives for the stream while it waits (it must only post to the owner).
    // Refusals (counted): rt's (density, bad figures), or the port's (name taken).
    [[nodiscard]] std::expected<rt_stream, rt::refusal> admit(std::uint64_t id, std::uint64_t rate,
                                                              std::uint64_t burst, std::function<void()> wake);

    // Monitoring snapshots.
    [[nodiscard]] std::uint64_t connections() const;
    [[nodiscard]] std::uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }
    // Deadline misses (connection_stats::misses) and budget overruns: the live streams' and those
    // of every stream released, summed.
    [[nodiscard]] std::uint64_t deadline_misses() const;
    [[nodiscard]] std::uint64_t overruns() const;

    [[nodiscard]] const rt_pacing_config& config() const { return config_; }
    [[nodiscard]] rt::system& system() const { return system_; }

private:
    friend class rt_stream;
    void release(rt_stream::record& r);
    template <class F>
    std::uint64_t sum_live(F f) const;

    rt::system& system_;
    rt_pacing_config config_;
    mutable std::mutex mutex_;
    std::unordered_map<std::uint64_t, rt_stream::record*> live_;  // guarded by mutex_
    std::uint64_t ended_misses_ = 0;                              // guarded by mutex_
    std::uint64_t ended_overruns_ = 0;                            // guarded by mutex_
    std::atomic<std::uint64_t> refusals_{0};
};

}  // namespace datapump::stream
DATAPUMP_API_END
