// The command channel across processes (issue 4): kill -9 of a client and of a server in the
// middle of commands, a restarted server on the same path, hostile clients scribbling over their
// shared memory and socket, a client that stops reading. The other processes are ipc_peer (see
// ipc_peer.cpp), started with posix_spawn (this process has threads: no fork) and killed at random
// moments. Timing is random, seeded from `base_seed` plus the iteration (printed, and in every
// failure's trace), so a failing run can be replayed; every assertion holds for every timing, and
// every wait is bounded and fails the test when it runs out. Each test also checks that this
// process ends with the threads, descriptors and segment mappings it started with.
//
// The last two tests are regressions for bugs these tests found (fixed in 3208672): a server
// worker blocked on a client that did not read, and a client that mixed sync and async commands
// across threads mixed up slots.
#include "datapump/base/log.hpp"
#include "datapump/ipc/client.hpp"
#include "datapump/ipc/server.hpp"

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace datapump::ipc {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

constexpr std::uint64_t base_seed = 0x1504'2024;
constexpr std::uint32_t op_echo = 1;
// Generous: only a broken channel takes this long, under any sanitizer.
constexpr milliseconds bound = 20s;

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// A wait that never returned: the threads involved still use objects on this stack, so the
// process cannot go on to the next test. Say what hung and end the run (ctest sees the failure).
[[noreturn]] void hung(const std::string& what) {
    std::fflush(stdout);
    std::fprintf(stderr, "FATAL: %s did not finish within %lld ms\n", what.c_str(),
                 static_cast<long long>(bound.count()));
    std::fflush(stderr);
    std::abort();
}

template <class Pred>
bool eventually(Pred pred, milliseconds timeout = bound) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return pred();
        }
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

// deinit() waits for the client's outstanding commands: bounded here.
void deinit_bounded(client& c, const char* what) {
    auto done = std::async(std::launch::async, [&] { c.deinit(); });
    if (done.wait_for(bound) != std::future_status::ready) {
        hung(std::string("client deinit ") + what);
    }
}

std::string abstract_endpoint(const char* what) {
    return "@datapump-ipc-proc-" + std::to_string(::getpid()) + "-" + what;
}

// A socket file, so that a killed server leaves it behind for its successor to replace.
std::string path_endpoint(const char* what) {
    return "/tmp/datapump-ipc-proc-" + std::to_string(::getpid()) + "-" + what + ".sock";
}

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// ------------------------------------------------------------------------------------------------
// what this process holds: threads, descriptors, mappings of channel segments

int count_dir(const char* path) {
    DIR* d = ::opendir(path);
    if (d == nullptr) {
        return -1;
    }
    int n = 0;
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') {
            ++n;
        }
    }
    ::closedir(d);
    return n;
}

int count_segment_mappings() {
    std::ifstream maps("/proc/self/maps");
    int n = 0;
    for (std::string line; std::getline(maps, line);) {
        if (line.find("datapump-ipc") != std::string::npos) {
            ++n;
        }
    }
    return n;
}

struct holdings {
    int threads = 0;
    int fds = 0;
    int mappings = 0;
    static holdings now() {
        return {count_dir("/proc/self/task"), count_dir("/proc/self/fd"), count_segment_mappings()};
    }
    // What a test starts from. One thread is started and joined first (TSan starts its own
    // background thread at the first pthread_create, and that one stays), and gone from /proc.
    static holdings baseline();
    bool operator==(const holdings&) const = default;
};

holdings holdings::baseline() {
    pid_t tid = 0;
    std::thread([&] { tid = ::gettid(); }).join();
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    eventually([&] { return ::access(task.c_str(), F_OK) != 0; }, 10s);
    return now();
}

std::ostream& operator<<(std::ostream& os, const holdings& h) {
    return os << "{threads " << h.threads << ", fds " << h.fds << ", segment mappings " << h.mappings << "}";
}

// Threads end, descriptors close and segments unmap shortly after the calls that release them
// return (a joined thread leaves /proc a moment later): wait, bounded, then compare.
void expect_holdings(const holdings& expected, const char* when) {
    eventually([&] { return holdings::now() == expected; }, 10s);
    EXPECT_EQ(holdings::now(), expected) << when;
}

// ------------------------------------------------------------------------------------------------
// an ipc_peer process

