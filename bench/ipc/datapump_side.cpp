// The datapump side of the command-channel benchmark (see datapump_side.hpp): datapump's
// ipc::client against an ipc::server in a forked, pinned child, measured like the peers.
#include "datapump_side.hpp"

#include "datapump/ipc/client.hpp"
#include "datapump/ipc/server.hpp"
#include "datapump/loan/client.hpp"
#include "datapump/loan/server.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

namespace ipc_bench {
namespace {

using namespace std::chrono_literals;
namespace ipc = datapump::ipc;

ipc::wait_policy policy(bool busy_poll) {
    return busy_poll ? ipc::wait_policy{ipc::wait_strategy::spin, {}} : ipc::wait_policy{ipc::wait_strategy::sleep, {}};
}

std::string endpoint_name(const char* what) {
    return "@datapump-ipc-bench-" + std::to_string(::getpid()) + "-" + what;
}

// A server child serves until the parent's SIGTERM (blocked before the fork: see sigterm_blocked).
void wait_for_sigterm() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
}

// The server child: an echo-nothing exec (status = input length), until the parent kills it.
pid_t start_server(const std::string& endpoint, bool busy_poll) {
    return fork_server([endpoint, busy_poll] {
        auto runtime = ipc::server_runtime::init({1});
        if (!runtime) {
            die("datapump server: runtime");
        }
        ipc::server_handlers h;
        h.exec = [](ipc::connection&, std::uint32_t, std::span<const std::byte> in, std::span<std::byte>) {
            return ipc::exec_result{static_cast<std::int32_t>(in.size()), 0};
        };
        ipc::server_options o;
        o.wait = policy(busy_poll);
        auto srv = (*runtime)->create(endpoint, h, o);
        if (!srv) {
            die("datapump server: create " + datapump::describe(srv.error()));
        }
        wait_for_sigterm();
    });
}

// Blocks SIGTERM before forking so the child can sigwait for it (the mask is inherited).
struct sigterm_blocked {
    sigset_t old{};
    sigterm_blocked() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, &old);
    }
    ~sigterm_blocked() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
    sigterm_blocked(const sigterm_blocked&) = delete;
    sigterm_blocked& operator=(const sigterm_blocked&) = delete;
};

std::unique_ptr<ipc::client> connect_client(const std::string& endpoint, bool busy_poll, pid_t server,
                                            std::optional<ipc::wait_strategy> strategy = std::nullopt) {
    ipc::client_options o;
    o.in_process = false;
    o.wait = policy(busy_poll);
    if (strategy) {
        o.wait.strategy = *strategy;
        o.wait.spin_for = std::chrono::microseconds{50};
    }
    o.slots = 256;
    o.input_capacity = 64;
    o.output_capacity = 64;
    for (int i = 0; i < 5000; ++i) {  // the child needs a moment to listen
        auto c = ipc::client::init(endpoint, o);
        if (c) {
            return std::move(*c);
        }
        if (c.error().code != datapump::errc::not_found) {
            die("datapump client: " + datapump::describe(c.error()));
        }
        std::this_thread::sleep_for(1ms);
    }
    ::kill(server, SIGKILL);
    die("datapump client: the server never listened");
}

void stop_server(pid_t pid) {
    ::kill(pid, SIGTERM);
    wait_server(pid);
}

}  // namespace

latency_samples datapump_sync_latency(int iterations, bool busy_poll) {
    const std::string endpoint = endpoint_name(busy_poll ? "lat-busy" : "lat-sleep");
    latency_samples samples;
    pid_t pid = 0;
    {
        sigterm_blocked blocked;
        pid = start_server(endpoint, busy_poll);
    }
    scoped_pin pin{client_cpu};
    auto c = connect_client(endpoint, busy_poll, pid);
    const auto measured = static_cast<std::uint64_t>(iterations);
    const std::uint64_t total = measured + warmup_count(measured);
    samples.ns.reserve(measured);
    for (std::uint64_t i = 0; i < total; ++i) {
        const std::uint64_t before = monotonic_ns();
        auto r = c->execute(1, {}, {});
        const std::uint64_t after = monotonic_ns();
        if (!r) {
            ::kill(pid, SIGKILL);
            die("datapump sync command: " + datapump::describe(r.error()));
        }
        if (i >= total - measured) {
            samples.ns.push_back(after - before);
        }
    }
    if (c->stats().slot_commands != total) {
        die("datapump sync latency: not every command went through shared memory");
    }
    c->deinit();
    stop_server(pid);
    return samples;
}

