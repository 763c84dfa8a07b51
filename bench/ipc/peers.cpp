// Peers for the command-channel benchmark: 1-byte ping-pong over pipes and an AF_UNIX socket, a
// busy-polled atomic ping-pong in shared memory, a raw SPSC ring, and bulk file copies through a
// pipe and a socket. See peers.hpp for what each measures and how it fails.
#include "peers.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ipc_bench {
namespace {

// The server forked last and not yet reaped (-1: none), so that die() in the client can kill and
// reap it. in_server / client_pid are set in the forked server. Globals because die() may be
// called from any depth; the benchmark is single-threaded.
pid_t live_server = -1;
bool in_server = false;
pid_t client_pid = -1;

constexpr std::size_t mib = std::size_t{1} << 20;
// Both bulk sides move data in 1 MiB read()/write() calls.
constexpr std::size_t bulk_buffer_bytes = mib;

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

// True when there are two CPUs to put client and server on; says once when there are not.
bool can_pin() {
    static const bool enough = [] {
        const long n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 2) {
            std::fprintf(stderr, "ipc_bench: %ld CPU online: client and server are not pinned\n", n);
        }
        return n >= 2;
    }();
    return enough;
}

void pin_self_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    const auto index = static_cast<std::size_t>(cpu);
    CPU_SET(index, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        die_errno("sched_setaffinity(CPU " + std::to_string(cpu) + ")");
    }
}

// Ignored so that writing to a dead peer fails with EPIPE and a message instead of silently
// killing the writer.
void ignore_sigpipe() {
    static const bool done = [] {
        struct sigaction sa {};
        sa.sa_handler = SIG_IGN;
        if (sigaction(SIGPIPE, &sa, nullptr) != 0) {
            die_errno("sigaction(SIGPIPE)");
        }
        return true;
    }();
    static_cast<void>(done);
}

void close_fd(int fd) {
    // No retry on EINTR: on Linux the descriptor is released even then.
    if (close(fd) != 0 && errno != EINTR) {
        die_errno("close");
    }
}