class peer {
public:
    explicit peer(const std::vector<std::string>& args) {
        std::vector<std::string> all{IPC_PEER_PATH};
        all.insert(all.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : all) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
            ADD_FAILURE() << "pipe2: " << std::strerror(errno);
            return;
        }
        out_ = unique_fd(p[0]);
        unique_fd write_end(p[1]);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        const int rc = ::posix_spawn(&pid_, IPC_PEER_PATH, &actions, &attr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) {
            pid_ = -1;
            ADD_FAILURE() << "posix_spawn " << IPC_PEER_PATH << ": " << std::strerror(rc);
        }
        for (const auto& a : args) {
            command_ += a + " ";
        }
    }
    peer(const peer&) = delete;
    peer& operator=(const peer&) = delete;
    ~peer() { kill9(); }

    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] bool running() const { return pid_ > 0 && !status_; }
    [[nodiscard]] const std::string& command() const { return command_; }
    [[nodiscard]] std::string output() const {
        std::string all;
        for (const auto& l : lines_) {
            all += l + "\n";
        }
        return all + partial_;
    }

    // The next line of output that starts with `prefix`; nullopt at EOF or after `timeout`.
    std::optional<std::string> wait_line(std::string_view prefix, milliseconds timeout = bound) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            for (; next_line_ < lines_.size(); ++next_line_) {
                if (lines_[next_line_].starts_with(prefix)) {
                    return lines_[next_line_++];
                }
            }
            const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || !read_some(left)) {
                return std::nullopt;
            }
        }
    }

    // SIGKILL and reap. Idempotent.
    void kill9() {
        if (pid_ > 0 && !status_) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
            }
            status_ = st;
        }
    }

    void terminate() {
        if (running()) {
            ::kill(pid_, SIGTERM);
        }
    }

    // The wait status once the process has exited (its output read to EOF), or nullopt if it
    // still runs after `timeout` (it is then killed).
    std::optional<int> wait_exit(milliseconds timeout = bound) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!status_) {
            int st = 0;
            const pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                status_ = st;
                break;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                kill9();
                return std::nullopt;
            }
            (void)read_some(5ms);
        }
        while (read_some(1s)) {
        }
        return status_;
    }

private:
    // Reads what is there within `timeout`; false at EOF or timeout.
    bool read_some(milliseconds timeout) {
        if (!out_) {
            return false;
        }
        pollfd p{out_.get(), POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
        if (ready <= 0) {
            return false;
        }
        char buf[4096];
        const ssize_t n = ::read(out_.get(), buf, sizeof(buf));
        if (n <= 0) {
            out_.reset();
            return false;
        }
        partial_.append(buf, static_cast<std::size_t>(n));
        for (std::size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
            lines_.push_back(partial_.substr(0, nl));
            partial_.erase(0, nl + 1);
        }
        return true;
    }

    pid_t pid_ = -1;
    unique_fd out_;
    std::string command_;
    std::string partial_;
    std::vector<std::string> lines_;
    std::size_t next_line_ = 0;
    std::optional<int> status_;
};

std::string describe_status(const std::optional<int>& st) {
    if (!st) {
        return "still running (killed)";
    }
    if (WIFEXITED(*st)) {
        return "exit " + std::to_string(WEXITSTATUS(*st));
    }
    if (WIFSIGNALED(*st)) {
        return std::string("signal ") + strsignal(WTERMSIG(*st));
    }
    return "status " + std::to_string(*st);
}

bool exited_zero(const std::optional<int>& st) { return st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0; }

// ------------------------------------------------------------------------------------------------
// an echo server in this process that accounts for each connection

struct connection_state {
    pid_t pid = 0;
    std::atomic<int> running{0};          // execs of this connection running now
    std::atomic<int> execs{0};
    std::atomic<int> closes{0};
    std::atomic<int> running_at_close{-1};
};

class echo_server {
public:
    echo_server(std::string endpoint, std::chrono::microseconds exec_sleep) : endpoint_(std::move(endpoint)) {
        runtime_ = server_runtime::init({2}).value();
        server_handlers h;
        h.open = [this](connection& c) -> result<void> {
            std::lock_guard lock(mu_);
            auto& st = conns_.emplace_back();
            st.pid = c.peer_pid();
            c.user_context = &st;
            return {};
        };
        h.exec = [exec_sleep](connection& c, std::uint32_t, std::span<const std::byte> in,
                              std::span<std::byte> out) -> exec_result {
            auto& st = *static_cast<connection_state*>(c.user_context);
            st.running.fetch_add(1);
            st.execs.fetch_add(1);
            if (exec_sleep.count() > 0) {
                std::this_thread::sleep_for(exec_sleep);
            }
            const std::size_t n = std::min(in.size(), out.size());
            if (n > 0) {
                std::memcpy(out.data(), in.data(), n);  // never with a null (empty) area
            }
            st.running.fetch_sub(1);
            return {static_cast<std::int32_t>(in.size()), static_cast<std::uint32_t>(n)};
        };
        h.close = [](connection& c) {
            auto& st = *static_cast<connection_state*>(c.user_context);
            st.running_at_close.store(st.running.load());
            st.closes.fetch_add(1);
        };
        server_ = runtime_->create(endpoint_, std::move(h)).value();
    }

