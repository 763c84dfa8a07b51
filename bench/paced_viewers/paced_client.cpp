// Many paced viewers (issue 16): one process holding N concurrent HTTP/1.1 downloads, cheaply,
// for bench/paced_viewers/run.sh. It shares the machine's cores with the server it measures, so
// it does as little as it can per byte:
//   - one thread, one epoll set (level-triggered), non-blocking sockets;
//   - the response head is read into a small per-client buffer; the body is received with
//     recv(MSG_TRUNC), which on TCP discards the bytes in the kernel and returns their count (no
//     copy to user space; --copy receives into a 16 MiB scratch buffer instead), up to 16 MiB per
//     call, so one call drains whatever the socket holds;
//   - no per-byte work: bytes are counted, not checked.
//
// Client i connects at t0 + i * ramp / N (a linear ramp, so the server's accept queue never sees
// N connects at once), sends `GET PATH_i QUERY HTTP/1.1` with PATH_i the title i mod --titles
// (round robin), and reads for --seconds from its own connect; then it closes. Its figures:
//   bytes    body bytes received up to its end
//   elapsed  end - first body byte (or - request sent, when no body byte came)
//   on time  bytes >= 0.97 * rate * elapsed
// Why from the first body byte: the time to it is start-up (connect, admission, open), not
// pacing, and is reported separately (ttfb); a viewer's player needs the rate once bytes flow.
// Neither server is charged for it, so neither is credited with it either. The token buckets'
// initial bursts do count in `bytes`: datapumpd sends one piece at once (a quarter second of the
// rate, at least 256 KiB: 0.26 s at 1 MB/s), nginx's limit_rate allows rate * (whole seconds
// since the request + 1), i.e. up to one second ahead. Both are below the 3 % slack at 60 s
// (1.8 s of rate), and a stream that stalled longer than slack + burst is late either way.
// A response ending before the client's end (a reset, the server closing) is an error; so are a
// status other than 200 and a malformed head. Connect failures are counted apart.
//
// Output: a human summary on stderr, then one machine-readable line on stdout:
//   clients=N on_time=.. on_time_pct=.. connect_failures=.. http_errors=.. errors=.. bytes=..
//   min_bytes=.. p1_bytes=.. median_bytes=.. min_ratio=.. p1_ratio=.. median_ratio=..
//   ttfb_p99_ms=.. ttfb_max_ms=.. client_cpu_s=..
// (ratio = bytes / (rate * elapsed); on time is ratio >= 0.97.)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

constexpr double on_time_fraction = 0.97;
constexpr std::size_t max_head = 16384;
constexpr std::size_t scratch_bytes = 16u << 20;

struct options {
    std::string host = "127.0.0.1";
    int port = 0;
    int clients = 1000;
    double seconds = 60;
    double ramp = 1.5;
    double rate = 1e6;  // bytes/s each client should get: for the on-time test only
    int titles = 50;
    std::string path = "/title_%02d.bin";  // printf format with the title number
    std::string query = "?rate=1M";
    int rcvbuf = 0;  // SO_RCVBUF; 0: the kernel's autotuning
    bool copy = false;
};

enum class phase : std::uint8_t { waiting, connecting, head, body, done };
enum class outcome : std::uint8_t { running, ok, connect_failed, http_error, error };

struct client {
    int fd = -1;
    phase at = phase::waiting;
    outcome result = outcome::running;
    int status = 0;
    std::int64_t start_ns = 0;  // scheduled connect
    std::int64_t request_ns = 0;
    std::int64_t first_ns = 0;  // first body byte; 0: none yet
    std::int64_t end_ns = 0;
    std::uint64_t bytes = 0;
    std::string head;
};

std::int64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

class load {
public:
    // `to` is the server's address (IPv4).
    load(const options& o, const sockaddr_in& to)
        : o_(o), clients_(static_cast<std::size_t>(o.clients)), scratch_(scratch_bytes), addr_(to) {
        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        for (int t = 0; t < o.titles; ++t) {
            char name[512];
            std::snprintf(name, sizeof(name), o.path.c_str(), t);
            requests_.push_back("GET " + std::string(name) + o.query + " HTTP/1.1\r\nHost: " + o.host +
                                "\r\nUser-Agent: datapump-paced-client\r\n\r\n");
        }
    }
    ~load() { ::close(ep_); }
    load(const load&) = delete;
    load& operator=(const load&) = delete;