double datapump_async_throughput(std::uint64_t commands) {
    const std::string endpoint = endpoint_name("async");
    pid_t pid = 0;
    {
        sigterm_blocked blocked;
        pid = start_server(endpoint, true);
    }
    scoped_pin pin{client_cpu};
    // The client does not spin: with two cores, the server's channel thread has one and the
    // submitting thread the other; the submitter reaps completions itself when slots run out.
    auto c = connect_client(endpoint, false, pid, ipc::wait_strategy::spin_then_sleep);
    struct counter {
        std::atomic<std::uint64_t> done{0};
        std::uint64_t end_ns = 0;
        std::uint64_t target = 0;
    } count;
    ipc::callbacks cb;
    cb.context = &count;
    cb.completion = [](void* ctx, ipc::outcome& o) {
        auto& k = *static_cast<counter*>(ctx);
        if (!o) {
            die("datapump async command failed: " + datapump::describe(o.error()));
        }
        if (k.done.fetch_add(1, std::memory_order_relaxed) + 1 == k.target) {
            k.end_ns = monotonic_ns();
        }
    };
    std::byte input[64] = {};
    const std::uint64_t warm = warmup_count(commands);
    count.target = warm + commands;
    std::uint64_t start_ns = 0;
    for (std::uint64_t i = 0; i < warm + commands; ++i) {
        if (i == warm) {
            start_ns = monotonic_ns();
        }
        std::memcpy(input, &i, sizeof(i));
        auto r = c->execute(2, input, {}, cb);
        if (!r) {
            ::kill(pid, SIGKILL);
            die("datapump async submit: " + datapump::describe(r.error()));
        }
    }
    c->deinit();  // waits for the last completion
    const auto s = c->stats();
    std::fprintf(stderr, "ipc_bench: datapump async: %llu over slots, %llu over the socket\n",
                 static_cast<unsigned long long>(s.slot_commands), static_cast<unsigned long long>(s.backup_commands));
    stop_server(pid);
    const double seconds = static_cast<double>(count.end_ns - start_ns) / 1e9;
    return static_cast<double>(commands) / seconds;
}

double datapump_bulk_loans(const std::string& path) {
    const file_digest expected = warm_file(path);
    const std::string endpoint = endpoint_name("loans");
    const auto slash = path.rfind('/');
    const std::string root = slash == std::string::npos ? "." : path.substr(0, slash);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    pid_t pid = 0;
    {
        sigterm_blocked blocked;
        pid = fork_server([&] {
            // A cache that holds the whole file: the loans are what is measured, not the disk.
            datapump::loan::server_config cfg;
            cfg.endpoint = endpoint;
            cfg.root = root;
            cfg.cache.buffers.buffer_size = std::size_t{256} * 1024;
            cfg.cache.buffers.buffer_count =
                static_cast<std::size_t>(expected.bytes / cfg.cache.buffers.buffer_size + 64);
            cfg.max_loan_bytes = std::uint64_t{64} << 20;
            cfg.lease_time = std::chrono::milliseconds{60'000};
            auto srv = datapump::loan::server::create(cfg);
            if (!srv) {
                die("loan server: " + datapump::describe(srv.error()));
            }
            wait_for_sigterm();
        });
    }
    scoped_pin pin{client_cpu};
    std::unique_ptr<datapump::loan::client> c;
    for (int i = 0; i < 20000 && !c; ++i) {  // the child pre-faults its arena first
        auto r = datapump::loan::client::connect(endpoint);
        if (r) {
            c = std::move(*r);
        } else if (r.error().code != datapump::errc::not_found) {
            ::kill(pid, SIGKILL);
            die("loan client: " + datapump::describe(r.error()));
        } else {
            std::this_thread::sleep_for(1ms);
        }
    }
    if (!c) {
        ::kill(pid, SIGKILL);
        die("loan client: the server never listened");
    }
    auto f = c->open(name);
    if (!f) {
        ::kill(pid, SIGKILL);
        die("loan open: " + datapump::describe(f.error(), name));
    }
    constexpr std::uint64_t chunk = std::uint64_t{4} << 20;
    // One pass to fill the server's cache (its first read of each block), then the measured one.
    double rate = 0;
    for (int pass = 0; pass < 2; ++pass) {
        stream_checksum sum;
        const std::uint64_t start = monotonic_ns();
        for (std::uint64_t off = 0; off < expected.bytes;) {
            auto l = c->borrow(*f, off, chunk);
            if (!l || l->size() == 0) {
                ::kill(pid, SIGKILL);
                die("loan borrow failed");
            }
            for (const auto piece : l->pieces()) {
                sum.add(piece);
            }
            off += l->size();
        }
        const std::uint64_t end = monotonic_ns();
        if (sum.bytes() != expected.bytes || sum.value() != expected.checksum) {
            ::kill(pid, SIGKILL);
            die("loan bulk: the bytes received differ from the file");
        }
        rate = static_cast<double>(expected.bytes) / (static_cast<double>(end - start) / 1e9);
    }
    f = {};
    c.reset();
    stop_server(pid);
    return rate;
}

}  // namespace ipc_bench