    ~echo_server() { stop(); }

    void stop() {
        if (server_) {
            server_->destroy();
            server_.reset();
        }
        runtime_.reset();
    }

    [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
    [[nodiscard]] server_stats stats() const { return server_->stats(); }

    // The state of the (single) connection opened by process `pid`, once it exists.
    connection_state* connection_of(pid_t pid, milliseconds timeout = bound) {
        connection_state* found = nullptr;
        eventually(
            [&] {
                std::lock_guard lock(mu_);
                for (auto& st : conns_) {
                    if (st.pid == pid) {
                        found = &st;
                    }
                }
                return found != nullptr;
            },
            timeout);
        return found;
    }

    // Every connection ever opened was closed exactly once, with no exec running.
    void expect_every_connection_closed_once() {
        std::lock_guard lock(mu_);
        for (const auto& st : conns_) {
            EXPECT_EQ(st.closes.load(), 1) << "connection of pid " << st.pid;
            EXPECT_EQ(st.running_at_close.load(), 0) << "connection of pid " << st.pid;
        }
    }

    std::size_t connections() {
        std::lock_guard lock(mu_);
        return conns_.size();
    }

private:
    std::string endpoint_;
    std::unique_ptr<server_runtime> runtime_;
    std::unique_ptr<server> server_;
    std::mutex mu_;
    std::list<connection_state> conns_;  // guarded by mu_ (elements never move)
};

client_options remote(std::uint32_t slots = 64) {
    client_options o;
    o.in_process = false;
    o.slots = slots;
    return o;
}

// One echo over a fresh client: the server serves.
void expect_serves(const std::string& endpoint) {
    auto c = client::init(endpoint, remote());
    ASSERT_TRUE(c.has_value()) << describe(c.error(), endpoint);
    const std::string in = "still there?";
    std::vector<std::byte> out(32);
    auto r = (*c)->execute(op_echo, bytes_of(in), out);
    ASSERT_TRUE(r.has_value()) << describe(r.error(), endpoint);
    EXPECT_EQ(r->status, static_cast<std::int32_t>(in.size()));
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), r->output_len), in);
    deinit_bounded(**c, "of a fresh client");
}

// ------------------------------------------------------------------------------------------------
// load from this process: synchronous callers on threads, asynchronous commands kept in flight by
// an issuer thread.

class load {
public:
    load(client& c, unsigned sync_threads, unsigned async, bool worker)
        : client_(c), sync_threads_(sync_threads), worker_(worker), ops_(async) {
        for (unsigned k = 0; k < async; ++k) {
            ops_[k].self = this;
            ops_[k].index = k;
            free_.push_back(k);
        }
    }
    load(const load&) = delete;
    load& operator=(const load&) = delete;
    ~load() {
        request_stop();
        if (!wait_quiet()) {
            hung("load generator (destructor)");
        }
    }

    void start() {
        for (unsigned t = 0; t < sync_threads_; ++t) {
            threads_.emplace_back([this, t] { sync_loop(t); });
        }
        if (!ops_.empty()) {
            threads_.emplace_back([this] { issue_loop(); });
        }
    }

    void request_stop() { stop_.store(true); }

    // Every issuing thread has returned (joined) and no command is outstanding.
    bool wait_quiet(milliseconds timeout = bound) {
        if (!eventually([this] { return finished_threads_.load() == threads_.size() && outstanding_.load() == 0; },
                        timeout)) {
            return false;
        }
        for (auto& t : threads_) {
            t.join();
        }
        threads_.clear();
        finished_threads_.store(0);
        return true;
    }

    [[nodiscard]] std::uint64_t ok() const { return ok_.load(); }
    // Async commands accepted by execute, and completion callbacks run: equal once quiet.
    [[nodiscard]] std::uint64_t async_accepted() const { return async_accepted_.load(); }
    [[nodiscard]] std::uint64_t async_completions() const { return async_completions_.load(); }
    [[nodiscard]] std::uint64_t gone() const { return gone_.load(); }
    [[nodiscard]] unsigned sync_callers_gone() const { return sync_gone_.load(); }
    [[nodiscard]] std::vector<std::string> problems() {
        std::lock_guard lock(mu_);
        return problems_;
    }

private:
    struct async_op {
        load* self = nullptr;
        unsigned index = 0;
        std::string input;
        std::vector<std::byte> output;
    };

    void problem(std::string what) {
        std::lock_guard lock(mu_);
        if (problems_.size() < 10) {
            problems_.push_back(std::move(what));
        }
    }