    // False when epoll failed (said on stderr).
    [[nodiscard]] bool run() {
        const std::int64_t t0 = now_ns();
        const auto n = clients_.size();
        const auto ramp_ns = static_cast<std::int64_t>(o_.ramp * 1e9);
        const auto run_ns = static_cast<std::int64_t>(o_.seconds * 1e9);
        for (std::size_t i = 0; i < n; ++i) {
            clients_[i].start_ns = t0 + (n > 1 ? ramp_ns * static_cast<std::int64_t>(i) / static_cast<std::int64_t>(n - 1) : 0);
        }
        std::size_t next_connect = 0;
        std::size_t next_close = 0;  // ends are in start order: start + run_ns
        std::vector<epoll_event> events(1024);
        while (next_close < n) {
            std::int64_t now = now_ns();
            while (next_connect < n && clients_[next_connect].start_ns <= now) {
                open(next_connect++);
            }
            while (next_close < n && clients_[next_close].start_ns + run_ns <= now) {
                finish(clients_[next_close++], now, outcome::ok);
            }
            std::int64_t wake = next_close < n ? clients_[next_close].start_ns + run_ns : now;
            if (next_connect < n) {
                wake = std::min(wake, clients_[next_connect].start_ns);
            }
            int timeout_ms = static_cast<int>(std::max<std::int64_t>(0, (wake - now + 999'999) / 1'000'000));
            int got = ::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), timeout_ms);
            if (got < 0 && errno != EINTR) {
                std::perror("paced_client: epoll_wait");
                return false;
            }
            for (int e = 0; e < got; ++e) {
                client& c = clients_[events[static_cast<std::size_t>(e)].data.u64];
                if (c.at == phase::connecting) {
                    connected(c, events[static_cast<std::size_t>(e)].data.u64);
                } else if (c.at == phase::head || c.at == phase::body) {
                    receive(c);
                }
            }
        }
        return true;
    }

    int report() const {
        struct row {
            std::uint64_t bytes;
            double ratio;
        };
        std::vector<row> rows;
        std::vector<double> ttfb_ms;
        int on_time = 0;
        int connect_failures = 0;
        int http_errors = 0;
        int errors = 0;
        std::uint64_t total = 0;
        std::map<int, int> statuses;
        for (const client& c : clients_) {
            total += c.bytes;
            if (c.status != 0) {
                ++statuses[c.status];
            }
            if (c.result == outcome::connect_failed) {
                ++connect_failures;
            } else if (c.result == outcome::http_error) {
                ++http_errors;
            } else if (c.result == outcome::error) {
                ++errors;
            }
            std::int64_t from = c.first_ns != 0 ? c.first_ns : (c.request_ns != 0 ? c.request_ns : c.start_ns);
            double elapsed = static_cast<double>(c.end_ns - from) / 1e9;
            double ratio = elapsed > 0 ? static_cast<double>(c.bytes) / (o_.rate * elapsed) : 0;
            if (c.result != outcome::ok) {
                ratio = 0;  // a failed client is never on time
            }
            rows.push_back({c.bytes, ratio});
            if (ratio >= on_time_fraction) {
                ++on_time;
            }
            if (c.first_ns != 0) {
                ttfb_ms.push_back(static_cast<double>(c.first_ns - c.request_ns) / 1e6);
            }
        }
        auto at = [](auto& v, double p) { return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))]; };
        std::vector<std::uint64_t> sizes;
        std::vector<double> ratios;
        for (const row& r : rows) {
            sizes.push_back(r.bytes);
            ratios.push_back(r.ratio);
        }
        std::ranges::sort(sizes);
        std::ranges::sort(ratios);
        std::ranges::sort(ttfb_ms);
        if (ttfb_ms.empty()) {
            ttfb_ms.push_back(0);
        }
        rusage self{};
        ::getrusage(RUSAGE_SELF, &self);
        double cpu = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
                     static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
        const double n = static_cast<double>(clients_.size());
        std::fprintf(stderr, "paced_client: %zu clients, %.0f s each at %.0f B/s: %d on time (%.2f %%)\n", clients_.size(),
                     o_.seconds, o_.rate, on_time, 100.0 * on_time / n);
        std::fprintf(stderr, "  bytes: min %llu, p1 %llu, median %llu; ratio to rate x elapsed: min %.4f p1 %.4f median %.4f\n",
                     static_cast<unsigned long long>(sizes.front()), static_cast<unsigned long long>(at(sizes, 0.01)),
                     static_cast<unsigned long long>(at(sizes, 0.5)), ratios.front(), at(ratios, 0.01), at(ratios, 0.5));
        std::fprintf(stderr, "  connect failures %d, HTTP errors %d, other errors %d; statuses:", connect_failures,
                     http_errors, errors);
        for (auto [s, k] : statuses) {
            std::fprintf(stderr, " %d x%d", s, k);
        }
        std::fprintf(stderr, "\n  time to first byte: p99 %.1f ms, max %.1f ms; client CPU %.2f s\n", at(ttfb_ms, 0.99),
                     ttfb_ms.back(), cpu);
        std::printf(
            "clients=%zu on_time=%d on_time_pct=%.2f connect_failures=%d http_errors=%d errors=%d bytes=%llu "
            "min_bytes=%llu p1_bytes=%llu median_bytes=%llu min_ratio=%.4f p1_ratio=%.4f median_ratio=%.4f "
            "ttfb_p99_ms=%.1f ttfb_max_ms=%.1f client_cpu_s=%.2f\n",
            clients_.size(), on_time, 100.0 * on_time / n, connect_failures, http_errors, errors,
            static_cast<unsigned long long>(total), static_cast<unsigned long long>(sizes.front()),
            static_cast<unsigned long long>(at(sizes, 0.01)), static_cast<unsigned long long>(at(sizes, 0.5)),
            ratios.front(), at(ratios, 0.01), at(ratios, 0.5), at(ttfb_ms, 0.99), ttfb_ms.back(), cpu);
        return 0;
    }

