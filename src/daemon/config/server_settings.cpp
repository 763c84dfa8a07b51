#include "config/server_settings.hpp"

namespace datapump::daemon {
namespace {

http::send_path to_server(send_path_choice c) {
    switch (c) {
        case send_path_choice::auto_:
            return http::send_path::automatic;
        case send_path_choice::sendfile:
            return http::send_path::sendfile;
        case send_path_choice::splice:
            return http::send_path::splice;
        case send_path_choice::send_zc:
            return http::send_path::send_zc;
        case send_path_choice::send:
            return http::send_path::send;
    }
    return http::send_path::automatic;
}

http::follow_policy to_follow_policy(const daemon_config& cfg) {
    if (cfg.follow_uploads == "auto") {
        // The safest default that keeps load-and-play: a server that guards writes with a token
        // guards uploads in progress with it too.
        return cfg.upload_token.empty() ? http::follow_policy::public_ : http::follow_policy::token;
    }
    return cfg.follow_uploads == "public"  ? http::follow_policy::public_
           : cfg.follow_uploads == "token" ? http::follow_policy::token
                                           : http::follow_policy::off;
}

}  // namespace

http::server_config to_server_config(const daemon_config& cfg) {
    http::server_config sc;
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
    sc.access_format = cfg.access_log_format == "json" ? http::access_log_format::json : http::access_log_format::combined;
    sc.writable = cfg.writable;
    sc.upload_token = cfg.upload_token;
    sc.max_upload = cfg.max_upload;
    sc.upload_windows = cfg.upload_windows;
    sc.durability = cfg.durability_batch ? ingest::durability::batched : ingest::durability::per_upload;
    sc.durability_window = std::chrono::milliseconds(cfg.durability_window_ms);
    // private control plane
    for (const auto& more : cfg.more_listen) {
        sc.more_listen.push_back({more.host, more.port});
    }
    if (!cfg.admin_socket.empty()) {
        sc.admin = http::admin_kind::unix_socket;
        sc.admin_socket = cfg.admin_socket;
    } else if (!cfg.admin_host.empty()) {
        sc.admin = http::admin_kind::tcp;
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
    sc.follow_uploads = to_follow_policy(cfg);
    // hostile network: nothing held forever
    sc.send_timeout_ms = cfg.send_timeout_ms;
    sc.max_pause_ms = cfg.max_pause_ms;
    // hostile network: per-client-address limits
    sc.max_connections_per_ip = cfg.max_connections_per_ip;
    sc.max_streams_per_ip = cfg.max_streams_per_ip;
    sc.max_rate_per_ip = cfg.max_rate_per_ip;
    return sc;
}

}  // namespace datapump::daemon