void write_all(int fd, const void* data, std::size_t size, std::string_view what) {
    const auto* p = static_cast<const std::byte*>(data);
    while (size > 0) {
        const ssize_t n = write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die_errno(std::string(what) + ": write");
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

// Returns the bytes read, 0 at end of stream.
std::size_t read_some(int fd, void* data, std::size_t size, std::string_view what) {
    for (;;) {
        const ssize_t n = read(fd, data, size);
        if (n >= 0) {
            return static_cast<std::size_t>(n);
        }
        if (errno != EINTR) {
            die_errno(std::string(what) + ": read");
        }
    }
}

void write_byte(int fd, unsigned char b, std::string_view what) { write_all(fd, &b, 1, what); }

unsigned char read_byte(int fd, std::string_view what) {
    unsigned char b = 0;
    if (read_some(fd, &b, 1, what) == 0) {
        die(std::string(what) + ": the peer closed its end");
    }
    return b;
}

std::uint64_t total_rounds(std::uint64_t measured) { return measured + warmup_count(measured); }

std::uint64_t checked_iterations(int iterations, std::string_view what) {
    if (iterations < 1) {
        die(std::string(what) + ": iterations must be >= 1");
    }
    return static_cast<std::uint64_t>(iterations);
}

// ---- 1-byte ping-pong over descriptors (pipes, sockets) ----

// One side's descriptors; in == out for a socket.
struct endpoint {
    int in;
    int out;
};

void close_endpoint(endpoint e) {
    close_fd(e.in);
    if (e.out != e.in) {
        close_fd(e.out);
    }
}

latency_samples fd_pingpong(endpoint client, endpoint server, std::uint64_t measured, std::string_view what) {
    const std::uint64_t total = total_rounds(measured);
    const std::uint64_t warm = total - measured;
    scoped_pin pin{client_cpu};
    const pid_t pid = fork_server([&] {
        // Closing the client's ends makes the server see end-of-stream if the client dies.
        close_endpoint(client);
        for (std::uint64_t i = 0; i < total; ++i) {
            write_byte(server.out, read_byte(server.in, what), what);
        }
        close_endpoint(server);
    });
    // And the other way round: the client sees end-of-stream if the server dies.
    close_endpoint(server);

    latency_samples samples;
    samples.ns.reserve(measured);
    std::uint64_t before = monotonic_ns();
    for (std::uint64_t i = 0; i < total; ++i) {
        const auto sent = static_cast<unsigned char>(i);
        write_byte(client.out, sent, what);
        if (read_byte(client.in, what) != sent) {
            die(std::string(what) + ": the server echoed a different byte");
        }
        // One clock read per round trip: this round ends where the next one starts.
        const std::uint64_t after = monotonic_ns();
        if (i >= warm) {
            samples.ns.push_back(after - before);
        }
        before = after;
    }
    close_endpoint(client);
    wait_server(pid);
    return samples;
}

// ---- shared memory ----

// An anonymous MAP_SHARED mapping made before fork(), so client and server see the same pages.
class shared_region {
public:
    explicit shared_region(std::size_t size) : size_{size} {
        base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (base_ == MAP_FAILED) {
            die_errno("mmap(MAP_SHARED | MAP_ANONYMOUS)");
        }
    }
    ~shared_region() {
        if (munmap(base_, size_) != 0) {
            die_errno("munmap");
        }
    }
    shared_region(const shared_region&) = delete;
    shared_region& operator=(const shared_region&) = delete;

    // Constructs the one T at the start of the region. T needs no destructor: the region just
    // goes away.
    template <typename T>
    T* make() {
        static_assert(std::is_trivially_destructible_v<T>);
        static_assert(std::is_standard_layout_v<T>);
        if (sizeof(T) > size_) {
            die("shared_region: object larger than the mapping");
        }
        return ::new (base_) T{};
    }

private:
    void* base_ = nullptr;
    std::size_t size_;
};

// Lock-free atomics work across processes on the same physical page: they are plain loads,
// stores and locked instructions on the address, with no process-local lock behind them.
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// 128 bytes, not 64: Intel's adjacent-line prefetcher fetches 64-byte lines in pairs, so two
// fields 64 bytes apart can still bounce together. 128 keeps them apart on both vendors.
constexpr std::size_t line_apart = 128;

struct alignas(line_apart) padded_u32 {
    std::atomic<std::uint32_t> value{0};
};

struct pingpong_page {
    padded_u32 ping;  // stored by the client, polled by the server
    padded_u32 pong;  // stored by the server, polled by the client
};
static_assert(offsetof(pingpong_page, pong) == line_apart);
static_assert(sizeof(pingpong_page) == 2 * line_apart);

constexpr std::size_t ring_capacity = 4096;  // a power of two: slot = sequence & mask
constexpr std::uint64_t ring_mask = ring_capacity - 1;

struct ring_shared {
    // Sequences, not wrapped indices: head - tail is the fill level, from 0 to ring_capacity.
    alignas(line_apart) std::atomic<std::uint64_t> head{0};  // next sequence to write; producer stores
    alignas(line_apart) std::atomic<std::uint64_t> tail{0};  // next sequence to read; consumer stores
    // Written by the consumer before it exits, read by the producer after waitpid(): the exit and
    // the wait order it, no atomic needed.
    alignas(line_apart) double consumer_rate = 0;
    alignas(line_apart) std::array<std::uint64_t, ring_capacity> slots{};
};
static_assert(offsetof(ring_shared, tail) == line_apart);
static_assert(offsetof(ring_shared, slots) == 3 * line_apart);

// ---- bulk ----

// The bulk server: the file through a 1 MiB buffer into `out`, as a naive file server would.
void serve_file(const std::string& path, int out, std::string_view what) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        die_errno("open " + path);
    }
    std::vector<std::byte> buffer(bulk_buffer_bytes);
    for (;;) {
        const std::size_t n = read_some(fd, buffer.data(), buffer.size(), path);
        if (n == 0) {
            break;
        }
        write_all(out, buffer.data(), n, what);
    }
    close_fd(fd);
}