private:
    void open(std::size_t i) {
        client& c = clients_[i];
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            fail(c, outcome::connect_failed, "socket", errno);
            return;
        }
        if (o_.rcvbuf > 0) {
            ::setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &o_.rcvbuf, sizeof(o_.rcvbuf));
        }
        epoll_event ev{};
        ev.data.u64 = i;
        int rc = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof(addr_));
        if (rc < 0 && errno != EINPROGRESS) {
            fail(c, outcome::connect_failed, "connect", errno);
            return;
        }
        c.at = phase::connecting;
        ev.events = rc == 0 ? EPOLLIN : EPOLLOUT;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
        if (rc == 0) {
            send_request(c, i);
        }
    }

    void connected(client& c, std::size_t i) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            fail(c, outcome::connect_failed, "connect", err);
            return;
        }
        epoll_event ev{};
        ev.data.u64 = i;
        ev.events = EPOLLIN;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        send_request(c, i);
    }

    void send_request(client& c, std::size_t i) {
        const std::string& req = requests_[i % requests_.size()];
        c.request_ns = now_ns();
        ssize_t sent = ::send(c.fd, req.data(), req.size(), MSG_NOSIGNAL);
        if (sent != static_cast<ssize_t>(req.size())) {
            fail(c, outcome::error, "send", sent < 0 ? errno : EAGAIN);
            return;
        }
        c.at = phase::head;
    }

    void receive(client& c) {
        if (c.at == phase::head) {
            char buf[4096];
            ssize_t got = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                    return;
                }
                fail(c, outcome::error, "recv (head)", got == 0 ? 0 : errno);
                return;
            }
            c.head.append(buf, static_cast<std::size_t>(got));
            auto end = c.head.find("\r\n\r\n");
            if (end == std::string::npos) {
                if (c.head.size() > max_head) {
                    fail(c, outcome::error, "head too long", 0);
                }
                return;
            }
            std::string_view line(c.head);
            if (line.size() < 12 || !line.starts_with("HTTP/1.")) {
                fail(c, outcome::error, "malformed head", 0);
                return;
            }
            c.status = std::atoi(c.head.c_str() + 9);
            if (c.status != 200) {
                std::string what = "HTTP status " + std::to_string(c.status);
                fail(c, outcome::http_error, what.c_str(), 0);
                return;
            }
            std::size_t body = c.head.size() - (end + 4);
            c.at = phase::body;
            if (body > 0) {
                c.bytes += body;
                c.first_ns = now_ns();
            }
            c.head.clear();
            c.head.shrink_to_fit();
            return;
        }
        ssize_t got = ::recv(c.fd, scratch_.data(), scratch_.size(), MSG_DONTWAIT | (o_.copy ? 0 : MSG_TRUNC));
        if (got > 0) {
            if (c.first_ns == 0) {
                c.first_ns = now_ns();
            }
            c.bytes += static_cast<std::uint64_t>(got);
            return;
        }
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        fail(c, outcome::error, got == 0 ? "the server closed the response early" : "recv", got == 0 ? 0 : errno);
    }

    void finish(client& c, std::int64_t now, outcome result) {
        if (c.at == phase::done) {
            return;
        }
        if (c.at == phase::waiting || c.at == phase::connecting || c.at == phase::head) {
            result = c.at == phase::connecting ? outcome::connect_failed : result == outcome::ok ? outcome::error : result;
        }
        if (c.fd >= 0) {
            ::close(c.fd);  // also leaves the epoll set
            c.fd = -1;
        }
        c.end_ns = now;
        c.result = result;
        c.at = phase::done;
    }

    void fail(client& c, outcome result, const char* what, int err) {
        if (reported_ < 5) {
            ++reported_;
            std::string why = err != 0 ? ": " + std::error_code(err, std::generic_category()).message() : "";
            std::fprintf(stderr, "paced_client: client %zu: %s%s\n", static_cast<std::size_t>(&c - clients_.data()),
                         what, why.c_str());
        }
        finish(c, now_ns(), result);
    }

    const options& o_;
    std::vector<client> clients_;
    std::vector<char> scratch_;
    std::vector<std::string> requests_;
    sockaddr_in addr_{};
    int ep_ = -1;
    int reported_ = 0;
};