    void check(const std::string& in, std::span<const std::byte> out, const reply& r) {
        if (r.status != static_cast<std::int32_t>(in.size()) || r.output_len != in.size() ||
            std::memcmp(out.data(), in.data(), in.size()) != 0) {
            problem("wrong echo for " + in.substr(0, 24) + " (" + std::to_string(in.size()) + " bytes): status " +
                    std::to_string(r.status) + ", output_len " + std::to_string(r.output_len) + ", output \"" +
                    std::string(reinterpret_cast<const char*>(out.data()), std::min<std::size_t>(r.output_len, 24)) +
                    "\"");
        } else {
            ok_.fetch_add(1);
        }
    }

    static std::string input_for(char kind, unsigned who, std::uint64_t i) {
        std::string s = std::string(1, kind) + std::to_string(who) + ":" + std::to_string(i) + ":";
        s.append(static_cast<std::size_t>((i * 41 + who * 7) % 300), static_cast<char>('A' + (i + who) % 26));
        return s;
    }

    void sync_loop(unsigned t) {
        std::vector<std::byte> out(512);
        for (std::uint64_t i = 0; !stop_.load(); ++i) {
            const std::string in = input_for('s', t, i);
            auto r = client_.execute(op_echo, bytes_of(in), out, {}, {.on_worker = worker_ && i % 2 == 0});
            if (!r) {
                if (r.error().code == errc::peer_gone) {
                    sync_gone_.fetch_add(1);
                } else {
                    problem("sync execute: " + describe(r.error()));
                }
                break;
            }
            check(in, out, *r);
        }
        finished_threads_.fetch_add(1);
    }

    static void completed(void* context, outcome& o) {
        auto& op = *static_cast<async_op*>(context);
        load& self = *op.self;
        self.async_completions_.fetch_add(1);
        if (o) {
            self.check(op.input, op.output, *o);
        } else if (o.error().code == errc::peer_gone) {
            self.gone_.fetch_add(1);
        } else {
            self.problem("async completion: " + describe(o.error()));
        }
        {
            std::lock_guard lock(self.mu_);
            self.free_.push_back(op.index);
        }
        self.cv_.notify_all();
        self.outstanding_.fetch_sub(1);
    }

    void issue_loop() {
        for (std::uint64_t i = 0; !stop_.load() && !client_.peer_gone(); ++i) {
            unsigned k = 0;
            {
                std::unique_lock lock(mu_);
                if (!cv_.wait_for(lock, bound, [this] { return !free_.empty(); })) {
                    lock.unlock();
                    problem("no async command completed within the bound");
                    break;
                }
                k = free_.back();
                free_.pop_back();
            }
            async_op& op = ops_[k];
            op.input = input_for('a', k, i);
            op.output.assign(op.input.size() + 8, std::byte{0});
            callbacks cb;
            cb.completion = &load::completed;
            cb.context = &op;
            outstanding_.fetch_add(1);
            auto r = client_.execute(op_echo, bytes_of(op.input), op.output, cb, {.on_worker = worker_ && i % 2 == 1});
            if (!r) {
                outstanding_.fetch_sub(1);  // not accepted: no callback runs
                {
                    std::lock_guard lock(mu_);
                    free_.push_back(k);
                }
                if (r.error().code != errc::peer_gone) {
                    problem("async execute: " + describe(r.error()));
                }
                break;
            }
            async_accepted_.fetch_add(1);
        }
        finished_threads_.fetch_add(1);
    }

    client& client_;
    unsigned sync_threads_;
    bool worker_;
    std::vector<async_op> ops_;
    std::vector<std::thread> threads_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> finished_threads_{0};
    std::atomic<std::uint64_t> outstanding_{0};
    std::atomic<std::uint64_t> ok_{0};
    std::atomic<std::uint64_t> gone_{0};
    std::atomic<std::uint64_t> async_accepted_{0};
    std::atomic<std::uint64_t> async_completions_{0};
    std::atomic<unsigned> sync_gone_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<unsigned> free_;          // guarded by mu_
    std::vector<std::string> problems_;   // guarded by mu_
};

std::string seed_text(std::uint64_t seed) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(seed));
    return buf;
}

// ================================================================================================

