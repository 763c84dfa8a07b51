// Test support: an accept loop at descriptor exhaustion, measured. In a forked child (so the
// lowered RLIMIT_NOFILE and the descriptors it fills stay there), `start` brings a server up and
// says where it listens; the child then takes every free descriptor but `clients` client sockets,
// connects them (the listener's accept now fails with EMFILE) and connects each again as soon as
// the server closes it, and for `window` measures the process's CPU time (the clients' included:
// they only run when the server sheds one) and the log lines that mention accept. A loop that retries at once burns
// the whole window and, if it logs each failure, writes thousands of lines.
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace datapump::testing {

struct listen_address {
    sockaddr_storage storage{};
    socklen_t length = 0;
    int type = SOCK_STREAM;
    std::shared_ptr<void> keep;  // the server, alive until the measurement is over
    std::function<std::uint64_t()> failures;  // the loop's own count of accept failures, if it has one
};

struct exhaustion_figures {
    bool ok = false;               // the child set everything up (else `why` says what failed)
    double cpu_seconds = 0;        // the child's CPU time (every thread) over the window
    std::uint64_t log_lines = 0;   // log lines mentioning "accept" over the whole run
    std::uint64_t failures = 0;    // listen_address::failures() at the end (0 when none)
    char why[96] = {};
};

namespace detail {

class accept_line_counter final : public spdlog::sinks::base_sink<std::mutex> {
public:
    std::atomic<std::uint64_t> lines{0};

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        const std::string_view text(msg.payload.data(), msg.payload.size());
        if (text.find("accept") != std::string_view::npos) {
            lines.fetch_add(1, std::memory_order_relaxed);
        }
    }
    void flush_() override {}
};

inline double process_cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

inline exhaustion_figures child_run(const std::function<listen_address()>& start, int clients,
                                    std::chrono::milliseconds window) {
    exhaustion_figures f;
    const auto fail = [&f](const char* why) {
        std::snprintf(f.why, sizeof f.why, "%s", why);
        return f;
    };
    const rlimit low{256, 256};
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) {
        return fail("setrlimit");
    }
    auto counter = std::make_shared<accept_line_counter>();
    spdlog::default_logger()->sinks().push_back(counter);
    listen_address at = start();
    if (at.length == 0) {
        return fail("the server did not start");
    }
    std::vector<int> socks;
    for (int i = 0; i < clients; ++i) {
        const int s = ::socket(at.storage.ss_family, at.type | SOCK_CLOEXEC, 0);
        if (s < 0) {
            return fail("client socket");
        }
        socks.push_back(s);
    }
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        return fail("open /dev/null");
    }
    std::vector<int> filler;
    for (;;) {
        const int d = ::dup(null_fd);
        if (d < 0) {
            break;  // EMFILE: no descriptor is free
        }
        filler.push_back(d);
    }
    for (const int s : socks) {
        if (::connect(s, reinterpret_cast<const sockaddr*>(&at.storage), at.length) != 0) {
            return fail("connect");
        }
    }
    // A client the server shed (closed) connects again at once, as a flood does: the loop must
    // then pause between its failures; the spare descriptor alone would shed as fast as they come.
    std::atomic<bool> done{false};
    std::thread flood([&] {
        std::vector<pollfd> fds(socks.size());
        while (!done.load(std::memory_order_relaxed)) {
            for (std::size_t i = 0; i < socks.size(); ++i) {
                fds[i] = {socks[i], POLLIN, 0};
            }
            if (::poll(fds.data(), fds.size(), 10) <= 0) {
                continue;
            }
            for (std::size_t i = 0; i < socks.size(); ++i) {
                if (fds[i].fd < 0 || fds[i].revents == 0) {
                    continue;
                }
                ::close(socks[i]);
                socks[i] = ::socket(at.storage.ss_family, at.type | SOCK_CLOEXEC, 0);
                if (socks[i] >= 0) {
                    [[maybe_unused]] const int r =
                        ::connect(socks[i], reinterpret_cast<const sockaddr*>(&at.storage), at.length);
                }
            }
        }
    });
    const double cpu0 = process_cpu_seconds();
    std::this_thread::sleep_for(window);
    f.cpu_seconds = process_cpu_seconds() - cpu0;
    done.store(true);
    flood.join();
    f.log_lines = counter->lines.load();
    f.failures = at.failures ? at.failures() : 0;
    f.ok = true;
    return f;  // the child exits without tearing down (its descriptors are full)
}

}  // namespace detail

// Runs the above in a forked child; the figures come back through a pipe.
inline exhaustion_figures run_at_exhaustion(const std::function<listen_address()>& start, int clients = 8,
                                            std::chrono::milliseconds window = std::chrono::seconds(1)) {
    int p[2];
    if (::pipe(p) != 0) {
        return {};
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        const exhaustion_figures f = detail::child_run(start, clients, window);
        [[maybe_unused]] const ssize_t n = ::write(p[1], &f, sizeof f);
        ::_exit(0);
    }
    ::close(p[1]);
    exhaustion_figures f;
    std::snprintf(f.why, sizeof f.why, "the child wrote nothing");
    if (pid > 0) {
        exhaustion_figures got;
        if (::read(p[0], &got, sizeof got) == static_cast<ssize_t>(sizeof got)) {
            f = got;
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
    ::close(p[0]);
    return f;
}

}  // namespace datapump::testing
