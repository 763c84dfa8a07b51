// File: service/listen_fds.hpp (target datapump_daemon_service)
//
// Socket activation (sd_listen_fds(3), through libsystemd): the listening sockets a socket unit
// (packaging/systemd/datapumpd.socket) or `systemd-socket-activate` passed from descriptor 3 on,
// named in $LISTEN_FDS/$LISTEN_PID/$LISTEN_FDNAMES. The daemon hands them to the server
// (http::server_config::inherited_listeners), which serves each on the --listen address it is
// bound to; a restart then keeps the socket, and connections arriving meanwhile wait in its queue.
//
// Ownership: the descriptors are the caller's (close them when the server has started: it keeps
// its own duplicates). Thread-safety: call once, from main() before any thread starts (it unsets
// the LISTEN_* variables, so that no child process takes them for its own).
#pragma once

#include <string>
#include <vector>

namespace datapump::daemon::service {

struct inherited_sockets {
    std::vector<int> fds;  // close-on-exec set
    std::string error;     // non-empty: LISTEN_* were set but unusable (the fds are then empty)
};

// The sockets passed to this process (none without LISTEN_FDS, or when LISTEN_PID is another's).
[[nodiscard]] inherited_sockets take_listen_fds();

}  // namespace datapump::daemon::service
