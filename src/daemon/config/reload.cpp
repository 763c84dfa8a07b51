#include "config/reload.hpp"

#include "config/options.hpp"

#include <utility>

namespace datapump::daemon {
namespace {

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

// Whether `running` keeps its value of `row` through a reload.
bool kept(const detail::option_spec& row, const daemon_config& running) {
    const http::reload_rule rule = detail::reload_rule_of(row);
    return rule == http::reload_rule::fixed || (rule == http::reload_rule::fixed_when_writable && running.writable);
}

}  // namespace

bool needs_restart(std::string_view key) {
    const detail::option_spec* row = detail::find_option(key);
    return row != nullptr && detail::reload_rule_of(*row) == http::reload_rule::fixed;
}

std::expected<reload_plan, std::string> plan_reload(const daemon_config& running, const daemon_config& next) {
    reload_plan plan;
    plan.next = next;
    // The server's settings: its own rules keep what it made at start (setting_rules()).
    static_cast<http::server_config&>(plan.next) = http::keep_fixed(next.server(), running.server());
    for (const detail::option_spec& row : detail::option_table()) {
        const bool keep = kept(row, running);
        if (keep && row.members.empty()) {
            // The daemon's own settings that need a restart: the running value, given again (a
            // fixed daemon-only option shows as the text its flag takes; a test checks it).
            detail::raw_value again;
            again.from_flag = true;
            again.value = row.show(running);
            (void)row.apply(plan.next, again);
        }
        if (!differs(running, next, row.key)) {
            continue;
        }
        const std::string was = show_option(running, row.key);
        const std::string now = show_option(next, row.key);
        std::string line(row.key);
        if (keep) {
            line.append(": ").append(now).append(" (running: ").append(was).append(")");
            plan.needs_restart.push_back(std::move(line));
        } else {
            line.append(": ").append(was).append(" -> ").append(now);
            plan.changed.push_back(std::move(line));
        }
    }
    if (std::string invalid = validate_config(plan.next); !invalid.empty()) {
        return std::unexpected(std::move(invalid));
    }
    return plan;
}

std::expected<reload_plan, std::string> reload_config(int argc, const char* const* argv, const daemon_config& running) {
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
