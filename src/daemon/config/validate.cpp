// validate_config: the checks that need several options at once, or the file system.
#include "config/config.hpp"

#include "datapump/http/proto/cache_rules.hpp"
#include "datapump/http/proto/cors.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <optional>
#include <vector>

namespace datapump::daemon {
namespace {

constexpr unsigned max_loops = 256;
constexpr std::uint32_t min_buffer_kib = 4;
constexpr std::uint32_t max_buffer_kib = 16384;
constexpr std::uint64_t min_buffers = 16;

constexpr std::array<std::string_view, 7> log_levels{"trace", "debug", "info", "warn", "error", "critical", "off"};

using problem = std::optional<std::string>;

problem check_root(const std::string& root) {
    std::error_code ec;
    const auto status = std::filesystem::status(root, ec);
    if (status.type() == std::filesystem::file_type::not_found) {
        return "--root (root): '" + root + "' does not exist; give the folder to serve";
    }
    if (ec) {
        return "--root (root): cannot look at '" + root + "': " + ec.message();
    }
    if (status.type() != std::filesystem::file_type::directory) {
        return "--root (root): '" + root + "' is not a directory; give the folder to serve";
    }
    return std::nullopt;
}

problem check_listen(const daemon_config& c) {
    if (c.listen_host.empty() || c.listen_port == 0) {
        return "--listen (listen): give HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:8080";
    }
    return std::nullopt;
}

problem check_loops(const daemon_config& c) {
    if (c.loops < 1 || c.loops > max_loops) {
        return "--loops (loops): " + std::to_string(c.loops) + " is out of range; give 1 to 256";
    }
    return std::nullopt;
}

problem check_provider(const daemon_config& c) {
    if (c.provider != "posix" && c.provider != "direct") {
        return "--provider (provider): unknown provider '" + c.provider + "'; use posix or direct";
    }
    return std::nullopt;
}

problem check_arena(const daemon_config& c) {
    if (c.buffer_kib < min_buffer_kib || c.buffer_kib > max_buffer_kib || c.buffer_kib % 4 != 0) {
        return "--buffer-kib (buffer_kib): " + std::to_string(c.buffer_kib) +
               " is not usable; give a multiple of 4 from 4 to 16384 (e.g. 256)";
    }
    if (c.cache_mib < 1) {
        return "--cache-mib (cache_mib): the arena needs at least 1 MiB";
    }
    const std::uint64_t buffers = std::uint64_t{c.cache_mib} * 1024 / c.buffer_kib;
    if (buffers < min_buffers) {
        const std::uint64_t needed_mib = (min_buffers * c.buffer_kib + 1023) / 1024;
        return "--cache-mib (cache_mib): " + std::to_string(c.cache_mib) + " MiB holds " + std::to_string(buffers) +
               " buffers of " + std::to_string(c.buffer_kib) + " KiB, and at least 16 are needed; raise it to " +
               std::to_string(needed_mib) + " or lower --buffer-kib";
    }
    return std::nullopt;
}

problem check_uploads(const daemon_config& c) {
    if (c.upload_windows < 1 || c.upload_windows > 64) {
        return "--upload-windows (upload_windows): " + std::to_string(c.upload_windows) +
               " is not usable; give 1 to 64 (e.g. 4)";
    }
    const auto window_ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.durability_window).count();
    if (window_ms < 1 || window_ms > 1000) {
        return "--durability-window-ms (durability_window_ms): " + std::to_string(window_ms) +
               " is not usable; give 1 to 1000 (e.g. 5)";
    }
    if (!c.upload_token.empty()) {
        for (const char ch : c.upload_token) {
            if (ch <= ' ' || ch > '~') {
                return std::string("--upload-token (upload_token): use visible ASCII characters only (no spaces)");
            }
        }
        if (!c.writable) {
            return std::string("--upload-token (upload_token): set, but uploads are off; add --writable");
        }
    }
    return std::nullopt;
}

// hostile network: uploads. Anyone who reaches a non-loopback address could upload and delete:
// refused unless a token guards it, or the operator says so in so many words.
// The first public --listen address that is not loopback, as HOST:PORT; empty when all are.
std::string first_exposed_address(const daemon_config& c) {
    const auto shown = [](const std::string& host, std::uint16_t port) {
        const bool v6 = host.find(':') != std::string::npos;
        return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    };
    if (!is_loopback_host(c.listen_host)) {
        return shown(c.listen_host, c.listen_port);
    }
    for (const auto& more : c.more_listen) {
        if (!is_loopback_host(more.host)) {
            return shown(more.host, more.port);
        }
    }
    return {};
}

problem check_writable_exposure(const daemon_config& c) {
    if (!c.writable || !c.upload_token.empty() || c.insecure_writable) {
        return std::nullopt;
    }
    const std::string where = first_exposed_address(c);
    if (where.empty()) {
        return std::nullopt;
    }
    return "--writable (writable): " + where +
           " is not a loopback address, and without a token anyone who reaches it could upload and delete "
           "files; set --upload-token TOKEN (upload_token), or pass --insecure-writable (insecure_writable) to "
           "accept anonymous writes from the network";
}

problem check_upload_bounds(const daemon_config& c) {
    // An unknown follow_uploads value is refused as it is read (options.cpp), with this check's
    // wording.
    if (c.follow_uploads == http::follow_policy::token && c.upload_token.empty()) {
        return std::string("--follow-uploads (follow_uploads): token, but no --upload-token is set; set one, or use "
                           "public or off");
    }
    if (c.upload_min_rate != 0 && (c.upload_rate_window_ms < 100 || c.upload_rate_window_ms > 3600000)) {
        return "--upload-rate-window-ms (upload_rate_window_ms): " + std::to_string(c.upload_rate_window_ms) +
               " is not usable; give 100 to 3600000 (e.g. 10000)";
    }
    if (c.upload_min_rate > 100'000'000'000ULL) {
        return "--upload-min-rate (upload_min_rate): " + std::to_string(c.upload_min_rate) +
               " B/s is more than any network carries; give at most 100G (e.g. 4096)";
    }
    if (c.writable && c.max_uploads != 0 && c.buffer_kib != 0) {
        // Each upload pins up to upload_windows + 1 arena buffers while it runs.
        const std::uint64_t buffers = std::uint64_t{c.cache_mib} * 1024 / c.buffer_kib;
        const std::uint64_t pinned = std::uint64_t{c.max_uploads} * (c.upload_windows + 1);
        if (pinned > buffers) {
            return "--max-uploads (max_uploads): " + std::to_string(c.max_uploads) + " uploads of " +
                   std::to_string(c.upload_windows + 1) + " buffers each need " + std::to_string(pinned) +
                   " arena buffers, and the arena has " + std::to_string(buffers) +
                   "; lower it (0: half the arena), lower --upload-windows or raise --cache-mib";
        }
    }
    return std::nullopt;
}

problem check_open_file_cache(const daemon_config& c) {
    if (c.open_file_cache > 1'000'000) {
        return "--open-file-cache (open_file_cache): " + std::to_string(c.open_file_cache) +
               " files is out of range; give 0 (none) to 1000000";
    }
    if (c.open_file_cache_valid_ms < 1 || c.open_file_cache_valid_ms > 86'400'000) {
        return "--open-file-cache-valid-ms (open_file_cache_valid_ms): " + std::to_string(c.open_file_cache_valid_ms) +
               " is out of range; give 1 to 86400000 (a day)";
    }
    return std::nullopt;
}

problem check_rates(const daemon_config& c) {
    if (c.default_rate != 0 && c.max_rate != 0 && c.max_rate < c.default_rate) {
        return "--max-rate (max_rate): " + std::to_string(c.max_rate) + " B/s is below --default-rate " +
               std::to_string(c.default_rate) + " B/s; raise --max-rate or lower --default-rate";
    }
    return std::nullopt;
}

problem check_cors(const daemon_config& c) {
    if (auto policy = http::parse_cors_origins(c.cors_origins); !policy) {
        return "--cors-origins (cors_origins): " + policy.error();
    }
    return std::nullopt;
}

problem check_cache_control(const daemon_config& c) {
    if (auto rules = http::parse_cache_rules(c.cache_control); !rules) {
        return "--cache-control (cache_control): " + rules.error();
    }
    return std::nullopt;
}

problem check_rt(const daemon_config& c) {
    if (c.rt_vps > max_loops) {
        return "--rt-vps (rt_vps): " + std::to_string(c.rt_vps) + " is out of range; give 0 (one per CPU) to 256";
    }
    if (!(c.rt_max_density > 0 && c.rt_max_density <= 1)) {
        return "--rt-max-density (rt_max_density): " + std::to_string(c.rt_max_density) +
               " is not usable; give a fraction above 0 and at most 1 (e.g. 0.9)";
    }
    return std::nullopt;
}

problem check_nonzero(std::uint64_t value, std::string_view what) {
    if (value == 0) {
        return std::string(what) + ": 0 is not usable; give a positive value";
    }
    return std::nullopt;
}

problem check_request_line(const daemon_config& c) {
    if (c.max_request_line > c.max_header_bytes) {
        return "--max-request-line (max_request_line): " + std::to_string(c.max_request_line) +
               " is larger than --max-header-bytes " + std::to_string(c.max_header_bytes) +
               " (the request line is part of the head); lower it or raise --max-header-bytes";
    }
    return std::nullopt;
}

problem check_log_level(const daemon_config& c) {
    if (std::find(log_levels.begin(), log_levels.end(), c.log_level) == log_levels.end()) {
        return "--log-level (log_level): unknown level '" + c.log_level +
               "'; use trace, debug, info, warn, error, critical or off";
    }
    return std::nullopt;
}

// logs: the daemon log needs somewhere to go (the access log may be off).
problem check_log_file(const daemon_config& c) {
    if (c.log_file.empty() || c.log_file == "off") {
        return std::string("--log-file (log_file): give a file path or stderr (the daemon log cannot be off; "
                           "--log-level off silences it)");
    }
    return std::nullopt;
}

// private control plane: no address twice, the admin listener apart from the public ones, the
// admin socket's folder there, a token that fits in a header.
problem check_control_plane(const daemon_config& c) {
    std::vector<http::listen_address> all{{c.listen_host, c.listen_port}};
    all.insert(all.end(), c.more_listen.begin(), c.more_listen.end());
    const bool admin_tcp = c.admin == http::admin_kind::tcp;
    const std::string& admin_host = c.admin_address.host;
    const std::uint16_t admin_port = c.admin_address.port;
    const auto same = [](const http::listen_address& a, const std::string& host, std::uint16_t port) {
        return a.host == host && a.port == port;
    };
    for (std::size_t i = 0; i < all.size(); ++i) {
        for (std::size_t j = i + 1; j < all.size(); ++j) {
            if (same(all[i], all[j].host, all[j].port)) {
                return "--listen (listen): " + all[j].host + ":" + std::to_string(all[j].port) +
                       " is given twice; give each address once";
            }
        }
        if (admin_tcp && admin_port != 0 &&
            (same(all[i], admin_host, admin_port) ||
             (all[i].port == admin_port && (all[i].host == "0.0.0.0" || all[i].host == "::")))) {
            return "--admin-listen (admin_listen): " + admin_host + ":" + std::to_string(admin_port) +
                   " is also a public --listen address; the admin listener needs a port of its own (default 8081)";
        }
    }
    if (c.admin == http::admin_kind::unix_socket) {
        std::error_code ec;
        const auto parent = std::filesystem::path(c.admin_socket).parent_path();
        if (!std::filesystem::is_directory(parent, ec)) {
            return "--admin-listen (admin_listen): the folder of unix:" + c.admin_socket +
                   " does not exist; create it (e.g. /run/datapumpd, mode 0750) or choose another path";
        }
    }
    for (const char ch : c.admin_token) {
        if (ch <= ' ' || ch > '~') {
            return std::string("--admin-token (admin_token): use visible ASCII characters only (no spaces)");
        }
    }
    if (!c.admin_token.empty() && c.admin == http::admin_kind::off) {
        return std::string("--admin-token (admin_token): set, but --admin-listen is off; give an address or drop the token");
    }
    return std::nullopt;
}

}  // namespace

