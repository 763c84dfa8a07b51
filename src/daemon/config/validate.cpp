// validate_config: the checks that need several options at once, or the file system.
#include "config/config.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <optional>

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
    if (c.durability_window_ms < 1 || c.durability_window_ms > 1000) {
        return "--durability-window-ms (durability_window_ms): " + std::to_string(c.durability_window_ms) +
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

problem check_rates(const daemon_config& c) {
    if (c.default_rate != 0 && c.max_rate != 0 && c.max_rate < c.default_rate) {
        return "--max-rate (max_rate): " + std::to_string(c.max_rate) + " B/s is below --default-rate " +
               std::to_string(c.default_rate) + " B/s; raise --max-rate or lower --default-rate";
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

}  // namespace

std::string validate_config(const daemon_config& c) {
    const std::array<problem, 17> found{
        check_root(c.root),
        check_listen(c),
        check_loops(c),
        check_provider(c),
        check_arena(c),
        check_rates(c),
        check_rt(c),
        check_uploads(c),
        check_nonzero(c.max_connections, "--max-connections (max_connections)"),
        check_nonzero(c.idle_timeout_ms, "--idle-timeout-ms (idle_timeout_ms)"),
        check_nonzero(c.header_timeout_ms, "--header-timeout-ms (header_timeout_ms)"),
        check_nonzero(c.max_header_bytes, "--max-header-bytes (max_header_bytes)"),
        check_nonzero(c.max_request_line, "--max-request-line (max_request_line)"),
        check_request_line(c),
        check_log_level(c),
        // hostile network: nothing held forever
        check_nonzero(c.send_timeout_ms, "--send-timeout-ms (send_timeout_ms)"),
        check_nonzero(c.max_pause_ms, "--max-pause-ms (max_pause_ms)"),
    };
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
    return out;
}

}  // namespace datapump::daemon