// An ipc_peer client process killed with commands in flight (sync callers on several threads and
// async commands; some on workers; some over the socket when its few slots are taken) against a
// server in this process whose exec sleeps: the server drains that connection, then calls close
// exactly once, with no exec of it running; clients_now returns to 0; the connection's threads,
// socket and mapping are gone; the server serves a new client.
TEST(ipc_process, client_killed_mid_command_is_drained_then_closed_once) {
    const holdings baseline = holdings::baseline();
    constexpr int iterations = 20;
    std::printf("base seed %s; iteration i uses base seed + i\n", seed_text(base_seed).c_str());
    int busy_at_kill = 0;
    {
        echo_server srv(abstract_endpoint("client-killed"), 1000us);
        const holdings with_server = holdings::now();
        for (int i = 0; i < iterations; ++i) {
            const std::uint64_t seed = base_seed + static_cast<std::uint64_t>(i);
            SCOPED_TRACE("iteration " + std::to_string(i) + " seed " + seed_text(seed));
            std::mt19937_64 rng(seed);
            std::vector<std::string> args{"client", srv.endpoint(), "--sync-threads", std::to_string(1 + rng() % 3),
                                          "--async", std::to_string(rng() % 9), "--slots", rng() % 2 == 0 ? "4" : "64"};
            if (rng() % 3 != 0) {
                args.emplace_back("--worker");
            }
            const auto kill_after = milliseconds(rng() % 31);
            connection_state* st = nullptr;
            {
                peer p(args);
                ASSERT_TRUE(p.running());
                ASSERT_TRUE(p.wait_line("ready")) << p.command() << " said:\n" << p.output();
                st = srv.connection_of(p.pid());
                ASSERT_NE(st, nullptr);
                std::this_thread::sleep_for(kill_after);
                busy_at_kill += st->running.load() > 0 ? 1 : 0;
                p.kill9();
            }
            ASSERT_TRUE(eventually([&] { return st->closes.load() > 0; })) << "close never called";
            EXPECT_EQ(st->running_at_close.load(), 0) << "close ran while an exec of the connection still ran";
            ASSERT_TRUE(eventually([&] { return srv.stats().clients_now == 0; }))
                << "clients_now stays " << srv.stats().clients_now;
            EXPECT_GT(st->execs.load(), 0);
            expect_serves(srv.endpoint());
            ASSERT_TRUE(eventually([&] { return srv.stats().clients_now == 0; }));
            // The dead client's connection threads, socket and segment mapping are gone.
            expect_holdings(with_server, "after the connection of a killed client closed");
            EXPECT_EQ(st->closes.load(), 1);
        }
        const server_stats s = srv.stats();
        EXPECT_EQ(s.clients_accepted, 2U * iterations);
        EXPECT_EQ(s.clients_closed, 2U * iterations);
        EXPECT_EQ(srv.connections(), 2U * iterations);
        srv.stop();
        srv.expect_every_connection_closed_once();
    }
    std::printf("%d of %d kills hit execs running in the server\n", busy_at_kill, iterations);
    expect_holdings(baseline, "after the server was destroyed");
}

// An ipc_peer server process killed while this process's client has sync callers waiting on
// several threads and async commands outstanding, on slots and over the socket: every
// outstanding command completes with peer_gone, the sync callers wake, new commands fail fast
// with peer_gone, deinit returns and leaves no thread, descriptor or mapping; the killed server's
// socket file is still there, and a restarted server on the same path replaces it and serves a
// new client.
TEST(ipc_process, server_killed_mid_command_fails_everything_with_peer_gone_and_a_restart_serves) {
    const std::string path = path_endpoint("server-killed");
    ::unlink(path.c_str());
    const holdings baseline = holdings::baseline();
    constexpr int iterations = 12;
    std::printf("base seed %s; iteration i uses base seed + 100 + i\n", seed_text(base_seed).c_str());
    auto server = std::make_unique<peer>(std::vector<std::string>{"server", path, "--exec-us", "1000"});
    ASSERT_TRUE(server->wait_line("ready")) << server->output();
    for (int i = 0; i < iterations; ++i) {
        const std::uint64_t seed = base_seed + 100 + static_cast<std::uint64_t>(i);
        SCOPED_TRACE("iteration " + std::to_string(i) + " seed " + seed_text(seed));
        std::mt19937_64 rng(seed);
        client_options o = remote(std::array<std::uint32_t, 3>{4, 8, 64}[rng() % 3]);
        o.wait.strategy = rng() % 2 == 0 ? wait_strategy::sleep : wait_strategy::spin_then_sleep;
        const unsigned sync_threads = 1 + static_cast<unsigned>(rng() % 3);
        const unsigned async = 2 + static_cast<unsigned>(rng() % 12);
        const bool worker = rng() % 2 == 0;
        const auto kill_after = milliseconds(rng() % 31);
        {
            // The server of this iteration is a restarted one (but the first): reachable.
            auto c = client::init(path, o);
            ASSERT_TRUE(c.has_value()) << describe(c.error(), path);
            {
                load l(**c, sync_threads, async, worker);
                l.start();
                ASSERT_TRUE(eventually([&] { return l.ok() >= 10 || !l.problems().empty(); }));
                ASSERT_TRUE(l.problems().empty()) << l.problems().front();
                std::this_thread::sleep_for(kill_after);
                server->kill9();
                server.reset();
                EXPECT_TRUE(file_exists(path)) << "a killed server cannot remove its socket file";
                if (!l.wait_quiet()) {
                    hung("sync callers and async completions after the server was killed");
                }
                const auto problems = l.problems();
                EXPECT_TRUE(problems.empty()) << problems.front();
                EXPECT_EQ(l.async_completions(), l.async_accepted()) << "an async command completed twice or never";
                EXPECT_EQ(l.sync_callers_gone(), sync_threads) << "every sync caller ends with peer_gone";
                EXPECT_TRUE((*c)->peer_gone());
                std::printf("iteration %d: %llu good replies, %u sync callers and %llu async commands failed with "
                            "peer_gone\n",
                            i, static_cast<unsigned long long>(l.ok()), l.sync_callers_gone(),
                            static_cast<unsigned long long>(l.gone()));
            }
            std::vector<std::byte> out(8);
            auto late = (*c)->execute(op_echo, bytes_of("late"), out);
            ASSERT_FALSE(late.has_value());
            EXPECT_EQ(late.error().code, errc::peer_gone);
            deinit_bounded(**c, "after the server was killed");
        }
        expect_holdings(baseline, "after deinit of a client whose server was killed");
        server = std::make_unique<peer>(std::vector<std::string>{"server", path, "--exec-us", "1000"});
        ASSERT_TRUE(server->wait_line("ready")) << "restarted server: " << server->output();
    }
    expect_serves(path);
    server->terminate();
    const auto st = server->wait_exit();
    EXPECT_TRUE(exited_zero(st)) << describe_status(st) << "\n" << server->output();
    EXPECT_FALSE(file_exists(path)) << "a server destroyed cleanly removes its socket file";
    server.reset();
    ::unlink(path.c_str());
    expect_holdings(baseline, "at the end");
}

