// File: tests/integration/ipc/ipc_peer.cpp
//
// The other process of the cross-process command-channel tests (ipc_process_test, issue 4). One
// binary, four roles chosen by argv:
//
//   ipc_peer server ENDPOINT [--exec-us N]
//       An ipc::server whose exec echoes its input (status = input length) after sleeping N µs,
//       so that commands are in flight when the test kills it. Prints "ready" once listening,
//       runs until SIGTERM/SIGINT (then destroys the server, prints "stopped", exits 0) or kill -9.
//
//   ipc_peer client ENDPOINT [--async N] [--sync-threads N] [--worker] [--slots N] [--bound-ms N]
//       Issues commands until the server goes: N synchronous callers on their own threads, and/or
//       N asynchronous commands kept outstanding by an issuer thread. --worker sends every other
//       command to the server's worker pool; --slots sizes the segment (fewer slots than commands
//       in flight sends the rest over the socket). Every echo is checked. Prints "ready" after the
//       first good reply. When the server is gone and every outstanding command has completed
//       with errc::peer_gone (sync callers woke), prints
//       "gone ok=<n> failed=<m> outstanding=0 ms=<t>" and exits 0. Exits 2
//       with a message on stderr when anything is wrong: a wrong echo, an error other than
//       peer_gone, a command that does not complete within --bound-ms (default 15000).
//
//   ipc_peer hostile ENDPOINT --seed S --iterations N
//       Speaks the protocol at the wire level (no ipc::client): connects, offers its own segment,
//       then, driven by a PRNG seeded with S, mixes valid slot and backup commands with garbage:
//       random words over the segment header, the ring headers and entries, slot headers, random
//       and duplicate ring entries, malformed, truncated and mistyped socket messages. The server
//       may cut it off at any point; it then reconnects until the N iterations are used. Prints
//       "hostile seed=S connects=<c> ..." and exits 0.
//
//   ipc_peer stall ENDPOINT [--seconds N] [--commands N] [--bytes N]
//       A client that never reads its socket: after hello (no segment) it sends up to N backup
//       commands for the server's workers, each of --bytes input and output (an echo server's
//       replies then fill its socket after a few), prints "stalling sent=<n> cut_off=<0|1>", then
//       sleeps, reading nothing, until N seconds have passed since it started; exits 0. Being cut
//       off by the server is fine.
//
// Every role exits (code 4) if its parent dies, so a crashed test leaves no process behind.
#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/client.hpp"
#include "datapump/ipc/internal/layout.hpp"
#include "datapump/ipc/internal/ring.hpp"
#include "datapump/ipc/internal/segment.hpp"
#include "datapump/ipc/internal/wire.hpp"
#include "datapump/ipc/server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace datapump;
namespace internal = datapump::ipc::internal;

constexpr std::uint32_t op_echo = 1;

