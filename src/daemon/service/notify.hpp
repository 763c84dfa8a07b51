// File: service/notify.hpp (target datapump_daemon_service)
//
// The daemon's side of systemd's notify protocol (sd_notify(3), through libsystemd): what a
// `Type=notify` unit (packaging/systemd/datapumpd.service) waits for. Every call sends one datagram
// to $NOTIFY_SOCKET and is a no-op when it is unset (started from a shell, a test, another
// supervisor). Failures are ignored: the service manager's view is advisory, serving is not.
//
// Thread-safety: any thread; each call is one send.
#pragma once

#include <string_view>

namespace datapump::daemon::service {

// READY=1: the listeners are bound and the loops accept (call after http::server::start).
void notify_ready();
// RELOADING=1 with MONOTONIC_USEC: a reload (SIGHUP) began; notify_ready() when it is done.
void notify_reloading();
// STOPPING=1: shutdown began (the grace period runs).
void notify_stopping();
// STATUS=<text>: one line `systemctl status` shows.
void notify_status(std::string_view text);

}  // namespace datapump::daemon::service