// The bulk client: reads `in` to its end, checksumming every byte; returns bytes/s.
double drain(int in, const file_digest& expected, pid_t server, std::string_view what) {
    std::vector<std::byte> buffer(bulk_buffer_bytes);
    stream_checksum sum;
    const std::uint64_t start = monotonic_ns();
    for (;;) {
        const std::size_t n = read_some(in, buffer.data(), buffer.size(), what);
        if (n == 0) {
            break;
        }
        sum.add({buffer.data(), n});
    }
    const std::uint64_t end = monotonic_ns();
    close_fd(in);
    wait_server(server);
    if (sum.bytes() != expected.bytes || sum.value() != expected.checksum) {
        die(std::string(what) + ": received " + std::to_string(sum.bytes()) +
            " bytes with a different checksum than the " + std::to_string(expected.bytes) + "-byte file");
    }
    std::printf("checksum peer=%.*s bytes=%" PRIu64 " value=%016" PRIx64 " (matches the file)\n",
                static_cast<int>(what.size()), what.data(), sum.bytes(), sum.value());
    return static_cast<double>(sum.bytes()) * 1e9 / static_cast<double>(end - start);
}

}  // namespace

// ---- latency_samples ----

std::uint64_t latency_samples::percentile(double q) const {
    if (ns.empty()) {
        return 0;
    }
    std::vector<std::uint64_t> sorted = ns;
    std::sort(sorted.begin(), sorted.end());
    // Nearest rank: the smallest sample with at least q of all samples at or below it.
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

std::uint64_t latency_samples::p50() const { return percentile(0.50); }
std::uint64_t latency_samples::p99() const { return percentile(0.99); }
std::uint64_t latency_samples::p999() const { return percentile(0.999); }
std::uint64_t latency_samples::max() const {
    return ns.empty() ? 0 : *std::max_element(ns.begin(), ns.end());
}

// ---- helpers ----

std::uint64_t warmup_count(std::uint64_t n) { return std::max<std::uint64_t>(1, n / 10); }

std::uint64_t monotonic_ns() {
    timespec ts{};
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        die_errno("clock_gettime(CLOCK_MONOTONIC)");
    }
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

void die(std::string_view what) {
    std::fprintf(stderr, "ipc_bench%s: %.*s\n", in_server ? " (server)" : "", static_cast<int>(what.size()),
                 what.data());
    if (in_server) {
        _exit(1);
    }
    if (live_server > 0) {
        // Best effort: we are exiting with an error anyway.
        kill(live_server, SIGKILL);
        waitpid(live_server, nullptr, 0);
        live_server = -1;
    }
    std::exit(1);
}

void die_errno(std::string_view what) {
    const int error = errno;
    die(std::string(what) + ": " + std::strerror(error));
}

scoped_pin::scoped_pin(int cpu) {
    if (!can_pin()) {
        return;
    }
    if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) {
        die_errno("sched_getaffinity");
    }
    pin_self_to(cpu);
    pinned_ = true;
}

scoped_pin::~scoped_pin() {
    if (pinned_ && sched_setaffinity(0, sizeof saved_, &saved_) != 0) {
        die_errno("sched_setaffinity (restoring the previous mask)");
    }
}

pid_t detail::fork_pinned_child() {
    if (live_server > 0) {
        die("fork_server: the previous server was not waited for");
    }
    can_pin();  // decided (and reported) once, in the client
    ignore_sigpipe();
    std::fflush(nullptr);  // so nothing buffered before the fork is printed twice
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        die_errno("fork");
    }
    if (pid > 0) {
        live_server = pid;
        return pid;
    }
    in_server = true;
    client_pid = parent;
    // A server whose client died would spin or block forever: have the kernel kill it.
    if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL)) != 0) {
        die_errno("prctl(PR_SET_PDEATHSIG)");
    }
    if (getppid() != parent) {
        die("the client died before the server started");
    }
    if (can_pin()) {
        pin_self_to(server_cpu);
    }
    return 0;
}

void detail::child_done() { _exit(0); }

void wait_server(pid_t pid) {
    int status = 0;
    pid_t r = 0;
    do {
        r = waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        die_errno("waitpid");
    }
    live_server = -1;
    if (WIFSIGNALED(status)) {
        die("the server was killed by signal " + std::to_string(WTERMSIG(status)));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        die("the server failed (exit status " + std::to_string(WEXITSTATUS(status)) + ")");
    }
}

