// File: config/config.hpp (target datapump_daemon_config)
//
// What `datapumpd` runs with: every option of docs/daemon.md ("Running it"), from its defaults,
// then a TOML file (`--config FILE`), then the flags actually given on the command line, in that
// order. The result is validated as a whole, so the server never sees a value it cannot use.
//
//     defaults ──> TOML file (--config) ──> flags given ──> validate ──> daemon_config
//
// Errors a user sees are text, not `datapump::error`: they name the flag or key, the value, what
// is wrong with it and what to do, and that does not fit a static string. Exceptions (CLI11,
// toml++) stay inside config.cpp; nothing here throws.
//
// Ownership: plain values, copied freely. Thread-safety: parse_config and validate_config touch no
// shared state except reading the file system (the root, the TOML file); call them from any thread.
#pragma once

#include "datapump/http/server.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace datapump::daemon {

// The daemon's settings: the server's (http::server_config, one member per setting, its defaults
// a library user's) and what only the daemon has. Each setting exists once; datapumpd hands the
// base to the server as it is (server()), so no field is copied by hand. Rates are bytes per
// second, 0 meaning "none" (capacity: no admission limit; default_rate: unpaced; max_rate: no cap).
//
//     http::server_config  <── daemon_config: + grace_ms, access_log_path, log_level, log_file,
//        (the server's)                         insecure_writable, config_file
//
// The option table (options.cpp) maps every flag and TOML key onto these members.
struct daemon_config : http::server_config {
    // The defaults of docs/daemon.md: server_config's, but where datapumpd's differ from a
    // library user's (the one place that says so): loops (one per core, not 1), the admin
    // listener (tcp 127.0.0.1:8081, not off), follow_uploads (auto, not public), direct_min_size
    // (1 MiB, not 0).
    daemon_config();

    std::uint32_t grace_ms = 5000;
    // logs: where access lines go while access_log is on: a file path or "stderr" (--access-log
    // PATH|stderr|off sets both: off clears access_log; see access_log_target).
    std::string access_log_path = "stderr";
    std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
    std::string log_file = "stderr";  // a file path or "stderr"
    // hostile network: uploads
    bool insecure_writable = false;  // allow --writable without a token on a non-loopback address
    std::string config_file;         // the --config file read, empty when none

    // The server's part, to start or reconfigure the server with (a base reference: copying it is
    // meant, not a slice by accident).
    [[nodiscard]] const http::server_config& server() const { return *this; }

    // std::thread::hardware_concurrency(), at least 1 and at most 256 (the --loops limit).
    [[nodiscard]] static unsigned default_loops();
};

// --access-log's value: access_log_path while the access log is on, else "off".
[[nodiscard]] std::string access_log_target(const daemon_config& config);

// What parse_config decided. Exactly one of:
//   run:   `config` holds the validated settings; exit_code is 0 and message empty.
//   stop:  `config` is empty; print `message` and exit with `exit_code`: 0 for --help,
//          --version, --print-config-template, --print-flag-table and a --check-config that
//          passed (message to stdout), 2 for a bad flag, file or value (message to stderr; with
//          --check-config too).
//          Problems in the TOML file start with FILE:LINE:COLUMN.
struct parse_outcome {
    std::optional<daemon_config> config;
    int exit_code = 0;
    std::string message;

    [[nodiscard]] bool run() const { return config.has_value(); }
};

// Parses `datapumpd [options]` (argv[0] is the program name). Loads the TOML file named by
// `--config` first, then applies only the flags given, then validates (validate_config).
// Returns the outcome above; never throws. Errors name each bad flag or key (all of them for
// validation, one per line) and end with a hint to run --help.
[[nodiscard]] parse_outcome parse_config(int argc, const char* const* argv);

// Checks a whole configuration: root exists and is a directory, loops 1..256, provider known,
// buffer_kib a multiple of 4 in 4..16384, cache_mib holds at least 16 buffers, max_rate not below
// default_rate, rt_vps 0..256, rt_max_density in (0, 1], non-zero limits and timeouts, a known
// log level. Returns an empty string when the
// configuration is usable, else one line per problem naming the option and what to do.
[[nodiscard]] std::string validate_config(const daemon_config& config);

// The usage text of --help (stdout of `datapumpd --help`).
[[nodiscard]] std::string usage_text();

// conf: config checking and reload.
// `--print-config-template`: a TOML file with every key of the option table commented out
// ("#key = default"), each under its help line, from the same table as --help (so they cannot
// drift). Uncommented, it parses back to the defaults. `--check-config` is parse_config's: it
// stops with exit 0 and "datapumpd: configuration ok" on stdout, or exit 2 and the problems.
[[nodiscard]] std::string config_template();
// The flag table of docs/daemon.md ("Running it"), Markdown, from the same table as --help:
// `datapumpd --print-flag-table` prints it, and a test compares it with the docs.
[[nodiscard]] std::string flag_table();
// The option table's keys (the TOML keys), in --help order.
[[nodiscard]] std::vector<std::string_view> option_keys();
// `key`'s value in `config` as --help shows it (a token as "(set)" or "none"); empty for a key
// that is not in the table.
[[nodiscard]] std::string show_option(const daemon_config& config, std::string_view key);

// hostile network: uploads.
// True for an address only this machine reaches: 127.0.0.0/8, ::1 (and ::ffff:127.x.y.z), or a
// unix socket path ("unix:..." or "/...").
[[nodiscard]] bool is_loopback_host(std::string_view host);
// The warning datapumpd logs at every start when a configuration lets anyone who reaches a
// non-loopback address upload and delete (--writable --insecure-writable, no token); empty when
// it does not.
[[nodiscard]] std::string exposure_warning(const daemon_config& config);

}  // namespace datapump::daemon
