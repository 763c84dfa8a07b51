// conf: --check-config, --print-config-template, FILE:LINE:COLUMN in the file's errors, the
// reload plan (what SIGHUP applies, keeps and refuses) and the server part of daemon_config.
#include "config/config.hpp"
#include "config/reload.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <regex>
#include <string>
#include <vector>

namespace datapump::daemon {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

class reload_test : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "datapumpd-reload-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
        file_ = (fs::path(dir_) / "d.toml").string();
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    void write(const std::string& text) const { std::ofstream(file_) << text; }

    static std::vector<std::string> argv_of(std::initializer_list<std::string> args) {
        std::vector<std::string> storage{"datapumpd"};
        storage.insert(storage.end(), args.begin(), args.end());
        return storage;
    }
    static parse_outcome parse(const std::vector<std::string>& storage) {
        std::vector<const char*> argv;
        argv.reserve(storage.size());
        for (const auto& a : storage) {
            argv.push_back(a.c_str());
        }
        return parse_config(static_cast<int>(argv.size()), argv.data());
    }
    // The configuration parsed, or the defaults after a failure (ASSERTs before it say which).
    static daemon_config config_of(const parse_outcome& out) {
        if (!out.config) {
            ADD_FAILURE() << "expected a configuration, got: " << out.message;
            return daemon_config{};
        }
        return *out.config;
    }
    static std::expected<reload_plan, std::string> reload(const std::vector<std::string>& storage,
                                                          const daemon_config& running) {
        std::vector<const char*> argv;
        argv.reserve(storage.size());
        for (const auto& a : storage) {
            argv.push_back(a.c_str());
        }
        return reload_config(static_cast<int>(argv.size()), argv.data(), running);
    }

    std::string dir_;
    std::string file_;
};

TEST_F(reload_test, template_has_every_key_commented_and_parses_back_to_the_defaults) {
    const parse_outcome printed = parse(argv_of({"--print-config-template"}));
    ASSERT_FALSE(printed.run());
    EXPECT_EQ(printed.exit_code, 0);
    const std::string& text = printed.message;
    EXPECT_EQ(text, config_template());
    // Every key of the table, commented out, under a help line; nothing active.
    for (const std::string_view key : option_keys()) {
        EXPECT_TRUE(contains(text, "\n#" + std::string(key) + " = ")) << key;
    }
    EXPECT_TRUE(contains(text, "# the served folder; nothing outside it is reachable\n#root = ")) << text;
    EXPECT_FALSE(std::regex_search(text, std::regex("(^|\n)[a-z_]+ =")));
    // Commented out, it is an empty configuration; uncommented, the defaults, key for key.
    write(text);
    ASSERT_TRUE(parse(argv_of({"--config", file_})).run()) << parse(argv_of({"--config", file_})).message;
    write(std::regex_replace(text, std::regex("(^|\n)#([a-z_]+ = )"), "$1$2"));
    const parse_outcome back = parse(argv_of({"--config", file_}));
    ASSERT_TRUE(back.config.has_value()) << back.message;
    const daemon_config defaults;
    for (const std::string_view key : option_keys()) {
        EXPECT_EQ(show_option(config_of(back), key), show_option(defaults, key)) << key;
    }
    EXPECT_EQ(config_of(back).upload_token, "");
    EXPECT_EQ(config_of(back).admin_token, "");
}

