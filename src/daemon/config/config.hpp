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

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace datapump::daemon {

// How response bodies reach the socket (docs/daemon.md, "Inside"). `auto_` lets the server pick
// from the provider: sendfile for posix, send-zc for direct.
enum class send_path_choice : std::uint8_t { auto_, sendfile, splice, send_zc, send };

// The user's spelling: "auto", "sendfile", "splice", "send-zc", "send". The string is static.
[[nodiscard]] std::string_view to_string(send_path_choice choice);

// Parses the user's spelling (also "send_zc"). Returns nullopt for anything else.
[[nodiscard]] std::optional<send_path_choice> parse_send_path(std::string_view text);

// The daemon's settings. Defaults are those of docs/daemon.md. Rates are bytes per second,
// 0 meaning "none" (capacity: no admission limit; default_rate: unpaced; max_rate: no cap).
struct daemon_config {
    std::string root = ".";
    std::string listen_host = "127.0.0.1";  // IPv6 without brackets ("::1")
    std::uint16_t listen_port = 8080;
    unsigned loops = default_loops();
    std::string provider = "posix";  // "posix" | "direct"
    send_path_choice send_path = send_path_choice::auto_;
    std::uint32_t cache_mib = 256;
    std::uint32_t buffer_kib = 256;
    std::uint64_t capacity = 0;
    std::uint64_t default_rate = 0;
    std::uint64_t max_rate = 0;
    std::uint64_t default_burst = 0;  // 0: auto, a quarter second of the stream's rate (at least 256 KiB)
    unsigned rt_vps = 1;              // the rt scheduler's VPs (paced streams); 0: one per online CPU
    double rt_max_density = 0.9;      // rt admission: the density each VP may be loaded to, (0, 1]
    std::uint32_t max_connections = 10000;
    std::uint32_t idle_timeout_ms = 60000;
    std::uint32_t header_timeout_ms = 10000;
    std::uint32_t max_header_bytes = 16384;
    std::uint32_t max_request_line = 8192;
    bool directory_listing = false;
    std::uint32_t grace_ms = 5000;
    std::string access_log = "stderr";  // a file path, "stderr" or "off"
    bool writable = false;           // uploads (PUT) and DELETE accepted
    std::string upload_token;        // non-empty: they need "Authorization: Bearer TOKEN"
    std::uint64_t max_upload = std::uint64_t{4} << 30;  // bytes (4 GiB); 0: no limit
    std::uint32_t upload_windows = 4;
    bool durability_batch = false;    // "batch": one syncfs for the uploads finishing together
    std::uint32_t durability_window_ms = 5;
    std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
    std::string config_file;         // the --config file read, empty when none
    // private control plane (docs/daemon.md, "Control plane")
    struct address {
        std::string host;  // IPv6 without brackets
        std::uint16_t port = 0;
    };
    std::vector<address> more_listen;      // --listen given again (or a TOML array): after listen_host:listen_port
    std::string admin_host = "127.0.0.1";  // --admin-listen HOST:PORT; empty (and no admin_socket): off
    std::uint16_t admin_port = 8081;       // 0: the kernel picks
    std::string admin_socket;              // --admin-listen unix:PATH (admin_host then empty)
    std::string admin_token;               // non-empty: admin requests need "Authorization: Bearer TOKEN"
    // hostile network: framing and paths
    bool serve_dotfiles = false;     // serve, accept and list names starting with '.'
    // hostile network: uploads (docs/daemon.md "Uploads")
    bool insecure_writable = false;          // allow --writable without a token on a non-loopback address
    std::uint32_t max_uploads = 0;           // at once; 0: auto (half the arena / (upload_windows + 1))
    std::uint32_t max_uploads_per_ip = 4;    // at once from one client address; 0: no cap
    std::uint64_t upload_min_rate = 4096;    // B/s averaged over each window; 0: none
    std::uint32_t upload_rate_window_ms = 10000;
    std::string follow_uploads = "auto";     // auto (token with a token, else public), public, token, off
    // hostile network: nothing held forever (docs/daemon.md, "Limits and timeouts")
    std::uint32_t send_timeout_ms = 60000;  // a response whose client takes no byte this long is cut
    std::uint32_t max_pause_ms = 300000;    // a stream paused longer is cut
    // hostile network: per-client-address limits (docs/daemon.md, "Limits"); 0: none of that kind
    std::uint64_t max_connections_per_ip = 512;
    std::uint64_t max_streams_per_ip = 256;
    std::uint64_t max_rate_per_ip = 0;
    // logs (docs/daemon.md, "Logs")
    std::string access_log_format = "combined";  // combined or json
    std::string log_file = "stderr";              // a file path or "stderr"

    // std::thread::hardware_concurrency(), at least 1 and at most 256 (the --loops limit).
    [[nodiscard]] static unsigned default_loops();
};

// What parse_config decided. Exactly one of:
//   run:   `config` holds the validated settings; exit_code is 0 and message empty.
//   stop:  `config` is empty; print `message` and exit with `exit_code`: 0 for --help,
//          --version, --print-config-template and a --check-config that passed (message to
//          stdout), 2 for a bad flag, file or value (message to stderr; with --check-config too).
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
