// datapumpd: the zero-copy HTTP streaming daemon (docs/daemon.md).
//
// main() parses the configuration (flags over an optional TOML file), takes the sockets systemd
// passed (socket activation), sets up logging (the daemon log and the access log: asynchronous
// loggers, so the event loops never wait on a disk or a terminal; logs/logs.hpp), starts the
// server, tells systemd it is ready (sd_notify) and waits for signals: SIGHUP re-reads the
// configuration (the same command line, so the --config file again) and applies it to new
// requests (docs/daemon.md, "Reload"); SIGUSR1 reopens the log files; SIGTERM or SIGINT stop
// accepting, give streams the grace period and exit.
#include "config/config.hpp"
#include "config/reload.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/http/server.hpp"
#include "logs/logs.hpp"
#include "service/listen_fds.hpp"
#include "service/notify.hpp"

#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

namespace {

namespace service = datapump::daemon::service;

// The server's configuration for `cfg`: its server part as it is, and the access log's line sink.
datapump::http::server_config server_settings(const datapump::daemon::daemon_config& cfg) {
    datapump::http::server_config sc = cfg.server();
    sc.access_sink = datapump::daemon::access_line_sink();
    return sc;
}

// RLIMIT_NOFILE: the soft limit up to the hard one (what the administrator allows), and a warning
// when even that is below what --max-connections needs (docs/daemon.md, "Limits"): the accept
// loops then pause at exhaustion rather than fail, but clients past the limit get 503.
void raise_descriptor_limit(std::uint64_t needed, std::uint64_t max_connections) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        return;
    }
    if (lim.rlim_cur < lim.rlim_max) {
        rlimit raised = lim;
        raised.rlim_cur = lim.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            lim = raised;
        }
    }
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed) {
        spdlog::warn("the descriptor limit (RLIMIT_NOFILE) is {}, below the {} that --max-connections {} needs: raise "
                     "it (LimitNOFILE={} in the systemd unit, ulimit -n {} in a shell) or lower --max-connections; "
                     "at the limit new connections are shed with 503",
                     static_cast<std::uint64_t>(lim.rlim_cur), needed, max_connections, needed, needed);
    }
}

// conf: SIGHUP (systemctl reload). The new configuration applies to new requests; streams in
// progress keep theirs; one that does not parse or validate is refused, the running one stays.
void reload(int argc, char** argv, datapump::daemon::daemon_config& running, datapump::http::server& server) {
    service::notify_reloading();
    const auto began = std::chrono::steady_clock::now();
    auto plan = datapump::daemon::reload_config(argc, argv, running);
    if (!plan) {
        spdlog::error("reload refused; still running the previous configuration:\n{}", plan.error());
        service::notify_ready();
        return;
    }
    for (const auto& kept : plan->needs_restart) {
        spdlog::warn("reload: {}: needs a restart; kept as running", kept);
    }
    const auto parsed_at = std::chrono::steady_clock::now();
    const datapump::http::server_config next = server_settings(plan->next);
    if (plan->next.max_connections > running.max_connections) {
        raise_descriptor_limit(datapump::http::descriptors_needed(next), plan->next.max_connections);
    }
    if (auto applied = server.reconfigure(next); !applied) {
        spdlog::error("reload refused; still running the previous configuration: cannot serve {}: {}",
                      plan->next.root, datapump::describe(applied.error(), plan->next.root));
        service::notify_ready();
        return;
    }
    if (plan->next.log_level != running.log_level) {
        (void)datapump::configure_logging(plan->next.log_level);  // validated: a known level
    }
    const std::string access_log = datapump::daemon::access_log_target(plan->next);
    if (plan->next.log_file != running.log_file || access_log != datapump::daemon::access_log_target(running)) {
        if (const std::string problem = datapump::daemon::set_log_targets({plan->next.log_file, access_log});
            !problem.empty()) {
            spdlog::error("reload: {}", problem);
        }
    }
    if (const std::string warning = datapump::daemon::exposure_warning(plan->next); !warning.empty()) {
        spdlog::warn("{}", warning);
    }
    running = std::move(plan->next);
    std::string changed;
    for (const auto& c : plan->changed) {
        changed += (changed.empty() ? "" : "; ") + c;
    }
    const auto ms = [](auto d) {
        return static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(d).count()) / 1000.0;
    };
    const auto done = std::chrono::steady_clock::now();
    spdlog::info("reloaded {} in {:.1f} ms (read and checked {:.1f} ms, applied on every loop {:.1f} ms): {}",
                 running.config_file.empty() ? "the flags" : running.config_file, ms(done - began),
                 ms(parsed_at - began), ms(done - parsed_at), changed.empty() ? "no change" : changed);
    service::notify_ready();
}

}  // namespace

