// Peers for the command-channel benchmark (bench/ipc): what a datapump ipc channel is measured
// against. Each peer runs a client and a server, pinned to different cores when the machine has
// two or more: the client (the calling process, which also measures) on CPU 0, the server (a
// forked child) on CPU 1.
//
//   latency     pipe_pingpong, unix_pingpong, atomic_pingpong: 1-byte / 4-byte round trips
//   throughput  spsc_ring_throughput: the raw shared-memory ring every command queue starts as
//   bulk        bulk_pipe, bulk_unix: file bytes copied through the kernel to a consumer
//
// Threading: every function here is called from the single main thread of the benchmark; they
// fork, so they must not be called while other threads run. Errors (a failed syscall, a peer that
// died or stopped making progress for a few seconds) print a message and end the process: the
// child is killed and reaped first. Nothing here throws.
//
// The helpers below the peers (pinning, clock, forking, bounded spinning, stream checksum) are
// public so that the datapump side (datapump_side.cpp) measures in exactly the same way.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc_bench {

// Round-trip times of one run, in nanoseconds, in the order measured.
struct latency_samples {
    std::vector<std::uint64_t> ns;

    [[nodiscard]] bool empty() const noexcept { return ns.empty(); }
    // Nearest-rank percentiles over a sorted copy; 0 when empty.
    [[nodiscard]] std::uint64_t p50() const;
    [[nodiscard]] std::uint64_t p99() const;
    [[nodiscard]] std::uint64_t p999() const;
    [[nodiscard]] std::uint64_t max() const;

private:
    [[nodiscard]] std::uint64_t percentile(double q) const;
};

// Two pipes, 1 byte each way, blocking read()/write().
[[nodiscard]] latency_samples pipe_pingpong(int iterations);
// AF_UNIX SOCK_SEQPACKET socketpair, 1 byte each way, blocking.
[[nodiscard]] latency_samples unix_pingpong(int iterations);
// Two atomics on separate cache lines in a shared page, both sides busy-polling: the floor.
[[nodiscard]] latency_samples atomic_pingpong(int iterations);
// 8-byte messages through a 4096-slot SPSC ring in shared memory; messages/s seen by the consumer.
[[nodiscard]] double spsc_ring_throughput(std::uint64_t messages);
// A server reads `path` with read() and writes it into a pipe / AF_UNIX SOCK_STREAM socketpair;
// the client reads and checksums it. Returns bytes/s and prints the verified checksum.
[[nodiscard]] double bulk_pipe(const std::string& path);
[[nodiscard]] double bulk_unix(const std::string& path);
// The ceiling of any bulk transport whose consumer checksums every byte it gets in place: the
// same checksum over a copy of the file in pre-faulted anonymous memory (too big for the CPU's
// caches), on the client CPU, with no transport at all. Zero-copy loans read the bytes where
// the server put them, so they can approach this and not pass it.
[[nodiscard]] double bulk_memory_ceiling(const std::string& path);

// ---- helpers shared with the datapump side ----

inline constexpr int client_cpu = 0;
inline constexpr int server_cpu = 1;
// Busy-poll loops give up when their peer made no progress for this long.
inline constexpr std::uint64_t spin_timeout_ns = 5'000'000'000;

// Unrecorded warm-up rounds before `n` measured ones: 10 %, at least 1.
[[nodiscard]] std::uint64_t warmup_count(std::uint64_t n);

// CLOCK_MONOTONIC in nanoseconds.
[[nodiscard]] std::uint64_t monotonic_ns();

// Print "ipc_bench: what" (with strerror(errno) for die_errno) and end the process: a forked
// server with _exit, the client with exit after killing and reaping its live server.
[[noreturn]] void die(std::string_view what);
[[noreturn]] void die_errno(std::string_view what);

// Pins the calling thread to `cpu` when the machine has two or more CPUs (else does nothing and
// says so once); restores the previous mask when dropped. Used by the client side.
class scoped_pin {
public:
    explicit scoped_pin(int cpu);
    ~scoped_pin();
    scoped_pin(const scoped_pin&) = delete;
    scoped_pin& operator=(const scoped_pin&) = delete;

private:
    bool pinned_ = false;
    cpu_set_t saved_{};
};

namespace detail {
// fork(); in the child (return 0) also pins to server_cpu and arranges to die with the parent.
[[nodiscard]] pid_t fork_pinned_child();
[[noreturn]] void child_done();
}  // namespace detail

// Forks the server: the child pins itself to server_cpu, dies with its parent (PR_SET_PDEATHSIG),
// runs body() and _exits 0 (body must not return by throwing). Only one server may be live at a
// time, so that die() knows whom to reap. Returns the child's pid in the client.
template <typename Body>
[[nodiscard]] pid_t fork_server(Body&& body) {
    const pid_t pid = detail::fork_pinned_child();
    if (pid == 0) {
        body();
        detail::child_done();
    }
    return pid;
}
// Waits for the server forked last; dies unless it exited with status 0.
void wait_server(pid_t pid);

// One bounded busy-poll wait: call pause() on each unsuccessful poll. Every 64Ki polls it looks at
// the clock and whether the peer still lives, and dies after spin_timeout_ns without success.
// Construct one per wait, so the fast path never reads the clock.
class bounded_spin {
public:
    // peer: the server's pid when the client waits; 0 when the server waits on its parent.
    bounded_spin(pid_t peer, std::string_view what) noexcept : peer_{peer}, what_{what} {}
    void pause();

private:
    void check();

    pid_t peer_;
    std::string_view what_;
    std::uint64_t polls_ = 0;
    std::uint64_t started_ns_ = 0;
};

// What a bulk client must receive: the file's size and stream_checksum.
struct file_digest {
    std::uint64_t bytes;
    std::uint64_t checksum;
};
// Reads the file once, so that every bulk server reads from the page cache, and records what the
// client must receive.
[[nodiscard]] file_digest warm_file(const std::string& path);

// Sum of the stream's native-endian 64-bit words (a tail shorter than 8 bytes is zero-padded),
// whatever sizes the stream arrives in: cheap, and it makes the consumer touch every byte.
class stream_checksum {
public:
    void add(std::span<const std::byte> chunk) noexcept;
    [[nodiscard]] std::uint64_t value() const noexcept;
    [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_; }

private:
    std::uint64_t sum_ = 0;
    std::uint64_t bytes_ = 0;
    std::array<std::byte, 8> carry_{};  // the start of a word split across two add() calls
    std::size_t carried_ = 0;
};

}  // namespace ipc_bench
