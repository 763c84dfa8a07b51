// File: config/server_settings.hpp (target datapump_daemon_config)
//
// conf: the daemon's settings as the HTTP server takes them. One function, so that start-up and
// every reload (SIGHUP) build the server's configuration the same way.
//
// Pure; any thread.
#pragma once

#include "config/config.hpp"
#include "datapump/http/server.hpp"

namespace datapump::daemon {

// `config` (validated) as http::server_config: send_path_choice to http::send_path, the admin
// listener's kind, "auto" follow_uploads resolved (token when an upload token is set, else
// public), milliseconds as durations.
[[nodiscard]] http::server_config to_server_config(const daemon_config& config);

}  // namespace datapump::daemon