[[noreturn]] void die(const char* role, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Any thread: report and leave at once (other threads may be the ones that are stuck).
void die(const char* role, const char* fmt, ...) {
    std::fprintf(stderr, "ipc_peer %s (pid %d): ", role, static_cast<int>(::getpid()));
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    std::fflush(stderr);
    std::_Exit(2);
}

void say(const std::string& line) {
    std::fputs((line + "\n").c_str(), stdout);
    std::fflush(stdout);
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The test process that spawned us: when it dies we are reparented and leave.
pid_t parent_pid = 0;
void exit_if_orphaned(const char* role) {
    if (::getppid() != parent_pid) {
        std::fprintf(stderr, "ipc_peer %s: parent %d gone, exiting\n", role, static_cast<int>(parent_pid));
        std::_Exit(4);
    }
}

struct args {
    std::string role;
    std::string endpoint;
    long exec_us = 0;
    unsigned async = 0;
    unsigned sync_threads = 0;
    bool worker = false;
    std::uint32_t slots = 64;
    long bound_ms = 15000;
    std::uint64_t seed = 1;
    long iterations = 1000;
    long seconds = 5;
    long commands = 200;
    std::uint32_t bytes = 64 * 1024;
};

[[noreturn]] void usage() {
    std::fputs("usage: ipc_peer server ENDPOINT [--exec-us N]\n"
               "       ipc_peer client ENDPOINT [--async N] [--sync-threads N] [--worker] [--slots N] [--bound-ms N]\n"
               "       ipc_peer hostile ENDPOINT --seed S --iterations N\n"
               "       ipc_peer stall ENDPOINT [--seconds N] [--commands N] [--bytes N]\n",
               stderr);
    std::exit(64);
}

args parse(int argc, char** argv) {
    if (argc < 3) {
        usage();
    }
    args a;
    a.role = argv[1];
    a.endpoint = argv[2];
    for (int i = 3; i < argc; ++i) {
        const std::string_view opt = argv[i];
        auto number = [&]() -> long long {
            if (i + 1 >= argc) {
                usage();
            }
            return std::strtoll(argv[++i], nullptr, 0);
        };
        if (opt == "--exec-us") {
            a.exec_us = static_cast<long>(number());
        } else if (opt == "--async") {
            a.async = static_cast<unsigned>(number());
        } else if (opt == "--sync-threads") {
            a.sync_threads = static_cast<unsigned>(number());
        } else if (opt == "--worker") {
            a.worker = true;
        } else if (opt == "--slots") {
            a.slots = static_cast<std::uint32_t>(number());
        } else if (opt == "--bound-ms") {
            a.bound_ms = static_cast<long>(number());
        } else if (opt == "--seed") {
            a.seed = static_cast<std::uint64_t>(number());
        } else if (opt == "--iterations") {
            a.iterations = static_cast<long>(number());
        } else if (opt == "--seconds") {
            a.seconds = static_cast<long>(number());
        } else if (opt == "--commands") {
            a.commands = static_cast<long>(number());
        } else if (opt == "--bytes") {
            a.bytes = static_cast<std::uint32_t>(number());
        } else {
            usage();
        }
    }
    return a;
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// ================================================================================================
// server

int run_server(const args& a) {
    // Block the stop signals before any thread exists so that every thread inherits the mask and
    // only sigtimedwait below sees them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    auto runtime = ipc::server_runtime::init({2});
    if (!runtime) {
        die("server", "runtime: %s", describe(runtime.error()).c_str());
    }
    ipc::server_handlers h;
    const long exec_us = a.exec_us;
    h.exec = [exec_us](ipc::connection&, std::uint32_t, std::span<const std::byte> in,
                       std::span<std::byte> out) -> ipc::exec_result {
        if (exec_us > 0) {
            std::this_thread::sleep_for(std::chrono::microseconds(exec_us));
        }
        const std::size_t n = std::min(in.size(), out.size());
        if (n > 0) {
            std::memcpy(out.data(), in.data(), n);  // never with a null (empty) area
        }
        return {static_cast<std::int32_t>(in.size()), static_cast<std::uint32_t>(n)};
    };
    auto srv = (*runtime)->create(a.endpoint, std::move(h));
    if (!srv) {
        die("server", "create %s: %s", a.endpoint.c_str(), describe(srv.error()).c_str());
    }
    say("ready");
    for (;;) {
        const timespec tick{0, 200'000'000};
        const int sig = ::sigtimedwait(&stop_signals, nullptr, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
        exit_if_orphaned("server");
    }
    (*srv)->destroy();
    srv->reset();
    runtime->reset();
    say("stopped");
    return 0;
}

// ================================================================================================
// client

// Input of command `i` of issuer `who`: unique, of a length that varies from 1 to ~300 bytes.
std::string make_input(char kind, unsigned who, std::uint64_t i) {
    std::string s = std::string(1, kind) + std::to_string(who) + ":" + std::to_string(i) + ":";
    s.append(static_cast<std::size_t>((i * 37 + who * 11) % 300), static_cast<char>('a' + (i + who) % 26));
    return s;
}

class client_run {
public:
    client_run(const args& a, ipc::client& c)
        : args_(a), client_(c), sync_busy_since_(a.sync_threads), ops_(a.async) {
        for (unsigned k = 0; k < a.async; ++k) {
            ops_[k].run = this;
            ops_[k].index = k;
            free_.push_back(k);
        }
    }

    int run() {
        const auto started = std::chrono::steady_clock::now();
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < args_.sync_threads; ++t) {
            threads.emplace_back([this, t] { sync_loop(t); });
        }
        if (args_.async > 0) {
            threads.emplace_back([this] { issue_loop(); });
        }
        std::thread watchdog([this] { watch(); });
        // Each of these returns only once it has seen the server gone (or the watchdog ends us).
        for (auto& t : threads) {
            t.join();
        }
        // Asynchronous commands still outstanding must all complete (with peer_gone) by themselves.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(args_.bound_ms);
        while (outstanding_.load() != 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                die("client", "%llu async commands never completed after the server went",
                    static_cast<unsigned long long>(outstanding_.load()));
            }
            std::this_thread::sleep_for(1ms);
        }
        // After the server is gone a new command fails fast, and with the same error.
        std::vector<std::byte> out(8);
        auto late = client_.execute(op_echo, bytes_of("late"), out);
        if (late || late.error().code != errc::peer_gone) {
            die("client", "execute after the server went: %s",
                late ? "succeeded" : describe(late.error()).c_str());
        }
        client_.deinit();
        finished_.store(true);
        watchdog.join();
        if (outstanding_.load() != 0) {
            die("client", "outstanding commands after deinit");
        }
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        say("gone ok=" + std::to_string(ok_.load()) + " failed=" + std::to_string(failed_.load()) +
            " outstanding=" + std::to_string(outstanding_.load()) + " ms=" + std::to_string(ms.count()));
        return 0;
    }

private:
    struct async_op {
        client_run* run = nullptr;
        unsigned index = 0;
        std::string input;
        std::vector<std::byte> output;
        std::atomic<std::int64_t> issued_at{0};  // 0: not in flight
    };

    void good_reply(const std::string& in, std::span<const std::byte> out, const ipc::reply& r) {
        if (r.status != static_cast<std::int32_t>(in.size()) || r.output_len != in.size() ||
            std::memcmp(out.data(), in.data(), in.size()) != 0) {
            die("client", "wrong echo for \"%.40s\" (%zu bytes): status %d, output_len %u", in.c_str(), in.size(),
                r.status, r.output_len);
        }
        ok_.fetch_add(1);
        if (!ready_.exchange(true)) {
            say("ready");
        }
    }

    void sync_loop(unsigned t) {
        std::vector<std::byte> out(512);
        for (std::uint64_t i = 0;; ++i) {
            const std::string in = make_input('s', t, i);
            sync_busy_since_[t].store(now_ns());
            auto r = client_.execute(op_echo, bytes_of(in), out, {}, {.on_worker = args_.worker && i % 2 == 0});
            sync_busy_since_[t].store(0);
            if (!r) {
                if (r.error().code != errc::peer_gone) {
                    die("client", "sync execute: %s", describe(r.error()).c_str());
                }
                failed_.fetch_add(1);
                return;
            }
            good_reply(in, out, *r);
        }
    }

    static void completed(void* context, ipc::outcome& o) {
        auto& op = *static_cast<async_op*>(context);
        client_run& self = *op.run;
        if (o) {
            self.good_reply(op.input, op.output, *o);
        } else if (o.error().code == errc::peer_gone) {
            self.failed_.fetch_add(1);
        } else {
            die("client", "async command: %s", describe(o.error()).c_str());
        }
        op.issued_at.store(0);
        {
            std::lock_guard lock(self.mu_);
            self.free_.push_back(op.index);
        }
        self.cv_.notify_all();
        self.outstanding_.fetch_sub(1);
    }

    void issue_loop() {
        for (std::uint64_t i = 0;; ++i) {
            unsigned k = 0;
            {
                std::unique_lock lock(mu_);
                if (!cv_.wait_for(lock, std::chrono::milliseconds(args_.bound_ms), [this] { return !free_.empty(); })) {
                    die("client", "no async command completed for %ld ms", args_.bound_ms);
                }
                k = free_.back();
                free_.pop_back();
            }
            async_op& op = ops_[k];
            if (client_.peer_gone()) {
                std::lock_guard lock(mu_);
                free_.push_back(k);
                return;
            }
            op.input = make_input('a', k, i);
            op.output.assign(op.input.size() + 16, std::byte{0});
            ipc::callbacks cb;
            cb.completion = &client_run::completed;
            cb.context = &op;
            op.issued_at.store(now_ns());
            outstanding_.fetch_add(1);
            auto r = client_.execute(op_echo, bytes_of(op.input), op.output, cb,
                                     {.on_worker = args_.worker && i % 2 == 1});
            if (!r) {
                // Not accepted: no callback will run.
                op.issued_at.store(0);
                outstanding_.fetch_sub(1);
                {
                    std::lock_guard lock(mu_);
                    free_.push_back(k);
                }
                if (r.error().code != errc::peer_gone) {
                    die("client", "async execute: %s", describe(r.error()).c_str());
                }
                return;
            }
        }
    }

    void watch() {
        const std::int64_t bound = args_.bound_ms * 1'000'000;
        while (!finished_.load()) {
            exit_if_orphaned("client");
            const std::int64_t now = now_ns();
            for (unsigned t = 0; t < sync_busy_since_.size(); ++t) {
                const std::int64_t since = sync_busy_since_[t].load();
                if (since != 0 && now - since > bound) {
                    die("client", "sync caller %u did not return within %ld ms (server gone: %d)", t, args_.bound_ms,
                        client_.peer_gone() ? 1 : 0);
                }
            }
            for (const auto& op : ops_) {
                const std::int64_t since = op.issued_at.load();
                if (since != 0 && now - since > bound) {
                    die("client", "async command %u did not complete within %ld ms (server gone: %d)", op.index,
                        args_.bound_ms, client_.peer_gone() ? 1 : 0);
                }
            }
            std::this_thread::sleep_for(50ms);
        }
    }

    const args& args_;
    ipc::client& client_;
    std::vector<std::atomic<std::int64_t>> sync_busy_since_;  // per sync thread; 0: idle
    std::vector<async_op> ops_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<unsigned> free_;  // guarded by mu_: indices of ops_ not in flight
    std::atomic<std::uint64_t> outstanding_{0};
    std::atomic<std::uint64_t> ok_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<bool> ready_{false};
    std::atomic<bool> finished_{false};
};

int run_client(const args& a) {
    if (a.async == 0 && a.sync_threads == 0) {
        usage();
    }
    ipc::client_options o;
    o.in_process = false;
    o.slots = a.slots;
    auto c = ipc::client::init(a.endpoint, o);
    if (!c) {
        die("client", "init %s: %s", a.endpoint.c_str(), describe(c.error()).c_str());
    }
    client_run run(a, **c);
    return run.run();
}

// ================================================================================================
// hostile

class hostile {
public:
    explicit hostile(const args& a) : args_(a), rng_(a.seed) {}

    int run() {
        for (long i = 0; i < args_.iterations; ++i) {
            if ((i & 255) == 0) {
                exit_if_orphaned("hostile");
            }
            if (!sock_) {
                connect();
                continue;
            }
            step();
        }
        disconnect();
        say("hostile seed=" + std::to_string(args_.seed) + " connects=" + std::to_string(connects_) +
            " cut_off=" + std::to_string(cut_off_) + " shm=" + std::to_string(shm_sessions_) +
            " slot_commands=" + std::to_string(slot_commands_) +
            " backup_commands=" + std::to_string(backup_commands_) + " garbage=" + std::to_string(garbage_) +
            " completions=" + std::to_string(completions_) + " replies=" + std::to_string(replies_));
        return 0;
    }

private:
    std::uint32_t rnd(std::uint32_t n) { return static_cast<std::uint32_t>(rng_() % n); }
    bool chance(std::uint32_t percent) { return rnd(100) < percent; }
    // A word that is sometimes sensible, sometimes an edge case, sometimes anything.
    std::uint32_t word() {
        switch (rnd(6)) {
            case 0: return 0;
            case 1: return 0xffffffffU;
            case 2: return rnd(64);
            case 3: return 0x80000000U + rnd(16);
            default: return static_cast<std::uint32_t>(rng_());
        }
    }

    // --- the socket -----------------------------------------------------------------------------

    // One message, exactly these bytes, optionally with descriptors. Never blocks; a message the
    // socket cannot take now is dropped. False when the server has cut us off.
    bool send_raw(std::span<const std::byte> bytes, std::span<const int> fds = {}) {
        iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
        if (!fds.empty()) {
            const std::size_t n = std::min<std::size_t>(fds.size(), 4);
            m.msg_control = control;
            m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
            cmsghdr* c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * n);
            std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * n);
        }
        for (;;) {
            if (::sendmsg(sock_.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) {
                return true;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
                lost();
                return false;
            }
            return true;  // EAGAIN, EMSGSIZE, ENOBUFS: dropped
        }
    }

    static std::vector<std::byte> message(const internal::wire_header& h, std::span<const std::byte> payload) {
        std::vector<std::byte> out(sizeof(h) + payload.size());
        std::memcpy(out.data(), &h, sizeof(h));
        if (!payload.empty()) {
            std::memcpy(out.data() + sizeof(h), payload.data(), payload.size());
        }
        return out;
    }

    static internal::wire_header header(internal::msg type, std::uint32_t payload_len) {
        internal::wire_header h{};
        h.type = static_cast<std::uint32_t>(type);
        h.version = internal::wire_version;
        h.payload_len = payload_len;
        h.pid = static_cast<std::uint32_t>(::getpid());
        return h;
    }

    // Reads whatever the server sent, without blocking. False when it cut us off.
    bool drain_socket() {
        std::vector<std::byte>& buf = receive_buffer_;
        for (;;) {
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * internal::max_fds)];
            iovec iov{buf.data(), buf.size()};
            msghdr m{};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = control;
            m.msg_controllen = sizeof(control);
            const ssize_t n = ::recvmsg(sock_.get(), &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (n > 0) {
                (void)internal::take_fds(m);  // dropping them closes them
                internal::wire_header h{};
                if (static_cast<std::size_t>(n) >= sizeof(h)) {
                    std::memcpy(&h, buf.data(), sizeof(h));
                    if (h.type == static_cast<std::uint32_t>(internal::msg::reply)) {
                        ++replies_;
                    }
                }
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return true;
            }
            lost();
            return false;
        }
    }

    // --- connection ---------------------------------------------------------------------------

    void lost() {
        if (sock_) {
            ++cut_off_;
        }
        disconnect();
    }

    void disconnect() {
        sock_.reset();
        seg_.reset();
        in_flight_.clear();
    }

    // Connects and offers a segment, mostly a good one. A failed attempt uses up the iteration.
    void connect() {
        auto s = internal::connect_endpoint(args_.endpoint);
        if (!s) {
            std::this_thread::sleep_for(5ms);
            return;
        }
        sock_ = std::move(*s);
        ++connects_;
        const std::uint32_t slots = 1 + rnd(16);
        const std::uint32_t in_cap = std::array<std::uint32_t, 4>{0, 64, 200, 1024}[rnd(4)];
        const std::uint32_t out_cap = std::array<std::uint32_t, 4>{0, 64, 200, 1024}[rnd(4)];
        const internal::geometry g = internal::make_geometry(slots, in_cap, out_cap);
        internal::wire_header h = header(internal::msg::hello, 0);
        h.code = g.slot_count;
        h.a = g.input_capacity;
        h.b = g.output_capacity;
        auto seg = internal::segment::create(g);
        if (!seg) {
            die("hostile", "segment: %s", describe(seg.error()).c_str());
        }
        const int fd = seg->fd();
        const std::uint32_t flavour = rnd(100);
        bool sent = true;
        bool offered = true;
        if (flavour < 80) {
            sent = send_raw(message(h, {}), std::span(&fd, 1));
        } else if (flavour < 84) {
            sent = send_raw(message(h, {}));  // no descriptor: backup mode
            offered = false;
        } else if (flavour < 88) {
            h.code = g.slot_count + 1 + rnd(8);  // geometry that is not the memfd's
            sent = send_raw(message(h, {}), std::span(&fd, 1));
        } else if (flavour < 91) {
            // A memfd of the right size the server cannot trust: not sealed.
            unique_fd loose(::memfd_create("datapump-ipc-hostile", MFD_CLOEXEC));
            if (loose && ::ftruncate(loose.get(), static_cast<off_t>(g.total_size)) == 0) {
                const int lfd = loose.get();
                sent = send_raw(message(h, {}), std::span(&lfd, 1));
            }
        } else if (flavour < 94) {
            const int two[2] = {fd, fd};
            sent = send_raw(message(h, {}), two);
        } else if (flavour < 97) {
            h.type = 1 + rnd(8);  // maybe not a hello
            h.version = chance(50) ? internal::wire_version : word();
            sent = send_raw(message(h, {}), std::span(&fd, 1));
        } else {
            std::vector<std::byte> junk(rnd(64));
            for (auto& b : junk) {
                b = static_cast<std::byte>(rng_());
            }
            sent = send_raw(junk);
        }
        if (!sent) {
            return;
        }
        // The welcome says whether the segment was taken. Bounded: a server that answers nothing
        // within 2 s is treated as a cut-off.
        pollfd p{sock_.get(), POLLIN, 0};
        if (::poll(&p, 1, 2000) <= 0) {
            lost();
            return;
        }
        std::vector<std::byte> buf(4096);
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * internal::max_fds)];
        iovec iov{buf.data(), buf.size()};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = control;
        m.msg_controllen = sizeof(control);
        const ssize_t n = ::recvmsg(sock_.get(), &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0) {
            lost();
            return;
        }
        (void)internal::take_fds(m);  // dropping them closes them
        internal::wire_header w{};
        if (static_cast<std::size_t>(n) < sizeof(w)) {
            return;
        }
        std::memcpy(&w, buf.data(), sizeof(w));
        if (offered && flavour < 80 && w.type == static_cast<std::uint32_t>(internal::msg::welcome) && w.status == 0) {
            seg_ = std::move(*seg);
            cs_ = internal::ring_producer(seg_->cs_ring(), seg_->cs_entries(), g.ring_capacity);
            sc_ = internal::ring_consumer(seg_->sc_ring(), seg_->sc_entries(), g.ring_capacity);
            in_flight_.assign(g.slot_count, 0);
            ++shm_sessions_;
        }
    }

    // --- one iteration ----------------------------------------------------------------------------

    void step() {
        if (!drain_socket()) {
            return;
        }
        if (seg_) {
            reap();
        }
        const std::uint32_t r = rnd(1000);
        if (r < 450) {
            if (seg_ && chance(85)) {
                valid_slot_command();
            } else {
                valid_backup_command();
            }
        } else if (r < 500) {
            return;  // let the server catch up
        } else if (r < 995) {
            ++garbage_;
            // Mostly damage to shared memory; socket damage (usually fatal) 2.5% of the time.
            if (seg_ && r < 970) {
                shared_memory_garbage(500 + (r - 500) * 300 / 470);
            } else {
                socket_garbage();
            }
        } else {
            disconnect();  // walk away with commands in flight
        }
    }

    void reap() {
        for (;;) {
            const internal::pop_result p = sc_.pop();
            if (p.status != internal::ring_status::ok) {
                break;
            }
            const std::uint32_t slot = seg_->slot_of(p.value);
            if (slot != internal::segment::no_slot && in_flight_[slot] == 2) {
                in_flight_[slot] = 0;
                ++completions_;
            }
        }
        for (std::uint32_t i = 0; i < in_flight_.size(); ++i) {
            if (in_flight_[i] == 1 && seg_->slot(i)->done.load(std::memory_order_acquire) != 0) {
                in_flight_[i] = 0;
                ++completions_;
            }
        }
    }

    std::uint32_t free_slot() {
        const auto n = static_cast<std::uint32_t>(in_flight_.size());
        const std::uint32_t start = rnd(n);
        for (std::uint32_t k = 0; k < n; ++k) {
            if (in_flight_[(start + k) % n] == 0) {
                return (start + k) % n;
            }
        }
        return internal::segment::no_slot;
    }

    static void store(std::uint32_t& field, std::uint32_t v) { __atomic_store_n(&field, v, __ATOMIC_RELAXED); }
    static void store(std::int32_t& field, std::uint32_t v) {
        __atomic_store_n(&field, static_cast<std::int32_t>(v), __ATOMIC_RELAXED);
    }

    // Fills slot i as the real client does and pushes it.
    void submit(std::uint32_t i, std::uint32_t input_len, std::uint32_t output_cap) {
        const bool sync = chance(50);
        internal::slot_header* h = seg_->slot(i);
        auto in = seg_->input_area(i);
        for (std::uint32_t k = 0; k < std::min<std::uint32_t>(input_len, static_cast<std::uint32_t>(in.size())); ++k) {
            in[k] = static_cast<std::byte>(k * 7 + i);
        }
        store(h->code, chance(90) ? op_echo : word());
        store(h->flags, (sync ? internal::flag_sync : 0U) | (chance(50) ? internal::flag_worker : 0U));
        store(h->input_len, input_len);
        store(h->output_cap, output_cap);
        h->done.store(0, std::memory_order_relaxed);
        h->waiting.store(chance(20) ? 1 : 0, std::memory_order_relaxed);
        if (cs_.push(seg_->offset_of(i)) == internal::ring_status::ok) {
            in_flight_[i] = sync ? 1 : 2;
            ++slot_commands_;
        }
    }

    void valid_slot_command() {
        const std::uint32_t i = free_slot();
        if (i == internal::segment::no_slot) {
            return;
        }
        const auto& g = seg_->geo();
        submit(i, rnd(g.input_capacity + 1), rnd(g.output_capacity + 1));
    }

    void valid_backup_command() {
        const std::uint32_t input_len = rnd(2048);
        const std::uint32_t output_cap = rnd(2048);
        const bool prepared = chance(20);
        std::vector<std::byte> payload(input_len + (prepared ? output_cap : 0), std::byte{0x5a});
        internal::wire_header h = header(internal::msg::command, static_cast<std::uint32_t>(payload.size()));
        h.token = static_cast<std::uint32_t>(rng_());
        h.code = op_echo;
        h.flags = (chance(50) ? internal::flag_worker : 0U) | (prepared ? internal::flag_prepared_output : 0U);
        h.a = input_len;
        h.b = output_cap;
        if (send_raw(message(h, payload))) {
            ++backup_commands_;
        }
    }

    std::uint32_t& word_at(std::uint32_t offset) {
        return *reinterpret_cast<std::uint32_t*>(seg_->base() + (offset & ~3U));
    }

    // One kind of damage to the segment, chosen by r (500..799).
    void shared_memory_garbage(std::uint32_t r) {
        const auto& g = seg_->geo();
        const std::uint32_t slot = rnd(g.slot_count);
        internal::slot_header* h = seg_->slot(slot);
        if (r < 600) {
            // A slot header field, maybe of a command in flight (the server read it already, or
            // reads it now: either way it must survive).
            switch (rnd(8)) {
                case 0: store(h->code, word()); break;
                case 1: store(h->flags, word()); break;
                case 2: store(h->input_len, word()); break;
                case 3: store(h->output_cap, word()); break;
                case 4: store(h->status, word()); break;
                case 5: store(h->output_len, word()); break;
                case 6: h->done.store(word(), std::memory_order_relaxed); break;
                default: h->waiting.store(word(), std::memory_order_relaxed); break;
            }
        } else if (r < 640) {
            // A command whose lengths are beyond the slot: bad_command, not a crash.
            if (in_flight_[slot] == 0) {
                submit(slot, g.input_capacity + 1 + rnd(1U << 20), rnd(g.output_capacity + 1));
                store(h->input_len, chance(50) ? word() : g.input_capacity + 1);
                store(h->output_cap, chance(50) ? word() : g.output_capacity + 1 + rnd(4096));
            }
        } else if (r < 680) {
            // Random bytes over the input and output areas.
            auto area = chance(50) ? seg_->input_area(slot) : seg_->output_area(slot);
            if (!area.empty()) {
                const std::uint32_t at = rnd(static_cast<std::uint32_t>(area.size()));
                area[at] = static_cast<std::byte>(rng_());
            }
        } else if (r < 700) {
            // A random segment word: the segment header, a ring header or entry, a slot.
            word_at(rnd(static_cast<std::uint32_t>(g.total_size))) = word();
        } else if (r < 715) {
            // The segment header (the server read it once at set-up).
            word_at(rnd(static_cast<std::uint32_t>(sizeof(internal::segment_header)))) = word();
        } else if (r < 735) {
            // Ring headers: indices, doorbells, sleeping flags, of both rings.
            internal::ring_header* ring = chance(50) ? seg_->cs_ring() : seg_->sc_ring();
            switch (rnd(6)) {
                case 0: ring->tail.store(word(), std::memory_order_relaxed); break;
                case 1: ring->head.store(word(), std::memory_order_relaxed); break;
                case 2: ring->bell.store(word(), std::memory_order_relaxed); break;
                case 3: ring->sleeping.store(word(), std::memory_order_relaxed); break;
                case 4: ring->tail.fetch_add(1 + rnd(3), std::memory_order_release); break;  // plausible
                default: ring->head.fetch_add(1, std::memory_order_release); break;
            }
        } else if (r < 755) {
            // Ring entries: garbage, or a real slot offset where the server will look next.
            std::uint32_t* entries = chance(50) ? seg_->cs_entries() : seg_->sc_entries();
            store(entries[rnd(g.ring_capacity)], chance(50) ? seg_->offset_of(rnd(g.slot_count)) : word());
        } else if (r < 775) {
            // A ring entry that names no slot, or the middle of one.
            const std::uint32_t off = chance(50) ? word() : seg_->offset_of(slot) + 1 + rnd(g.slot_size - 1);
            (void)cs_.push(off);
        } else {
            // The same slot twice (or a slot still in flight once more).
            if (cs_.push(seg_->offset_of(slot)) == internal::ring_status::ok && chance(50)) {
                (void)cs_.push(seg_->offset_of(slot));
            }
        }
    }

    void socket_garbage() {
        switch (rnd(10)) {
            case 0: {
                // A backup command whose lengths disagree with its payload.
                std::vector<std::byte> payload(rnd(512));
                internal::wire_header h = header(internal::msg::command, static_cast<std::uint32_t>(payload.size()));
                h.token = word();
                h.code = word();
                h.flags = word();
                h.a = chance(50) ? word() : static_cast<std::uint32_t>(payload.size()) + 1;
                h.b = word();
                if (send_raw(message(h, payload))) {
                    ++backup_commands_;
                }
                break;
            }
            case 1: {
                // Lengths beyond max_message (the server's default 128 KiB), consistent payload.
                internal::wire_header h = header(internal::msg::command, 16);
                h.a = 16;
                h.b = (256U << 10) + rnd(1U << 20);
                std::vector<std::byte> payload(16);
                (void)send_raw(message(h, payload));
                break;
            }
            case 2: {
                // payload_len that lies, or a wrong version.
                internal::wire_header h = header(internal::msg::command, word());
                if (chance(50)) {
                    h.payload_len = 0;
                    h.version = word();
                }
                std::vector<std::byte> payload(rnd(64));
                (void)send_raw(message(h, payload));
                break;
            }
            case 3: {
                // Truncated: less than a header.
                internal::wire_header h = header(internal::msg::command, 0);
                auto m = message(h, {});
                m.resize(rnd(static_cast<std::uint32_t>(sizeof(h))));
                (void)send_raw(m);
                break;
            }
            case 4: {
                // A message type the server never expects from a client, or none at all.
                internal::wire_header h = header(static_cast<internal::msg>(chance(50) ? word() : 1 + rnd(8)), 0);
                (void)send_raw(message(h, {}));
                break;
            }
            case 5: {
                // Descriptors where none belong.
                int p[2];
                if (::pipe2(p, O_CLOEXEC) == 0) {
                    internal::wire_header h = header(chance(50) ? internal::msg::notify : internal::msg::command, 0);
                    (void)send_raw(message(h, {}), std::span<const int>(p, 2));
                    ::close(p[0]);
                    ::close(p[1]);
                }
                break;
            }
            case 6: {
                // Larger than the server accepts (its receive buffer is 2 x max_message).
                std::vector<std::byte> payload((300U << 10) + rnd(1U << 16));
                internal::wire_header h = header(internal::msg::command, static_cast<std::uint32_t>(payload.size()));
                h.a = static_cast<std::uint32_t>(payload.size());
                (void)send_raw(message(h, payload));
                break;
            }
            case 7: {
                // Another segment offer (a second one is a violation; after a refusal it is fine).
                const internal::geometry g = internal::make_geometry(1 + rnd(4), 64, 64);
                auto seg = internal::segment::create(g);
                if (seg) {
                    internal::wire_header h = header(internal::msg::shm_offer, 0);
                    h.code = chance(80) ? g.slot_count : word();
                    h.a = g.input_capacity;
                    h.b = g.output_capacity;
                    const int fd = seg->fd();
                    (void)send_raw(message(h, {}), std::span(&fd, 1));
                }
                break;
            }
            case 8: {
                // A notification with random bytes: harmless, the server has no notify handler.
                std::vector<std::byte> payload(rnd(256), static_cast<std::byte>(rng_()));
                internal::wire_header h = header(internal::msg::notify, static_cast<std::uint32_t>(payload.size()));
                h.code = word();
                (void)send_raw(message(h, payload));
                break;
            }
            default: {
                // Random bytes of a random length.
                std::vector<std::byte> junk(rnd(256));
                for (auto& b : junk) {
                    b = static_cast<std::byte>(rng_());
                }
                (void)send_raw(junk);
                break;
            }
        }
    }

    const args& args_;
    std::mt19937_64 rng_;
    unique_fd sock_;
    std::optional<internal::segment> seg_;
    internal::ring_producer cs_;
    internal::ring_consumer sc_;
    std::vector<std::uint8_t> in_flight_;  // per slot: 0 free, 1 sync, 2 async
    std::vector<std::byte> receive_buffer_ = std::vector<std::byte>(512 * 1024);
    std::uint64_t connects_ = 0;
    std::uint64_t cut_off_ = 0;
    std::uint64_t shm_sessions_ = 0;
    std::uint64_t slot_commands_ = 0;
    std::uint64_t backup_commands_ = 0;
    std::uint64_t garbage_ = 0;
    std::uint64_t completions_ = 0;
    std::uint64_t replies_ = 0;
};

