// datapumpd: the zero-copy HTTP streaming daemon (docs/daemon.md).
//
// main() parses the configuration (flags over an optional TOML file), sets up logging (the
// daemon log and the access log: asynchronous loggers, so the event loops never wait on a disk
// or a terminal; logs/logs.hpp), starts the server and waits for signals: SIGUSR1 reopens the log
// files; SIGTERM or SIGINT stop accepting, give streams the grace period and exit.
#include "config/config.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/http/server.hpp"
#include "logs/logs.hpp"
#include "service/listen_fds.hpp"
#include "service/notify.hpp"

#include <csignal>
#include <cstdio>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

namespace {

datapump::http::send_path to_server(datapump::daemon::send_path_choice c) {
    using datapump::daemon::send_path_choice;
    using datapump::http::send_path;
    switch (c) {
        case send_path_choice::auto_:
            return send_path::automatic;
        case send_path_choice::sendfile:
            return send_path::sendfile;
        case send_path_choice::splice:
            return send_path::splice;
        case send_path_choice::send_zc:
            return send_path::send_zc;
        case send_path_choice::send:
            return send_path::send;
    }
    return send_path::automatic;
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

}  // namespace

int main(int argc, char** argv) {
    auto parsed = datapump::daemon::parse_config(argc, argv);
    if (!parsed.config) {
        std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
        return parsed.exit_code;
    }
    const auto& cfg = *parsed.config;
    // Socket activation, taken before any thread starts (it unsets LISTEN_*).
    const auto inherited = datapump::daemon::service::take_listen_fds();
    // Every signal main() waits for is blocked before the first thread (the logger's) starts: a
    // thread that does not block SIGTERM takes one sent before main() waits for it and dies of it
    // (exit by signal, seen in service/restart-keeps-socket). The loops inherit this mask too.
    sigset_t waited_signals;
    sigemptyset(&waited_signals);
    sigaddset(&waited_signals, SIGTERM);
    sigaddset(&waited_signals, SIGINT);
    sigaddset(&waited_signals, SIGUSR1);  // reopen the log files (logrotate)
    pthread_sigmask(SIG_BLOCK, &waited_signals, nullptr);
    if (const std::string problem = datapump::daemon::open_logs({.log_file = cfg.log_file,
                                                                   .access_log = cfg.access_log});
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

    datapump::http::server_config sc;
    sc.root = cfg.root;
    sc.listen_host = cfg.listen_host;
    sc.listen_port = cfg.listen_port;
    sc.loops = cfg.loops;
    sc.provider = cfg.provider;
    sc.path = to_server(cfg.send_path);
    sc.cache_mib = cfg.cache_mib;
    sc.buffer_kib = cfg.buffer_kib;
    sc.capacity = cfg.capacity;
    sc.default_rate = cfg.default_rate;
    sc.max_rate = cfg.max_rate;
    sc.default_burst = cfg.default_burst;
    sc.rt_vps = cfg.rt_vps;
    sc.rt_max_density = cfg.rt_max_density;
    sc.max_connections = cfg.max_connections;
    sc.idle_timeout_ms = cfg.idle_timeout_ms;
    sc.header_timeout_ms = cfg.header_timeout_ms;
    sc.max_header_bytes = cfg.max_header_bytes;
    sc.max_request_line = cfg.max_request_line;
    sc.directory_listing = cfg.directory_listing;
    sc.access_log = cfg.access_log != "off";
    sc.writable = cfg.writable;
    sc.upload_token = cfg.upload_token;
    sc.max_upload = cfg.max_upload;
    sc.upload_windows = cfg.upload_windows;
    sc.durability = cfg.durability_batch ? datapump::ingest::durability::batched : datapump::ingest::durability::per_upload;
    sc.durability_window = std::chrono::milliseconds(cfg.durability_window_ms);
    // private control plane
    for (const auto& more : cfg.more_listen) {
        sc.more_listen.push_back({more.host, more.port});
    }
    if (!cfg.admin_socket.empty()) {
        sc.admin = datapump::http::admin_kind::unix_socket;
        sc.admin_socket = cfg.admin_socket;
    } else if (!cfg.admin_host.empty()) {
        sc.admin = datapump::http::admin_kind::tcp;
        sc.admin_address = {cfg.admin_host, cfg.admin_port};
    }
    sc.admin_token = cfg.admin_token;
    // hostile network: framing and paths
    sc.serve_dotfiles = cfg.serve_dotfiles;
    // hostile network: uploads
    sc.max_uploads = cfg.max_uploads;
    sc.max_uploads_per_ip = cfg.max_uploads_per_ip;
    sc.upload_min_rate = cfg.upload_min_rate;
    sc.upload_rate_window_ms = cfg.upload_rate_window_ms;
    if (cfg.follow_uploads == "auto") {
        // The safest default that keeps load-and-play: a server that guards writes with a token
        // guards uploads in progress with it too.
        sc.follow_uploads = cfg.upload_token.empty() ? datapump::http::follow_policy::public_
                                                     : datapump::http::follow_policy::token;
    } else {
        sc.follow_uploads = cfg.follow_uploads == "public" ? datapump::http::follow_policy::public_
                            : cfg.follow_uploads == "token" ? datapump::http::follow_policy::token
                                                             : datapump::http::follow_policy::off;
    }
    if (const std::string warning = datapump::daemon::exposure_warning(cfg); !warning.empty()) {
        spdlog::warn("{}", warning);
    }
    // hostile network: nothing held forever
    sc.send_timeout_ms = cfg.send_timeout_ms;
    sc.max_pause_ms = cfg.max_pause_ms;
    // hostile network: per-client-address limits, and the descriptors they all need
    sc.max_connections_per_ip = cfg.max_connections_per_ip;
    sc.max_streams_per_ip = cfg.max_streams_per_ip;
    sc.max_rate_per_ip = cfg.max_rate_per_ip;
    raise_descriptor_limit(datapump::http::descriptors_needed(sc), cfg.max_connections);
    // logs
    sc.access_format = cfg.access_log_format == "json" ? datapump::http::access_log_format::json
                                                       : datapump::http::access_log_format::combined;
    sc.access_sink = datapump::daemon::access_line_sink();
    // pkg: socket activation (the server serves each on the --listen address it is bound to)
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
    // pkg: the server holds its own duplicates of the inherited sockets; tell systemd we serve.
    for (const int fd : inherited.fds) {
        ::close(fd);
    }
    datapump::daemon::service::notify_status("serving " + cfg.root);
    datapump::daemon::service::notify_ready();
    int signal_number = 0;
    for (;;) {
        sigwait(&waited_signals, &signal_number);
        if (signal_number == SIGUSR1) {
            datapump::daemon::reopen_logs();
            continue;
        }
        break;
    }
    datapump::daemon::service::notify_stopping();
    spdlog::info("signal {}: stopping (grace {} ms)", signal_number, cfg.grace_ms);
    (*server)->shutdown(std::chrono::milliseconds(cfg.grace_ms));
    server->reset();
    spdlog::info("datapumpd stopped");
    spdlog::shutdown();
    return 0;
}