int main(int argc, char** argv) {
    auto parsed = datapump::daemon::parse_config(argc, argv);
    if (!parsed.config) {
        std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
        return parsed.exit_code;
    }
    // The running configuration: a reload (SIGHUP) replaces it.
    datapump::daemon::daemon_config cfg = std::move(*parsed.config);
    // Socket activation, taken before any thread starts (it unsets LISTEN_*).
    const auto inherited = service::take_listen_fds();
    // Every signal main() waits for is blocked before the first thread (the logger's) starts: a
    // thread that does not block SIGTERM takes one sent before main() waits for it and dies of it
    // (exit by signal, seen in service/restart-keeps-socket). The loops inherit this mask too:
    // only the waiting main thread takes these signals.
    sigset_t waited_signals;
    sigemptyset(&waited_signals);
    sigaddset(&waited_signals, SIGTERM);
    sigaddset(&waited_signals, SIGINT);
    sigaddset(&waited_signals, SIGHUP);   // reload
    sigaddset(&waited_signals, SIGUSR1);  // reopen the log files (logrotate)
    pthread_sigmask(SIG_BLOCK, &waited_signals, nullptr);
    if (const std::string problem = datapump::daemon::open_logs({.log_file = cfg.log_file,
                                                                   .access_log = datapump::daemon::access_log_target(cfg)});
        !problem.empty()) {
        std::fprintf(stderr, "datapumpd: %s\n", problem.c_str());
        return 1;
    }
    if (!datapump::configure_logging(cfg.log_level)) {
        std::fprintf(stderr, "datapumpd: unknown log level '%s'\n", cfg.log_level.c_str());
        return 2;
    }
    spdlog::flush_every(std::chrono::seconds(1));

    std::signal(SIGPIPE, SIG_IGN);  // sendfile() to a closed socket must fail, not kill us

    datapump::http::server_config sc = server_settings(cfg);
    if (const std::string warning = datapump::daemon::exposure_warning(cfg); !warning.empty()) {
        spdlog::warn("{}", warning);
    }
    raise_descriptor_limit(datapump::http::descriptors_needed(sc), cfg.max_connections);
    // Socket activation: the server serves each inherited socket on the --listen address it is
    // bound to (docs/daemon.md, "As a service").
    if (!inherited.error.empty()) {
        spdlog::warn("{}", inherited.error);
    }
    sc.inherited_listeners = inherited.fds;

    auto server = datapump::http::server::start(sc);
    if (!server) {
        spdlog::critical("datapumpd: cannot start: {}", datapump::describe(server.error(), cfg.root));
        spdlog::shutdown();
        return 1;
    }
    // The server holds its own duplicates of the inherited sockets; tell systemd we serve.
    for (const int fd : inherited.fds) {
        ::close(fd);
    }
    service::notify_status("serving " + cfg.root);
    service::notify_ready();
    int signal_number = 0;
    // Between signals, every 10 s: the heap that traffic used and freed (thousands of attack
    // connections' state) goes back to the system. glibc keeps it in its per-thread arenas
    // otherwise: a 10-minute attack left 47 MiB more resident for good (docs/benchmarks.md,
    // "Under attack"). malloc_trim takes each arena's lock briefly; the loops do not allocate on
    // their hot paths.
    constexpr timespec trim_every{10, 0};
    for (;;) {
        signal_number = ::sigtimedwait(&waited_signals, nullptr, &trim_every);
        if (signal_number < 0) {
            if (errno == EAGAIN) {
                ::malloc_trim(0);
            }
            continue;  // EAGAIN (the timeout) or EINTR
        }
        if (signal_number == SIGHUP) {
            reload(argc, argv, cfg, **server);
        } else if (signal_number == SIGUSR1) {
            datapump::daemon::reopen_logs();
        } else {
            break;
        }
    }
    service::notify_stopping();
    spdlog::info("signal {}: stopping (grace {} ms)", signal_number, cfg.grace_ms);
    (*server)->shutdown(std::chrono::milliseconds(cfg.grace_ms));
    server->reset();
    spdlog::info("datapumpd stopped");
    spdlog::shutdown();
    return 0;
}
