#include "config/reload.hpp"

#include <algorithm>
#include <array>
#include <utility>

namespace datapump::daemon {
namespace {

// root: only while writable (restart_needed).
constexpr auto restart_keys = std::to_array<std::string_view>({
    "listen", "loops", "provider", "send_path", "cache_mib", "buffer_kib", "rt_vps", "rt_max_density",
    "writable", "upload_windows", "durability", "durability_window_ms", "admin_listen", "insecure_writable",
    "max_uploads",
});

// The fields behind restart_keys, from `running` into `next`.
void keep_restart_settings(daemon_config& next, const daemon_config& running) {
    if (running.writable) {
        next.root = running.root;
    }
    next.listen_host = running.listen_host;
    next.listen_port = running.listen_port;
    next.more_listen = running.more_listen;
    next.loops = running.loops;
    next.provider = running.provider;
    next.send_path = running.send_path;
    next.cache_mib = running.cache_mib;
    next.buffer_kib = running.buffer_kib;
    next.rt_vps = running.rt_vps;
    next.rt_max_density = running.rt_max_density;
    next.writable = running.writable;
    next.insecure_writable = running.insecure_writable;
    next.upload_windows = running.upload_windows;
    next.max_uploads = running.max_uploads;
    next.durability_batch = running.durability_batch;
    next.durability_window_ms = running.durability_window_ms;
    next.admin_host = running.admin_host;
    next.admin_port = running.admin_port;
    next.admin_socket = running.admin_socket;
}

// --help hides tokens ("(set)"): compare those by value.
bool differs(const daemon_config& a, const daemon_config& b, std::string_view key) {
    if (key == "upload_token") {
        return a.upload_token != b.upload_token;
    }
    if (key == "admin_token") {
        return a.admin_token != b.admin_token;
    }
    return show_option(a, key) != show_option(b, key);
}

}  // namespace

bool needs_restart(std::string_view key) {
    return std::find(restart_keys.begin(), restart_keys.end(), key) != restart_keys.end();
}

std::expected<reload_plan, std::string> plan_reload(const daemon_config& running, const daemon_config& next) {
    reload_plan plan;
    for (const std::string_view key : option_keys()) {
        if (!differs(running, next, key)) {
            continue;
        }
        const std::string was = show_option(running, key);
        const std::string now = show_option(next, key);
        if (needs_restart(key) || (key == "root" && running.writable)) {
            std::string line(key);
            line.append(": ").append(now).append(" (running: ").append(was).append(")");
            plan.needs_restart.push_back(std::move(line));
        } else {
            std::string line(key);
            line.append(": ").append(was).append(" -> ").append(now);
            plan.changed.push_back(std::move(line));
        }
    }
    plan.next = next;
    keep_restart_settings(plan.next, running);
    if (std::string invalid = validate_config(plan.next); !invalid.empty()) {
        return std::unexpected(std::move(invalid));
    }
    return plan;
}

std::expected<reload_plan, std::string> reload_config(int argc, const char* const* argv,
                                                      const daemon_config& running) {
    parse_outcome parsed = parse_config(argc, argv);
    if (!parsed.config) {
        std::string message = std::move(parsed.message);
        if (const std::size_t hint = message.rfind("\nRun 'datapumpd --help'"); hint != std::string::npos) {
            message.erase(hint);
        }
        if (message.starts_with("datapumpd: ")) {
            message.erase(0, 11);
        }
        return std::unexpected(std::move(message));
    }
    return plan_reload(running, *parsed.config);
}

}  // namespace datapump::daemon