// Both sides in other processes: ipc_peer clients (sync callers and async commands; workers; few
// or many slots) against an ipc_peer server that is killed. Each client sees every outstanding
// command fail with peer_gone, its sync callers wake, and exits 0 with "gone ... outstanding=0".
TEST(ipc_process, client_processes_see_every_command_fail_when_the_server_process_is_killed) {
    const std::string path = path_endpoint("both-remote");
    ::unlink(path.c_str());
    const holdings baseline = holdings::baseline();
    constexpr int iterations = 10;
    std::printf("base seed %s; iteration i uses base seed + 200 + i\n", seed_text(base_seed).c_str());
    for (int i = 0; i < iterations; ++i) {
        const std::uint64_t seed = base_seed + 200 + static_cast<std::uint64_t>(i);
        SCOPED_TRACE("iteration " + std::to_string(i) + " seed " + seed_text(seed));
        std::mt19937_64 rng(seed);
        peer server({"server", path, "--exec-us", std::to_string(200 + rng() % 1800)});
        ASSERT_TRUE(server.wait_line("ready")) << server.output();
        std::vector<std::unique_ptr<peer>> clients;
        for (int k = 0; k < 2; ++k) {
            std::vector<std::string> args{"client", path, "--sync-threads", std::to_string(rng() % 4),
                                          "--async", std::to_string(1 + rng() % 10), "--slots",
                                          rng() % 2 == 0 ? "4" : "64"};
            if (rng() % 2 == 0) {
                args.emplace_back("--worker");
            }
            clients.push_back(std::make_unique<peer>(args));
        }
        for (auto& c : clients) {
            ASSERT_TRUE(c->wait_line("ready")) << c->command() << " said:\n" << c->output();
        }
        std::this_thread::sleep_for(milliseconds(rng() % 31));
        server.kill9();
        for (auto& c : clients) {
            const auto st = c->wait_exit();
            EXPECT_TRUE(exited_zero(st)) << c->command() << ": " << describe_status(st) << "\n" << c->output();
            const auto gone = c->wait_line("gone ", 0ms);
            ASSERT_TRUE(gone) << c->command() << " said:\n" << c->output();
            EXPECT_NE(gone->find(" outstanding=0"), std::string::npos) << *gone;
            std::printf("iteration %d: %s: %s\n", i, c->command().c_str(), gone->c_str());
        }
    }
    ::unlink(path.c_str());
    expect_holdings(baseline, "at the end");
}