// False when even the hard limit is too low for `clients` sockets (said on stderr).
bool raise_nofile(int clients) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < static_cast<rlim_t>(clients) + 16) {
        std::fprintf(stderr, "paced_client: RLIMIT_NOFILE %llu is too low for %d clients (raise the hard limit)\n",
                     static_cast<unsigned long long>(lim.rlim_cur), clients);
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    CLI::App app{"Many paced viewers: N concurrent HTTP/1.1 downloads from one process (bench/paced_viewers)"};
    app.add_option("--host", o.host, "server IPv4 address");
    app.add_option("--port", o.port, "server port")->required();
    app.add_option("--clients", o.clients, "concurrent downloads")->check(CLI::PositiveNumber);
    app.add_option("--seconds", o.seconds, "how long each client reads, from its connect")->check(CLI::PositiveNumber);
    app.add_option("--ramp", o.ramp, "seconds over which the connects are spread (linearly)")->check(CLI::NonNegativeNumber);
    app.add_option("--rate", o.rate, "bytes/s each client should get (the on-time test)")->check(CLI::PositiveNumber);
    app.add_option("--titles", o.titles, "titles, requested round robin")->check(CLI::PositiveNumber);
    app.add_option("--path", o.path, "printf format of a title's path, given its number");
    app.add_option("--query", o.query, "appended to each path (datapumpd reads the rate from it)");
    app.add_option("--rcvbuf", o.rcvbuf, "SO_RCVBUF bytes (0: kernel autotuning)");
    app.add_flag("--copy", o.copy, "copy the body to user space instead of recv(MSG_TRUNC)");
    CLI11_PARSE(app, argc, argv);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<std::uint16_t>(o.port));
    if (::inet_pton(AF_INET, o.host.c_str(), &to.sin_addr) != 1) {
        std::fprintf(stderr, "paced_client: '%s' is not an IPv4 address\n", o.host.c_str());
        return 2;
    }
    if (!raise_nofile(o.clients)) {
        return 2;
    }
    load l(o, to);
    if (!l.run()) {
        return 1;
    }
    return l.report();
}
