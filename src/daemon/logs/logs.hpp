// File: src/daemon/logs/logs.hpp (target datapump_daemon_logs, internal)
//
// logs: where datapumpd's two logs go (docs/daemon.md, "Logs").
//
//   daemon log:  spdlog's default logger -> a file (--log-file) or stderr. On stderr under systemd
//                (JOURNAL_STREAM names stderr's device:inode) each line starts with the syslog
//                priority "<N>" the journal reads (journalctl -p err filters); elsewhere with an
//                ISO 8601 timestamp with its UTC offset. The level is configure_logging()'s.
//   access log:  a logger of its own -> a file (--access-log PATH) or stderr, one line as given,
//                whatever the daemon log's level.
//
// Both are asynchronous loggers on spdlog's one worker thread: a loop hands a line over and
// never waits on a disk or a terminal; when the queue is full the oldest line is dropped
// (overrun_oldest) rather than a loop blocked. The worker writes each line with one fwrite and
// flushes it (tail -f, fail2ban and the journal see it at once).
//
// Thread-safety: open_logs() once from main before the server starts; access_line_sink()'s
// function from any thread; reopen_logs() and set_log_targets() from the thread that waits for
// signals (main), one at a time.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace datapump::daemon {

struct log_targets {
    std::string log_file = "stderr";    // a path or "stderr"
    std::string access_log = "stderr";  // a path, "stderr" or "off"
};

// Makes both loggers and sets the daemon logger as spdlog's default. Returns an empty string, or
// what could not be opened and what to do about it (the daemon then exits).
[[nodiscard]] std::string open_logs(const log_targets& targets);

// The function server_config::access_sink takes: hands a line to the access logger (which
// exists even when the access log is off, so a reload can turn it on). Empty before open_logs().
[[nodiscard]] std::function<void(std::string_view)> access_line_sink();

// A reload's new log settings (conf's "lead: apply log settings"): each log that now names
// another target ("stderr", a path, or for the access log "off") is switched to it; lines already
// queued may land on either side. A target that cannot be opened keeps the old one; the answer
// then says what failed (empty: all switched). The access log's format and on/off for requests
// are the server's settings (server_config::access_format, access_log), not these.
[[nodiscard]] std::string set_log_targets(const log_targets& targets);

// SIGUSR1 (logrotate's postrotate): every log file is opened again by its path, so a file
// renamed away is let go and a new one made. A file that cannot be opened keeps the old one
// and is reported in the daemon log. stderr is left as it is. Called by main's signal loop, and
// by a reload when log settings change (conf).
void reopen_logs();

// True when stderr is the journal's stream: JOURNAL_STREAM ("DEVICE:INODE", set by systemd for
// a service whose output goes to the journal) names the file stderr is.
[[nodiscard]] bool stderr_is_journal();

}  // namespace datapump::daemon