void bounded_spin::pause() {
    cpu_relax();
    if ((++polls_ & 0xffff) == 0) {
        check();
    }
}

void bounded_spin::check() {
    const std::uint64_t now = monotonic_ns();
    if (started_ns_ == 0) {
        started_ns_ = now;
    }
    if (peer_ > 0) {
        int status = 0;
        const pid_t r = waitpid(peer_, &status, WNOHANG);
        if (r < 0) {
            die_errno("waitpid(WNOHANG)");
        }
        if (r == peer_) {
            live_server = -1;  // reaped here
            die(std::string(what_) + ": the server exited while the client was waiting for it");
        }
    } else if (getppid() != client_pid) {
        die(std::string(what_) + ": the client went away");
    }
    if (now - started_ns_ > spin_timeout_ns) {
        die(std::string(what_) + ": no progress from the peer for " + std::to_string(spin_timeout_ns / 1'000'000'000) +
            " s");
    }
}

namespace {
std::uint64_t load_word(const std::byte* p) noexcept {
    std::uint64_t w = 0;
    std::memcpy(&w, p, sizeof w);  // unaligned-safe; compiles to one load
    return w;
}
}  // namespace

void stream_checksum::add(std::span<const std::byte> chunk) noexcept {
    bytes_ += chunk.size();
    const std::byte* p = chunk.data();
    std::size_t left = chunk.size();
    if (carried_ > 0) {
        const std::size_t take = std::min(carry_.size() - carried_, left);
        std::memcpy(carry_.data() + carried_, p, take);
        carried_ += take;
        p += take;
        left -= take;
        if (carried_ < carry_.size()) {
            return;
        }
        sum_ += load_word(carry_.data());
        carried_ = 0;
    }
    std::uint64_t sum = sum_;  // a local the compiler can keep in a register across the loop
    for (; left >= 8; left -= 8, p += 8) {
        sum += load_word(p);
    }
    sum_ = sum;
    std::memcpy(carry_.data(), p, left);
    carried_ = left;
}

std::uint64_t stream_checksum::value() const noexcept {
    if (carried_ == 0) {
        return sum_;
    }
    std::array<std::byte, 8> tail{};
    std::memcpy(tail.data(), carry_.data(), carried_);
    return sum_ + load_word(tail.data());
}

// ---- the peers ----

latency_samples pipe_pingpong(int iterations) {
    const std::uint64_t measured = checked_iterations(iterations, "pipe ping-pong");
    int to_server[2];
    int to_client[2];
    if (pipe2(to_server, O_CLOEXEC) != 0 || pipe2(to_client, O_CLOEXEC) != 0) {
        die_errno("pipe2");
    }
    return fd_pingpong({to_client[0], to_server[1]}, {to_server[0], to_client[1]}, measured, "pipe ping-pong");
}

latency_samples unix_pingpong(int iterations) {
    const std::uint64_t measured = checked_iterations(iterations, "unix ping-pong");
    // SOCK_SEQPACKET because datapump's command channel uses it: message boundaries, connection
    // semantics. SOCK_STREAM round trips cost about the same.
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        die_errno("socketpair(AF_UNIX, SOCK_SEQPACKET)");
    }
    return fd_pingpong({sv[0], sv[0]}, {sv[1], sv[1]}, measured, "unix ping-pong");
}