// Two hostile ipc_peer processes scribble over their segments and send malformed messages while a
// well-behaved client of the same server (in this process, over shared memory and the socket)
// keeps issuing commands (sync callers on two threads and async commands, on workers and
// inline): the server survives, the good client sees no failure and keeps making progress, every
// hostile connection is accounted for and closed exactly once, and the violations were noticed
// (disconnects or bad commands).
TEST(ipc_process, hostile_clients_do_not_hurt_the_server_or_its_other_clients) {
    const holdings baseline = holdings::baseline();
    // Thousands of "broke the protocol" warnings otherwise.
    struct quiet_log {
        quiet_log() { configure_logging("error"); }
        ~quiet_log() { configure_logging("info"); }
    } quiet;
    constexpr long iterations = 20000;
    const std::uint64_t seeds[2] = {base_seed + 300, base_seed + 301};
    std::printf("hostile seeds %s %s, %ld iterations each\n", seed_text(seeds[0]).c_str(),
                seed_text(seeds[1]).c_str(), iterations);
    {
        echo_server srv(abstract_endpoint("hostile"), 0us);
        auto good = client::init(srv.endpoint(), remote());
        ASSERT_TRUE(good.has_value()) << describe(good.error());
        {
            load l(**good, 2, 6, true);
            l.start();
            ASSERT_TRUE(eventually([&] { return l.ok() > 0; }));
            std::vector<std::unique_ptr<peer>> hostiles;
            for (const auto seed : seeds) {
                hostiles.push_back(std::make_unique<peer>(std::vector<std::string>{
                    "hostile", srv.endpoint(), "--seed", std::to_string(seed), "--iterations",
                    std::to_string(iterations)}));
            }
            std::uint64_t connects = 0;
            const std::uint64_t ok_before = l.ok();
            for (auto& h : hostiles) {
                const auto st = h->wait_exit(60s);
                EXPECT_TRUE(exited_zero(st)) << h->command() << ": " << describe_status(st) << "\n" << h->output();
                const auto summary = h->wait_line("hostile ", 0ms);
                ASSERT_TRUE(summary) << h->output();
                std::printf("%s\n", summary->c_str());
                const auto at = summary->find(" connects=");
                ASSERT_NE(at, std::string::npos);
                connects += std::stoull(summary->substr(at + 10));
            }
            EXPECT_GT(l.ok(), ok_before) << "the good client made no progress while the hostile ones ran";
            l.request_stop();
            if (!l.wait_quiet()) {
                hung("the good client's commands");
            }
            const auto problems = l.problems();
            EXPECT_TRUE(problems.empty()) << problems.front();
            EXPECT_EQ(l.gone(), 0U);
            EXPECT_EQ(l.sync_callers_gone(), 0U);
            EXPECT_EQ((*good)->stats().failed_commands, 0U);
            EXPECT_FALSE((*good)->peer_gone());
            // Every hostile connection was accepted, and is gone again: only the good client stays.
            EXPECT_TRUE(eventually([&] {
                const auto s = srv.stats();
                return s.clients_accepted == 1 + connects && s.clients_now == 1;
            })) << "accepted " << srv.stats().clients_accepted << " of " << 1 + connects << ", now "
                << srv.stats().clients_now;
            const server_stats s = srv.stats();
            std::printf("server: accepted %llu, closed %llu, slot commands %llu, backup commands %llu, bad commands "
                        "%llu, protocol disconnects %llu, segments refused %llu\n",
                        static_cast<unsigned long long>(s.clients_accepted),
                        static_cast<unsigned long long>(s.clients_closed),
                        static_cast<unsigned long long>(s.slot_commands),
                        static_cast<unsigned long long>(s.backup_commands),
                        static_cast<unsigned long long>(s.bad_commands),
                        static_cast<unsigned long long>(s.protocol_disconnects),
                        static_cast<unsigned long long>(s.shm_refused));
            EXPECT_EQ(s.clients_closed, connects);
            EXPECT_GT(s.protocol_disconnects, 0U);
            EXPECT_GT(s.bad_commands, 0U);
            EXPECT_TRUE((*good)->stats().shared_memory);
            EXPECT_GT((*good)->stats().slot_commands, 0U);
        }
        expect_serves(srv.endpoint());
        deinit_bounded(**good, "of the good client");
        EXPECT_TRUE(eventually([&] { return srv.stats().clients_now == 0; }));
        good->reset();
        srv.stop();
        srv.expect_every_connection_closed_once();
    }
    expect_holdings(baseline, "after the server was destroyed");
}