std::string validate_config(const daemon_config& c) {
    // The size follows the checks (std::to_array), so adding one touches only its line.
    const auto found = std::to_array<problem>({
        check_root(c.root),
        check_listen(c),
        check_loops(c),
        check_provider(c),
        check_arena(c),
        check_rates(c),
        check_cors(c),
        check_cache_control(c),
        check_rt(c),
        check_uploads(c),
        check_nonzero(c.max_connections, "--max-connections (max_connections)"),
        check_nonzero(c.idle_timeout_ms, "--idle-timeout-ms (idle_timeout_ms)"),
        check_nonzero(c.header_timeout_ms, "--header-timeout-ms (header_timeout_ms)"),
        check_nonzero(c.max_header_bytes, "--max-header-bytes (max_header_bytes)"),
        check_nonzero(c.max_request_line, "--max-request-line (max_request_line)"),
        check_request_line(c),
        check_log_level(c),
        check_open_file_cache(c),
        // hostile network: uploads
        check_writable_exposure(c),
        check_upload_bounds(c),
        // hostile network: nothing held forever
        check_nonzero(c.send_timeout_ms, "--send-timeout-ms (send_timeout_ms)"),
        check_nonzero(c.max_pause_ms, "--max-pause-ms (max_pause_ms)"),
        // logs
        check_log_file(c),
    });
    std::string out;
    for (const auto& p : found) {
        if (!p) {
            continue;
        }
        if (!out.empty()) {
            out += '\n';
        }
        out += *p;
    }
    if (const problem p = check_control_plane(c)) {  // private control plane
        out += (out.empty() ? "" : "\n") + *p;
    }
    return out;
}

bool is_loopback_host(std::string_view host) {
    if (host.starts_with("unix:") || host.starts_with("/")) {
        return true;  // a unix socket: only processes of this machine, with the path's permissions
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const std::string text(host);
    in_addr v4{};
    if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    in6_addr v6{};
    if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6)) {
            return true;
        }
        return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
    }
    return false;  // a name, or nothing (every address): not known to stay on this machine
}

std::string exposure_warning(const daemon_config& c) {
    const std::string where = first_exposed_address(c);
    if (!c.writable || !c.upload_token.empty() || !c.insecure_writable || where.empty()) {
        return {};
    }
    return "INSECURE: --insecure-writable: anyone who reaches " + where +
           " can upload, replace and delete files under " + c.root +
           " without a token; set --upload-token to guard writes";
}

}  // namespace datapump::daemon
