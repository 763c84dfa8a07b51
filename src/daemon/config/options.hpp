// File: config/options.hpp (target datapump_daemon_config, internal)
//
// conf: the option table, one row per setting of datapumpd. Everything the user sees of a
// setting comes from its row, so nothing is written twice:
//
//     option_table() ──> CLI11 flags and --help          (config.cpp, build_app)
//                    ──> TOML keys, "did you mean"       (config.cpp, apply_toml)
//                    ──> --print-config-template         (config.cpp, config_template)
//                    ──> docs/daemon.md's flag table     (config.cpp, flag_table; a test diffs it)
//                    ──> show_option, option_keys        (config.cpp)
//                    ──> the reload plan                 (reload.cpp, by reload_rule_of)
//
// A row sets members of daemon_config: those of http::server_config it names in `members`
// (each settable member of the server by exactly one row: a test checks it against
// http::setting_rules()), or the daemon's own. Whether a reload may change a server setting is
// the server's attribute (http::setting_rules()); a row repeats it nowhere.
//
// Not part of the config API: visible only to the config sources and their tests. The table is
// static and immutable; any thread.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace datapump::daemon::detail {

// One option value before conversion: text from a flag, or a typed TOML value.
struct raw_value {
    std::string origin;  // "--loops", or "FILE:LINE:COLUMN: key 'loops'"
    std::string place;   // "FILE:LINE:COLUMN" of a TOML value; empty for a flag
    bool from_flag = false;
    std::variant<std::monostate, std::string, std::int64_t, double, bool> value;
    std::string_view type_name;  // the TOML type, "a string", for mismatch messages
    // private control plane: the texts of a repeated flag (--listen) or of a TOML array of strings.
    std::vector<std::string> texts;
};

using problem = std::optional<std::string>;  // a message for the user, or nothing wrong

struct option_spec {
    std::string_view key;         // the TOML key; the flag is "--" + key with '-' for '_'
    std::string_view value_name;  // empty: a switch without a value (--directory-listing)
    // The http::server_config members the option sets, space-separated; empty: a setting of the
    // daemon alone, whose reload rule is own_reload.
    std::string_view members;
    http::reload_rule own_reload = http::reload_rule::live;
    std::string_view help;         // --help (then "[default: ...]") and the template's comment
    std::string_view doc_default;  // docs/daemon.md's "default" column (Markdown)
    std::string_view doc;          // docs/daemon.md's "meaning" column (Markdown)
    problem (*apply)(daemon_config&, const raw_value&);
    std::string (*show)(const daemon_config&);  // the value, as --help prints the default
};

// The flags that are modes, not settings (--check-config, --print-config-template): rows of the
// docs' table too, with no key.
struct mode_spec {
    std::string_view flag;
    std::string_view help;
    std::string_view doc;
};

// Every option, in --help order.
[[nodiscard]] std::span<const option_spec> option_table();
[[nodiscard]] std::span<const mode_spec> mode_table();
// The row of `key`; null for a key that is not in the table.
[[nodiscard]] const option_spec* find_option(std::string_view key);
// "--" + key with '-' for '_'.
[[nodiscard]] std::string flag_name(std::string_view key);
// What a reload does with the option: for a server setting the strictest rule of its members
// (http::setting_rules()), for the daemon's own its own_reload.
[[nodiscard]] http::reload_rule reload_rule_of(const option_spec& row);

}  // namespace datapump::daemon::detail
