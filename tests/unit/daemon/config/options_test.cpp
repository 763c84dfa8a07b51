// The option table cannot drift from what it describes: every setting of the server has exactly one
// row, reloadability is the server's one attribute, and docs/daemon.md's flag table and defaults
// are the table's.
#include "config/options.hpp"

#include "config/reload.hpp"

#include <fstream>
#include <gtest/gtest.h>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifndef DATAPUMP_SOURCE_DIR
#error "DATAPUMP_SOURCE_DIR: the source tree, for docs/daemon.md"
#endif

namespace datapump::daemon {
namespace {

std::vector<std::string> members_of(const detail::option_spec& row) {
    std::vector<std::string> out;
    std::istringstream words{std::string(row.members)};
    for (std::string word; words >> word;) {
        out.push_back(word);
    }
    return out;
}

TEST(option_table, every_server_setting_a_user_can_set_has_exactly_one_row) {
    std::map<std::string, int> rows_per_member;
    std::set<std::string> keys;
    for (const detail::option_spec& row : detail::option_table()) {
        EXPECT_TRUE(keys.insert(std::string(row.key)).second) << "key twice: " << row.key;
        for (const std::string& member : members_of(row)) {
            ++rows_per_member[member];
        }
    }
    std::set<std::string> settable;
    for (const http::setting_rule& rule : http::setting_rules()) {
        EXPECT_TRUE(settable.insert(std::string(rule.member)).second || !rule.user_setting) << rule.member;
        if (rule.user_setting) {
            EXPECT_EQ(rows_per_member[std::string(rule.member)], 1)
                << "server_config::" << rule.member << " needs exactly one row in options.cpp";
        } else {
            EXPECT_EQ(rows_per_member.count(std::string(rule.member)), 0U)
                << "server_config::" << rule.member << " is not a user's setting (settings.cpp)";
        }
        settable.insert(std::string(rule.member));
    }
    for (const auto& [member, count] : rows_per_member) {
        EXPECT_TRUE(settable.contains(member)) << "a row names '" << member << "', which server_config lacks";
    }
}

// The keys a restart needs, as docs/daemon.md ("Reload") lists them: derived from the server's
// rules (and the table's for the daemon's own), not a list of their own.
TEST(option_table, reloadability_is_the_servers_attribute) {
    const std::set<std::string> documented{
        "listen",       "loops",
        "provider",     "send_path",
        "cache_mib",    "buffer_kib",
        "huge_pages",
        "rt_vps",       "rt_max_density",
        "writable",     "upload_windows",
        "durability",   "durability_window_ms",
        "admin_listen", "insecure_writable",
        "max_uploads",  "open_file_cache",
        "open_file_cache_valid_ms", "direct_min_size",
        "mime_types_file",
    };
    std::set<std::string> fixed;
    for (const std::string_view key : option_keys()) {
        if (needs_restart(key)) {
            fixed.insert(std::string(key));
        }
    }
    EXPECT_EQ(fixed, documented);
    EXPECT_EQ(detail::reload_rule_of(*detail::find_option("root")), http::reload_rule::fixed_when_writable);

    // The server keeps exactly what the rules say it keeps.
    http::server_config started;
    started.loops = 2;
    started.default_rate = 1;
    started.root = "/a";
    http::server_config next = started;
    next.loops = 3;
    next.default_rate = 2;
    next.root = "/b";
    http::server_config kept = http::keep_fixed(next, started);
    EXPECT_EQ(kept.loops, 2U);
    EXPECT_EQ(kept.default_rate, 2U);
    EXPECT_EQ(kept.root, "/b");
    started.writable = true;
    next.writable = true;
    kept = http::keep_fixed(next, started);
    EXPECT_EQ(kept.root, "/a");
}

// plan_reload keeps a fixed daemon-only option by giving its shown value again as its flag.
TEST(option_table, fixed_daemon_settings_round_trip_through_their_flag) {
    for (const detail::option_spec& row : detail::option_table()) {
        if (!row.members.empty() || row.own_reload == http::reload_rule::live) {
            continue;
        }
        daemon_config from;
        daemon_config to;
        detail::raw_value on;
        on.from_flag = true;
        on.value = std::string("on");
        ASSERT_FALSE(row.apply(from, on)) << row.key;
        detail::raw_value again;
        again.from_flag = true;
        again.value = row.show(from);
        EXPECT_FALSE(row.apply(to, again)) << row.key;
        EXPECT_EQ(row.show(to), row.show(from)) << row.key;
    }
}

TEST(option_table, the_docs_defaults_are_the_defaults) {
    const daemon_config defaults;
    for (const detail::option_spec& row : detail::option_table()) {
        const std::string shown = row.show(defaults);
        const std::string_view doc = row.doc_default;
        if (doc.starts_with('`')) {
            EXPECT_EQ(doc.substr(1, doc.find('`', 1) - 1), shown) << row.key;
        } else if (row.key == "loops") {
            EXPECT_EQ(doc, "number of cores");
            EXPECT_EQ(defaults.loops, daemon_config::default_loops());
        } else {
            EXPECT_EQ(doc, shown) << row.key;  // off, none
        }
    }
}

// docs/daemon.md's table under "Running it" is `datapumpd --print-flag-table`'s output.
TEST(option_table, the_docs_flag_table_is_the_tables) {
    std::ifstream docs(std::string(DATAPUMP_SOURCE_DIR) + "/docs/daemon.md");
    ASSERT_TRUE(docs) << "cannot read docs/daemon.md";
    std::string in_docs;
    bool inside = false;
    for (std::string line; std::getline(docs, line);) {
        if (line == "| flag | TOML key | default | meaning |") {
            inside = true;
        }
        if (inside && !line.starts_with('|')) {
            break;
        }
        if (inside) {
            in_docs += line + "\n";
        }
    }
    const std::vector<const char*> argv{"datapumpd", "--print-flag-table"};
    const parse_outcome printed = parse_config(static_cast<int>(argv.size()), argv.data());
    EXPECT_EQ(printed.exit_code, 0);
    EXPECT_EQ(printed.message, flag_table());
    EXPECT_EQ(in_docs, flag_table())
        << "docs/daemon.md's flag table differs from the option table (src/daemon/config/options.cpp): "
           "change the row, then paste `datapumpd --print-flag-table` into the docs";
}

}  // namespace
}  // namespace datapump::daemon