// ================================================================================================
// stall

int run_stall(const args& a) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(a.seconds);
    auto s = internal::connect_endpoint(a.endpoint);
    if (!s) {
        die("stall", "connect %s: %s", a.endpoint.c_str(), describe(s.error()).c_str());
    }
    const unique_fd sock = std::move(*s);
    internal::wire_header h{};
    h.type = static_cast<std::uint32_t>(internal::msg::hello);
    h.code = 1;
    h.a = 64;
    h.b = 64;
    h.pid = static_cast<std::uint32_t>(::getpid());
    if (auto sent = internal::send_message(sock.get(), h, {}); !sent) {
        die("stall", "hello: %s", describe(sent.error()).c_str());
    }
    internal::received welcome;
    if (auto got = internal::receive_message(sock.get(), 0, welcome);
        !got || welcome.header.type != static_cast<std::uint32_t>(internal::msg::welcome)) {
        die("stall", "no welcome");
    }
    // Commands until the socket takes no more for 100 ms (the server stopped reading it).
    long sent = 0;
    bool cut_off = false;
    auto last_progress = std::chrono::steady_clock::now();
    const std::vector<std::byte> input(a.bytes, std::byte{'s'});
    while (!cut_off && sent < a.commands && std::chrono::steady_clock::now() - last_progress < 100ms) {
        internal::wire_header c{};
        c.type = static_cast<std::uint32_t>(internal::msg::command);
        c.version = internal::wire_version;
        c.token = static_cast<std::uint32_t>(sent + 1);
        c.code = op_echo;
        c.flags = internal::flag_worker;
        c.a = static_cast<std::uint32_t>(input.size());
        c.b = a.bytes;
        c.payload_len = static_cast<std::uint32_t>(input.size());
        iovec iov[2] = {{&c, sizeof(c)}, {const_cast<std::byte*>(input.data()), input.size()}};
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        if (::sendmsg(sock.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) {
            ++sent;
            last_progress = std::chrono::steady_clock::now();
        } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            std::this_thread::sleep_for(1ms);
        } else if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
            cut_off = true;  // a server may cut off a client that does not read: fine
        } else {
            die("stall", "send: %s", std::strerror(errno));
        }
    }
    say("stalling sent=" + std::to_string(sent) + " cut_off=" + (cut_off ? "1" : "0"));
    while (std::chrono::steady_clock::now() < until) {
        exit_if_orphaned("stall");
        std::this_thread::sleep_for(20ms);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    parent_pid = ::getppid();
    const args a = parse(argc, argv);
    if (a.role == "server") {
        return run_server(a);
    }
    if (a.role == "client") {
        return run_client(a);
    }
    if (a.role == "hostile") {
        return hostile(a).run();
    }
    if (a.role == "stall") {
        return run_stall(a);
    }
    usage();
}
