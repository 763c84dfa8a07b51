// datapumpd: the zero-copy HTTP streaming daemon (docs/daemon.md).
//
// main() parses the configuration (flags over an optional TOML file), sets up logging (an
// asynchronous logger, so the event loops never wait on the terminal), starts the server and
// waits for SIGTERM or SIGINT; then it stops accepting, gives streams the grace period and exits.
// SIGHUP re-reads the configuration (the same command line, so the --config file again) and
// applies it to new requests (docs/daemon.md, "Reload").
#include "config/config.hpp"
#include "config/reload.hpp"
#include "config/server_settings.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/http/server.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <pthread.h>
#include <sys/resource.h>

namespace {

void use_async_logger() {
    // Overrun the oldest line rather than block a loop when the terminal is slow.
    spdlog::init_thread_pool(8192, 1);
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto logger = std::make_shared<spdlog::async_logger>("datapumpd", sink, spdlog::thread_pool(),
                                                         spdlog::async_overflow_policy::overrun_oldest);
    spdlog::set_default_logger(logger);
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
    // lead: notify_reloading()
    const auto began = std::chrono::steady_clock::now();
    auto plan = datapump::daemon::reload_config(argc, argv, running);
    if (!plan) {
        spdlog::error("reload refused; still running the previous configuration:\n{}", plan.error());
        // lead: notify_ready()
        return;
    }
    for (const auto& kept : plan->needs_restart) {
        spdlog::warn("reload: {}: needs a restart; kept as running", kept);
    }
    const auto parsed_at = std::chrono::steady_clock::now();
    const datapump::http::server_config next = datapump::daemon::to_server_config(plan->next);
    if (plan->next.max_connections > running.max_connections) {
        raise_descriptor_limit(datapump::http::descriptors_needed(next), plan->next.max_connections);
    }
    if (auto applied = server.reconfigure(next); !applied) {
        spdlog::error("reload refused; still running the previous configuration: cannot serve {}: {}",
                      plan->next.root, datapump::describe(applied.error(), plan->next.root));
        // lead: notify_ready()
        return;
    }
    if (plan->next.log_level != running.log_level) {
        (void)datapump::configure_logging(plan->next.log_level);  // validated: a known level
    }
    // lead: apply log settings
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
    // lead: notify_ready()
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
    use_async_logger();
    if (!datapump::configure_logging(cfg.log_level)) {
        std::fprintf(stderr, "datapumpd: unknown log level '%s'\n", cfg.log_level.c_str());
        return 2;
    }
    spdlog::flush_every(std::chrono::seconds(1));

    // The loops inherit this mask: only the waiting main thread takes the signals.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);  // conf: reload
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // sendfile() to a closed socket must fail, not kill us

    const datapump::http::server_config sc = datapump::daemon::to_server_config(cfg);
    if (const std::string warning = datapump::daemon::exposure_warning(cfg); !warning.empty()) {
        spdlog::warn("{}", warning);
    }
    raise_descriptor_limit(datapump::http::descriptors_needed(sc), cfg.max_connections);

    auto server = datapump::http::server::start(sc);
    if (!server) {
        spdlog::critical("datapumpd: cannot start: {}", datapump::describe(server.error(), cfg.root));
        spdlog::shutdown();
        return 1;
    }
    int signal_number = 0;
    while (sigwait(&stop_signals, &signal_number) == 0 && signal_number == SIGHUP) {
        reload(argc, argv, cfg, **server);  // conf
    }
    spdlog::info("signal {}: stopping (grace {} ms)", signal_number, cfg.grace_ms);
    (*server)->shutdown(std::chrono::milliseconds(cfg.grace_ms));
    server->reset();
    spdlog::info("datapumpd stopped");
    spdlog::shutdown();
    return 0;
}