latency_samples atomic_pingpong(int iterations) {
    const std::uint64_t measured = checked_iterations(iterations, "atomic ping-pong");
    const std::uint64_t total = total_rounds(measured);
    if (total >= UINT32_MAX) {
        die("atomic ping-pong: too many iterations");
    }
    const auto rounds = static_cast<std::uint32_t>(total);
    const auto warm = static_cast<std::uint32_t>(total - measured);
    shared_region region{4096};
    pingpong_page* page = region.make<pingpong_page>();
    scoped_pin pin{client_cpu};
    // Round i is the value i on both lines, starting at 1 (both start at 0). Release/acquire
    // although no payload rides along: a real channel needs it for its payload, and on x86 it
    // costs the same as relaxed.
    const pid_t pid = fork_server([page, rounds] {
        for (std::uint32_t i = 1; i <= rounds; ++i) {
            bounded_spin spin{0, "atomic ping-pong server"};
            // Pairs with the client's release store of ping.
            while (page->ping.value.load(std::memory_order_acquire) != i) {
                spin.pause();
            }
            // Pairs with the client's acquire load of pong.
            page->pong.value.store(i, std::memory_order_release);
        }
    });

    latency_samples samples;
    samples.ns.reserve(measured);
    std::uint64_t before = monotonic_ns();
    for (std::uint32_t i = 1; i <= rounds; ++i) {
        // Pairs with the server's acquire load of ping.
        page->ping.value.store(i, std::memory_order_release);
        bounded_spin spin{pid, "atomic ping-pong client"};
        // Pairs with the server's release store of pong.
        while (page->pong.value.load(std::memory_order_acquire) != i) {
            spin.pause();
        }
        const std::uint64_t after = monotonic_ns();
        if (i > warm) {
            samples.ns.push_back(after - before);
        }
        before = after;
    }
    wait_server(pid);
    return samples;
}

double spsc_ring_throughput(std::uint64_t messages) {
    if (messages < 2) {
        die("spsc ring: messages must be >= 2 (the rate is taken between the first and the last)");
    }
    const std::uint64_t total = total_rounds(messages);
    const std::uint64_t warm = total - messages;
    shared_region region{(sizeof(ring_shared) + 4095) / 4096 * 4096};
    ring_shared* ring = region.make<ring_shared>();
    scoped_pin pin{client_cpu};

    // The consumer (server) caches the producer's head and reloads it only when it has caught up
    // with the cached value; the producer does the same with the consumer's tail when the ring
    // looks full. So the shared lines move only when a side runs out of work.
    const pid_t pid = fork_server([ring, total, warm, messages] {
        std::uint64_t cached_head = 0;
        std::uint64_t seq = 0;
        auto consume_until = [&](std::uint64_t end) {
            for (; seq < end; ++seq) {
                if (seq == cached_head) {
                    bounded_spin spin{0, "spsc ring consumer"};
                    // SYNC: pairs with the producer's release store of head: the slots below it
                    // are written.
                    while ((cached_head = ring->head.load(std::memory_order_acquire)) == seq) {
                        spin.pause();
                    }
                }
                const std::uint64_t message = ring->slots[seq & ring_mask];
                // SYNC: pairs with the producer's acquire load of tail: the slot is read, the
                // producer may overwrite it.
                ring->tail.store(seq + 1, std::memory_order_release);
                if (message != seq) {
                    die("spsc ring: message " + std::to_string(seq) + " arrived as " + std::to_string(message));
                }
            }
        };
        consume_until(warm + 1);  // the warm-up, then the first measured message
        const std::uint64_t first = monotonic_ns();
        consume_until(total);
        const std::uint64_t last = monotonic_ns();
        ring->consumer_rate = static_cast<double>(messages - 1) * 1e9 / static_cast<double>(last - first);
    });

    std::uint64_t cached_tail = 0;
    for (std::uint64_t seq = 0; seq < total; ++seq) {
        if (seq - cached_tail == ring_capacity) {
            bounded_spin spin{pid, "spsc ring producer"};
            // SYNC: pairs with the consumer's release store of tail: slots below it were read.
            while (seq - (cached_tail = ring->tail.load(std::memory_order_acquire)) == ring_capacity) {
                spin.pause();
            }
        }
        ring->slots[seq & ring_mask] = seq;
        // SYNC: pairs with the consumer's acquire load of head: publishes the slot just written.
        ring->head.store(seq + 1, std::memory_order_release);
    }
    wait_server(pid);
    return ring->consumer_rate;
}

