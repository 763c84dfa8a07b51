// File: config/reload.hpp (target datapump_daemon_config)
//
// conf: what SIGHUP does with the configuration (docs/daemon.md, "Reload"). The daemon re-reads
// its original command line (so the --config file again, and the flags given over it), and
//
//     running ──┐
//               ├─> plan_reload ──> next: the new settings, those that need a restart kept as running
//     new file ─┘                   changed: applied to new requests; needs_restart: logged, kept
//
// A new configuration that does not parse or validate is refused as a whole: the running one
// stays, and the error names FILE:LINE:COLUMN for the file's problems.
//
// Pure but for reading the file system (the file, the root); any thread.
#pragma once

#include "config/config.hpp"

#include <string>
#include <string_view>
#include <vector>
// After a standard header: expected.hpp's clang workaround keys on __GLIBCXX__.
#include "datapump/base/expected.hpp"

namespace datapump::daemon {

struct reload_plan {
    daemon_config next;                      // what to run with from now on
    std::vector<std::string> changed;        // "key: old -> new", applied to new requests
    std::vector<std::string> needs_restart;  // "key: new (running: old)", kept as running
};

// True for a key whose value is fixed while the daemon runs: the listeners (listen,
// admin_listen), the threads and memory made at start (loops, rt_vps, rt_max_density,
// cache_mib, buffer_kib), the provider and send path, and the upload machinery made only when
// writable (writable, insecure_writable, upload_windows, max_uploads, durability,
// durability_window_ms). `root` is not among them: it changes live, but on a writable daemon
// (plan_reload keeps it there, uploads live in it). One attribute decides it: for a server
// setting its rule in http::setting_rules() (which server::reconfigure follows too), for the
// daemon's own the option table's row (options.hpp, reload_rule_of).
[[nodiscard]] bool needs_restart(std::string_view key);

// Compares `next` with `running` key by key (tokens by value, shown as "(set)"), keeps the
// settings that need a restart as running and validates the result. Errors: validate_config's
// lines, when the merged configuration is not usable.
[[nodiscard]] std::expected<reload_plan, std::string> plan_reload(const daemon_config& running,
                                                                  const daemon_config& next);

// Parses `argv` (the daemon's own command line) again and plans the reload against `running`.
// Errors: parse_config's message (problems of the file start with FILE:LINE:COLUMN) without its
// "--help" hint, or plan_reload's.
[[nodiscard]] std::expected<reload_plan, std::string> reload_config(int argc, const char* const* argv,
                                                                    const daemon_config& running);

}  // namespace datapump::daemon