TEST_F(reload_test, check_config_says_ok_or_gives_every_problem_with_its_place) {
    write("loops = 2\ndefault_rate = '5M'\n");
    parse_outcome out = parse(argv_of({"--config", file_, "--check-config"}));
    EXPECT_FALSE(out.run());  // it never runs the daemon
    EXPECT_EQ(out.exit_code, 0);
    EXPECT_EQ(out.message, "datapumpd: configuration ok (" + file_ + ")\n");

    write("# a comment\nloops = 'two'\nlopps = 3\n  capacity = 1.5\n");
    out = parse(argv_of({"--config", file_, "--check-config"}));
    EXPECT_FALSE(out.run());
    EXPECT_EQ(out.exit_code, 2);
    // In the file's order, each at its value (or its key, when the key is unknown).
    const std::string expected_loops = file_ + ":2:9: key 'loops': expected an integer, got a string";
    const std::string expected_lopps = file_ + ":3:1: unknown key 'lopps': did you mean 'loops'?";
    const std::string expected_capacity = file_ + ":4:14: key 'capacity': expected an integer";
    EXPECT_TRUE(contains(out.message, expected_loops)) << out.message;
    EXPECT_TRUE(contains(out.message, expected_lopps)) << out.message;
    EXPECT_TRUE(contains(out.message, expected_capacity)) << out.message;
    EXPECT_LT(out.message.find(expected_loops), out.message.find(expected_lopps));
    EXPECT_LT(out.message.find(expected_lopps), out.message.find(expected_capacity));
    EXPECT_TRUE(contains(out.message, "configuration refused")) << out.message;

    write("loops = 2\nroot = \n");
    out = parse(argv_of({"--config", file_, "--check-config"}));
    EXPECT_EQ(out.exit_code, 2);
    EXPECT_TRUE(contains(out.message, file_ + ":2:")) << out.message;
    EXPECT_TRUE(contains(out.message, "not valid TOML")) << out.message;

    // Validation of the whole, and the flags given over the file.
    write("max_rate = '1M'\ndefault_rate = '2M'\n");
    out = parse(argv_of({"--config", file_, "--check-config"}));
    EXPECT_EQ(out.exit_code, 2);
    EXPECT_TRUE(contains(out.message, "--max-rate (max_rate)")) << out.message;
    out = parse(argv_of({"--config", file_, "--max-rate", "3M", "--check-config"}));
    EXPECT_EQ(out.exit_code, 0) << out.message;

    // A value of the right type but out of bounds: validation's message, at the key's value.
    write("# range\nloops = 300\nbuffer_kib = 5\n");
    out = parse(argv_of({"--config", file_, "--check-config"}));
    EXPECT_EQ(out.exit_code, 2);
    EXPECT_TRUE(contains(out.message, file_ + ":2:9: --loops (loops): 300 is out of range")) << out.message;
    EXPECT_TRUE(contains(out.message, file_ + ":3:14: --buffer-kib (buffer_kib): 5 is not usable")) << out.message;
    // Given as a flag, the value is the flag's: no place in the file.
    out = parse(argv_of({"--config", file_, "--loops", "999", "--buffer-kib", "8", "--check-config"}));
    EXPECT_TRUE(contains(out.message, "datapumpd: --loops (loops): 999 is out of range")) << out.message;
}

TEST_F(reload_test, plan_applies_live_settings_and_keeps_those_that_need_a_restart) {
    write("default_rate = '1M'\nupload_token = 'old'\nwritable = true\nloops = 2\n");
    const auto args = argv_of({"--config", file_, "--root", dir_});
    const parse_outcome first = parse(args);
    ASSERT_TRUE(first.config.has_value()) << first.message;
    const daemon_config running = config_of(first);

    write("default_rate = '2M'\nupload_token = 'new'\nwritable = true\nloops = 3\nlisten = '127.0.0.1:9999'\n");
    auto plan = reload(args, running);
    ASSERT_TRUE(plan.has_value()) << plan.error();
    EXPECT_EQ(plan->next.default_rate, 2000000U);
    EXPECT_EQ(plan->next.upload_token, "new");
    EXPECT_EQ(plan->next.loops, 2U);  // kept
    EXPECT_EQ(plan->next.listen_port, 8080);
    EXPECT_EQ(plan->next.root, dir_);  // the flag still wins over the file
    ASSERT_EQ(plan->changed.size(), 2U);
    EXPECT_EQ(plan->changed[0], "default_rate: 1000000 -> 2000000");
    EXPECT_EQ(plan->changed[1], "upload_token: (set) -> (set)");  // tokens never in the log
    ASSERT_EQ(plan->needs_restart.size(), 2U);
    EXPECT_EQ(plan->needs_restart[0], "listen: 127.0.0.1:9999 (running: 127.0.0.1:8080)");
    EXPECT_EQ(plan->needs_restart[1], "loops: 3 (running: 2)");
    EXPECT_TRUE(needs_restart("loops"));
    EXPECT_FALSE(needs_restart("root"));  // but while writable (below)
    EXPECT_FALSE(needs_restart("max_rate"));
}

TEST_F(reload_test, the_root_changes_live_unless_the_daemon_is_writable) {
    const fs::path other = fs::path(dir_) / "other";
    fs::create_directory(other);
    daemon_config running;
    running.root = dir_;
    daemon_config next = running;
    next.root = other.string();
    auto plan = plan_reload(running, next);
    ASSERT_TRUE(plan.has_value()) << plan.error();
    EXPECT_EQ(plan->next.root, other.string());
    ASSERT_EQ(plan->changed.size(), 1U);
    EXPECT_EQ(plan->changed[0], "root: " + dir_ + " -> " + other.string());
    EXPECT_TRUE(plan->needs_restart.empty());

    running.writable = true;
    next.writable = true;
    plan = plan_reload(running, next);
    ASSERT_TRUE(plan.has_value()) << plan.error();
    EXPECT_EQ(plan->next.root, dir_);  // uploads live in the root it started with
    EXPECT_TRUE(plan->changed.empty());
    ASSERT_EQ(plan->needs_restart.size(), 1U);
    EXPECT_EQ(plan->needs_restart[0], "root: " + other.string() + " (running: " + dir_ + ")");
}