double bulk_pipe(const std::string& path) {
    const file_digest expected = warm_file(path);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        die_errno("pipe2");
    }
    // A 1 MiB pipe instead of the default 64 KiB: one 1 MiB write() fills it in one go and the
    // two sides switch far less often. Above /proc/sys/fs/pipe-max-size (1 MiB by default) this
    // needs CAP_SYS_RESOURCE; when refused we say so and run with the default.
    if (fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(mib)) < 0) {
        static bool said = false;
        if (!said) {
            std::fprintf(stderr, "ipc_bench: F_SETPIPE_SZ 1 MiB refused (%s); bulk pipe uses the default size\n",
                         std::strerror(errno));
            said = true;
        }
    }
    scoped_pin pin{client_cpu};
    const pid_t pid = fork_server([&] {
        close_fd(fds[0]);
        serve_file(path, fds[1], "bulk pipe server");
        close_fd(fds[1]);
    });
    close_fd(fds[1]);  // so the client sees end-of-file when the server is done (or dies)
    return drain(fds[0], expected, pid, "pipe");
}

double bulk_unix(const std::string& path) {
    const file_digest expected = warm_file(path);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        die_errno("socketpair(AF_UNIX, SOCK_STREAM)");
    }
    // 4 MiB send and receive buffers (the kernel doubles them and caps the request at
    // net.core.wmem_max / rmem_max, 4 MiB on this VM): the server can queue several 1 MiB writes
    // while the client checksums. For AF_UNIX only the sender's buffer limits what is in flight;
    // SO_RCVBUF is set for symmetry with what a tuned deployment would do.
    const int buffer = 4 * static_cast<int>(mib);
    if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer) != 0 ||
        setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer) != 0) {
        die_errno("setsockopt(SO_SNDBUF / SO_RCVBUF)");
    }
    scoped_pin pin{client_cpu};
    const pid_t pid = fork_server([&] {
        close_fd(sv[0]);
        serve_file(path, sv[1], "bulk unix server");
        close_fd(sv[1]);
    });
    close_fd(sv[1]);
    return drain(sv[0], expected, pid, "unix");
}

double bulk_memory_ceiling(const std::string& path) {
    const file_digest expected = warm_file(path);
    const std::size_t size = expected.bytes;
    void* map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (map == MAP_FAILED) {
        die_errno("mmap (memory ceiling)");
    }
    auto* bytes = static_cast<std::byte*>(map);
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        die_errno("open " + path);
    }
    for (std::size_t off = 0; off < size;) {
        const std::size_t n = read_some(fd, bytes + off, std::min<std::size_t>(bulk_buffer_bytes, size - off), path);
        if (n == 0) {
            die(path + " shrank while it was read");
        }
        off += n;
    }
    close_fd(fd);
    scoped_pin pin{client_cpu};
    // In 4 MiB pieces, as the loan client borrows them; the second pass is measured, as the loan
    // client's is.
    stream_checksum sum;
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    for (int pass = 0; pass < 2; ++pass) {
        sum = stream_checksum{};
        start = monotonic_ns();
        for (std::size_t off = 0; off < size; off += std::size_t{4} << 20) {
            sum.add({bytes + off, std::min<std::size_t>(std::size_t{4} << 20, size - off)});
        }
        end = monotonic_ns();
        std::fprintf(stderr, "ipc_bench: memory ceiling pass %d: %.0f MB/s\n", pass,
                     static_cast<double>(size) * 1e3 / static_cast<double>(end - start));
    }
    munmap(map, size);
    if (sum.bytes() != expected.bytes || sum.value() != expected.checksum) {
        die("memory ceiling: the copy differs from the file");
    }
    return static_cast<double>(sum.bytes()) * 1e9 / static_cast<double>(end - start);
}

// Reads the file once, so that both bulk servers read from the page cache, and records what the
// client must receive.
file_digest warm_file(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        die_errno("open " + path);
    }
    std::vector<std::byte> buffer(bulk_buffer_bytes);
    stream_checksum sum;
    for (;;) {
        const std::size_t n = read_some(fd, buffer.data(), buffer.size(), path);
        if (n == 0) {
            break;
        }
        sum.add({buffer.data(), n});
    }
    close_fd(fd);
    if (sum.bytes() == 0) {
        die("bulk file " + path + " is empty");
    }
    return {sum.bytes(), sum.value()};
}

}  // namespace ipc_bench