// A client that sends commands for the server's workers and then never reads its socket: the
// replies pile up until the server's sends to it block. That client's own commands may wait (or
// it may be cut off), but the server must keep serving the others: a well-behaved client's
// commands, on workers too, still complete while the stalling client sleeps.
//
// Regression (fixed in 3208672): backup_command() ran the command on the shared worker pool and
// the job ended in a blocking send of the reply; once the staller's socket was full every pool
// worker blocked there and no other client's worker command ran until the staller exited.
TEST(ipc_process, a_client_that_never_reads_its_replies_does_not_stall_other_clients) {
    const holdings baseline = holdings::baseline();
    constexpr int stall_seconds = 3;
    {
        echo_server srv(abstract_endpoint("stall"), 0us);
        auto good = client::init(srv.endpoint(), remote());
        ASSERT_TRUE(good.has_value()) << describe(good.error());
        {
            load l(**good, 2, 4, true);
            l.start();
            ASSERT_TRUE(eventually([&] { return l.ok() > 0; }));
            peer staller({"stall", srv.endpoint(), "--seconds", std::to_string(stall_seconds)});
            const auto stalling = staller.wait_line("stalling ");
            ASSERT_TRUE(stalling) << staller.output();
            std::printf("%s\n", stalling->c_str());
            // Give the server time to fill the staller's socket, then expect progress all along.
            std::this_thread::sleep_for(300ms);
            const std::uint64_t before = l.ok();
            EXPECT_TRUE(eventually([&] { return l.ok() >= before + 100; }, 2s))
                << "the good client completed " << l.ok() - before
                << " commands in 2 s while another client did not read its replies";
            EXPECT_TRUE(staller.running()) << "the staller ended early: " << staller.output();
            const auto st = staller.wait_exit();
            EXPECT_TRUE(exited_zero(st)) << describe_status(st) << "\n" << staller.output();
            l.request_stop();
            if (!l.wait_quiet()) {
                hung("the good client's commands");
            }
            const auto problems = l.problems();
            EXPECT_TRUE(problems.empty()) << problems.front();
        }
        deinit_bounded(**good, "of the good client");
        EXPECT_TRUE(eventually([&] { return srv.stats().clients_now == 0; }));
        good->reset();
        srv.stop();
        srv.expect_every_connection_closed_once();
    }
    expect_holdings(baseline, "after the server was destroyed");
}

// One client's sync callers and async commands share a few slots while a server process answers
// them quickly: every command completes exactly once, with its own reply, and deinit returns.
//
// Regression (fixed in 3208672): execute_slot() read the shared slot record (`r.sync`) after
// pushing the slot. An async command could complete (completion thread, or a submitter reaping in
// wait_for_slot) and its slot be taken by a sync caller before that read; the async submitter then
// waited on and finished the other caller's slot: a wrong reply, or a slot freed under its caller
// (who could then sleep forever, even after the server died), and outstanding_ decremented twice,
// so that deinit() waited forever. Should that come back, the test kills the server after 5 s to
// get unstuck, and leaks the client if even that does not release deinit.
TEST(ipc_process, sync_and_async_commands_sharing_few_slots_complete_once_with_their_own_reply) {
    const std::string path = path_endpoint("shared-slots");
    ::unlink(path.c_str());
    const holdings baseline = holdings::baseline();
    peer server({"server", path});
    ASSERT_TRUE(server.wait_line("ready")) << server.output();
    {
        auto c = client::init(path, remote(2));
        ASSERT_TRUE(c.has_value()) << describe(c.error(), path);
        {
            load l(**c, 3, 4, false);
            l.start();
            eventually([&] { return !l.problems().empty(); }, 2s);
            l.request_stop();
            if (!l.wait_quiet(5s)) {
                ADD_FAILURE() << "a command did not complete within 5 s although the server is alive; killing the "
                                 "server to release it";
                server.kill9();
                if (!l.wait_quiet()) {
                    hung("commands of a client whose server was killed");
                }
            }
            const auto problems = l.problems();
            EXPECT_TRUE(problems.empty()) << problems.size() << " problems, the first: " << problems.front();
            EXPECT_EQ(l.async_completions(), l.async_accepted()) << "an async command completed twice or never";
            const client_stats st = (*c)->stats();
            EXPECT_EQ(st.failed_commands, 0U);
            std::printf("%llu good replies (%llu slot, %llu backup commands)\n",
                        static_cast<unsigned long long>(l.ok()), static_cast<unsigned long long>(st.slot_commands),
                        static_cast<unsigned long long>(st.backup_commands));
        }
        // deinit on a thread of its own: if it never returns, the client and that thread are
        // leaked (reported) so that the run can go on.
        auto finished = std::make_shared<std::atomic<bool>>(false);
        std::thread deinit([cl = c->get(), finished] {
            cl->deinit();
            finished->store(true);
        });
        if (eventually([&] { return finished->load(); }, 5s)) {
            deinit.join();
        } else {
            ADD_FAILURE() << "deinit did not return within 5 s with nothing outstanding (its count of outstanding "
                             "commands is off); killing the server to release it";
            server.kill9();
            if (eventually([&] { return finished->load(); }, 5s)) {
                deinit.join();
            } else {
                ADD_FAILURE() << "deinit still waits after its server was killed (a lost wake-up); leaking the client";
                deinit.detach();
                (void)c->release();
                return;
            }
        }
    }
    server.terminate();
    (void)server.wait_exit();
    ::unlink(path.c_str());
    expect_holdings(baseline, "at the end");
}

}  // namespace
}  // namespace datapump::ipc