TEST_F(reload_test, a_bad_new_file_is_refused_with_its_place) {
    write("default_rate = '1M'\n");
    const auto args = argv_of({"--config", file_});
    const parse_outcome first = parse(args);
    ASSERT_TRUE(first.config.has_value()) << first.message;

    write("default_rate = '1M'\nmax_rate = 'fast'\n");
    auto plan = reload(args, config_of(first));
    ASSERT_FALSE(plan.has_value());
    EXPECT_TRUE(plan.error().starts_with(file_ + ":2:12: key 'max_rate': 'fast' is not a rate")) << plan.error();
    EXPECT_FALSE(contains(plan.error(), "--help")) << plan.error();

    fs::remove(file_);
    plan = reload(args, config_of(first));
    ASSERT_FALSE(plan.has_value());
    EXPECT_TRUE(contains(plan.error(), "cannot read")) << plan.error();
}

TEST_F(reload_test, a_plan_whose_mix_is_invalid_is_refused) {
    // The new file is valid on its own, but with the running upload windows (kept: a restart
    // setting) its max_uploads pins more buffers than the running arena has.
    write("writable = true\nupload_windows = 1\ncache_mib = 16\nbuffer_kib = 256\n");
    const auto args = argv_of({"--config", file_, "--root", dir_});
    const parse_outcome first = parse(args);
    ASSERT_TRUE(first.config.has_value()) << first.message;
    daemon_config next = config_of(first);
    next.upload_windows = 1;
    next.max_uploads = 30;  // 30 * 2 buffers fit 64 ...
    daemon_config running = config_of(first);
    running.upload_windows = 4;
    running.max_uploads = 30;  // ... but the plan keeps max_uploads and upload_windows as running: 150 > 64
    const auto plan = plan_reload(running, next);
    ASSERT_FALSE(plan.has_value());
    EXPECT_TRUE(contains(plan.error(), "--max-uploads")) << plan.error();
}

// What used to be copied field by field (to_server_config) is the server part itself: each kind
// of setting arrives in the server's own type, and "auto" stays auto for the server to resolve.
TEST_F(reload_test, the_server_takes_the_daemons_settings_as_they_are) {
    const auto args = argv_of({"--root", dir_, "--send-path", "send-zc", "--admin-listen", "unix:" + dir_ + "/a.sock",
                               "--writable", "--upload-token", "t", "--durability", "batch",
                               "--durability-window-ms", "7", "--default-rate", "5", "--listen", "127.0.0.1:8080",
                               "--listen", "[::1]:9000", "--access-log", "off", "--access-log-format", "json"});
    const parse_outcome parsed = parse(args);
    ASSERT_TRUE(parsed.config.has_value()) << parsed.message;
    const http::server_config s = config_of(parsed).server();
    EXPECT_EQ(s.path, http::send_path::send_zc);
    EXPECT_EQ(s.admin, http::admin_kind::unix_socket);
    EXPECT_EQ(s.admin_socket, dir_ + "/a.sock");
    EXPECT_EQ(s.follow_uploads, http::follow_policy::automatic);  // the server: token, as one is set
    EXPECT_EQ(s.durability, ingest::durability::batched);
    EXPECT_EQ(s.durability_window, std::chrono::milliseconds(7));
    EXPECT_EQ(s.default_rate, 5U);
    EXPECT_FALSE(s.access_log);
    EXPECT_EQ(s.access_format, http::access_log_format::json);
    ASSERT_EQ(s.more_listen.size(), 1U);
    EXPECT_EQ(s.more_listen[0].host, "::1");
    EXPECT_EQ(s.more_listen[0].port, 9000);
    const daemon_config defaults;
    EXPECT_EQ(defaults.server().admin, http::admin_kind::tcp);
    EXPECT_EQ(defaults.server().admin_address.port, 8081);
    // A library user's defaults stay theirs; the daemon's differ only where daemon_config says.
    const http::server_config library;
    EXPECT_EQ(library.admin, http::admin_kind::off);
    EXPECT_EQ(library.loops, 1U);
    EXPECT_EQ(library.follow_uploads, http::follow_policy::public_);
}

}  // namespace
}  // namespace datapump::daemon
