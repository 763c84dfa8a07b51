// The options as a user meets them: flags, TOML keys, defaults, the messages of bad values, --help.
#include "config/config.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

namespace datapump::daemon {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

// A temporary folder (the served root) and a place for TOML files; removed at the end.
class config_test : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "datapumpd-config-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    std::string write_toml(const std::string& text) {
        std::string path = (fs::path(dir_) / "datapumpd.toml").string();
        std::ofstream(path) << text;
        return path;
    }

    static parse_outcome parse(std::initializer_list<std::string> args) {
        std::vector<std::string> storage{"datapumpd"};
        storage.insert(storage.end(), args.begin(), args.end());
        std::vector<const char*> argv;
        argv.reserve(storage.size());
        for (const auto& a : storage) {
            argv.push_back(a.c_str());
        }
        return parse_config(static_cast<int>(argv.size()), argv.data());
    }

    // Parses, expecting a configuration to run with; returns it (the defaults after a failure).
    static daemon_config parse_ok(std::initializer_list<std::string> args) {
        const auto out = parse(args);
        if (!out.config) {
            ADD_FAILURE() << "expected a configuration, got: " << out.message;
            return daemon_config{};
        }
        EXPECT_EQ(out.exit_code, 0);
        EXPECT_TRUE(out.message.empty());
        return *out.config;
    }

    // Parses, expecting an error; returns its message.
    static std::string error_of(std::initializer_list<std::string> args) {
        const auto out = parse(args);
        EXPECT_FALSE(out.run());
        EXPECT_EQ(out.exit_code, 2);
        return out.message;
    }

    std::string dir_;
};

TEST_F(config_test, defaults_match_the_documentation) {
    const daemon_config c = parse_ok({});
    EXPECT_EQ(c.root, ".");
    EXPECT_EQ(c.listen_host, "127.0.0.1");
    EXPECT_EQ(c.listen_port, 8080);
    EXPECT_EQ(c.loops, std::max(1U, std::min(256U, std::thread::hardware_concurrency())));
    EXPECT_GE(c.loops, 1U);
    EXPECT_EQ(c.provider, "posix");
    EXPECT_EQ(c.path, http::send_path::automatic);
    EXPECT_EQ(c.cache_mib, 256U);
    EXPECT_EQ(c.buffer_kib, 256U);
    EXPECT_EQ(c.capacity, 0U);
    EXPECT_EQ(c.default_rate, 0U);
    EXPECT_EQ(c.max_rate, 0U);
    EXPECT_EQ(c.default_burst, 0U);  // auto
    EXPECT_EQ(c.rt_vps, 1U);
    EXPECT_DOUBLE_EQ(c.rt_max_density, 0.9);
    EXPECT_EQ(c.max_connections, 10000U);
    EXPECT_EQ(c.idle_timeout_ms, 60000U);
    EXPECT_EQ(c.header_timeout_ms, 10000U);
    EXPECT_EQ(c.max_header_bytes, 16384U);
    EXPECT_EQ(c.max_request_line, 8192U);
    EXPECT_FALSE(c.directory_listing);
    EXPECT_EQ(c.grace_ms, 5000U);
    EXPECT_EQ(access_log_target(c), "stderr");
    EXPECT_EQ(c.log_level, "info");
    EXPECT_EQ(c.access_format, http::access_log_format::combined);
    EXPECT_EQ(c.log_file, "stderr");
    EXPECT_EQ(c.config_file, "");
    EXPECT_FALSE(c.writable);
    EXPECT_EQ(c.upload_token, "");
    EXPECT_EQ(c.max_upload, std::uint64_t{4} << 30);  // 4 GiB
    EXPECT_EQ(c.upload_windows, 4U);
    EXPECT_EQ(c.durability, ingest::durability::per_upload);
    EXPECT_EQ(c.durability_window, std::chrono::milliseconds(5));
    // private control plane
    EXPECT_TRUE(c.more_listen.empty());
    EXPECT_EQ(c.admin, http::admin_kind::tcp);
    EXPECT_EQ(c.admin_address.host, "127.0.0.1");
    EXPECT_EQ(c.admin_address.port, 8081);
    EXPECT_EQ(c.admin_socket, "");
    EXPECT_EQ(c.admin_token, "");
    // hostile network: uploads
    EXPECT_FALSE(c.insecure_writable);
    EXPECT_EQ(c.max_uploads, 0U);  // auto
    EXPECT_EQ(c.max_uploads_per_ip, 4U);
    EXPECT_EQ(c.upload_min_rate, 4096U);
    EXPECT_EQ(c.upload_rate_window_ms, 10000U);
    EXPECT_EQ(c.follow_uploads, http::follow_policy::automatic);
}

TEST_F(config_test, listen_repeated_flags_and_toml_arrays) {
    daemon_config c = parse_ok({"--listen", "127.0.0.1:9000", "--listen", "[::1]:9001", "--listen=:9002"});
    EXPECT_EQ(c.listen_host, "127.0.0.1");
    EXPECT_EQ(c.listen_port, 9000);
    ASSERT_EQ(c.more_listen.size(), 2U);
    EXPECT_EQ(c.more_listen[0].host, "::1");
    EXPECT_EQ(c.more_listen[0].port, 9001);
    EXPECT_EQ(c.more_listen[1].host, "0.0.0.0");
    EXPECT_EQ(c.more_listen[1].port, 9002);

    const std::string path = write_toml("listen = ['10.0.0.1:80', '[::]:80']\n");
    c = parse_ok({"--config", path});
    EXPECT_EQ(c.listen_host, "10.0.0.1");
    EXPECT_EQ(c.listen_port, 80);
    ASSERT_EQ(c.more_listen.size(), 1U);
    EXPECT_EQ(c.more_listen[0].host, "::");
    // A flag replaces the file's whole list.
    c = parse_ok({"--config", path, "--listen", "127.0.0.1:7000"});
    EXPECT_EQ(c.listen_port, 7000);
    EXPECT_TRUE(c.more_listen.empty());
    c = parse_ok({"--config", write_toml("listen = '127.0.0.1:7001'\n")});
    EXPECT_EQ(c.listen_port, 7001);
    EXPECT_TRUE(c.more_listen.empty());

    std::string message = error_of({"--listen", "127.0.0.1:9000", "--listen", "127.0.0.1:9000"});
    EXPECT_TRUE(contains(message, "given twice")) << message;
    message = error_of({"--listen", "127.0.0.1:9000", "--listen", "bad"});
    EXPECT_TRUE(contains(message, "--listen: 'bad'")) << message;
    // One value per --listen: a second word is a stray argument, not an address.
    message = error_of({"--listen", "127.0.0.1:9000", "127.0.0.1:9001"});
    EXPECT_TRUE(contains(message, "127.0.0.1:9001")) << message;
}

TEST_F(config_test, admin_listen_forms) {
    daemon_config c = parse_ok({"--admin-listen", "off"});
    EXPECT_EQ(c.admin, http::admin_kind::off);
    EXPECT_EQ(c.admin_address.host, "");
    EXPECT_EQ(c.admin_socket, "");
    c = parse_ok({"--admin-listen", "[::1]:0"});
    EXPECT_EQ(c.admin, http::admin_kind::tcp);
    EXPECT_EQ(c.admin_address.host, "::1");
    EXPECT_EQ(c.admin_address.port, 0);  // the kernel picks
    c = parse_ok({"--admin-listen", "unix:" + dir_ + "/admin.sock", "--admin-token", "s3cr3t"});
    EXPECT_EQ(c.admin, http::admin_kind::unix_socket);
    EXPECT_EQ(c.admin_address.host, "");
    EXPECT_EQ(c.admin_socket, dir_ + "/admin.sock");
    EXPECT_EQ(c.admin_token, "s3cr3t");
    c = parse_ok({"--config", write_toml("admin_listen = '127.0.0.1:9999'\nadmin_token = 'abc'\n")});
    EXPECT_EQ(c.admin_address.host, "127.0.0.1");
    EXPECT_EQ(c.admin_address.port, 9999);
    EXPECT_EQ(c.admin_token, "abc");
    EXPECT_TRUE(contains(usage_text(), "--admin-listen")) << usage_text();
    EXPECT_TRUE(contains(usage_text(), "127.0.0.1:8081")) << usage_text();
}

TEST_F(config_test, admin_listen_validation_errors) {
    struct bad_case {
        std::vector<std::string> args;
        const char* expected;
    };
    const std::string dir = dir_;
    for (const auto& [args, expected] : {
             bad_case{{"--admin-listen", "localhost"}, "--admin-listen: 'localhost' has no port"},
             bad_case{{"--admin-listen", "127.0.0.1:70000"}, "from 0 to 65535"},
             bad_case{{"--admin-listen", "unix:relative.sock"}, "absolute path"},
             bad_case{{"--admin-listen", "unix:/" + std::string(120, 'x')}, "at most 107 bytes"},
             bad_case{{"--admin-listen", "unix:" + dir + "/missing/admin.sock"}, "does not exist"},
             bad_case{{"--admin-listen", "127.0.0.1:8080"}, "also a public --listen address"},
             bad_case{{"--listen", "0.0.0.0:8081"}, "also a public --listen address"},
             bad_case{{"--admin-listen", "off", "--admin-token", "t"}, "--admin-listen is off"},
             bad_case{{"--admin-token", "has space"}, "--admin-token (admin_token): use visible ASCII"},
         }) {
        std::vector<std::string> storage{"datapumpd"};
        storage.insert(storage.end(), args.begin(), args.end());
        std::vector<const char*> argv;
        argv.reserve(storage.size());
        for (const auto& a : storage) {
            argv.push_back(a.c_str());
        }
        const auto out = parse_config(static_cast<int>(argv.size()), argv.data());
        EXPECT_FALSE(out.run()) << args.back();
        EXPECT_EQ(out.exit_code, 2);
        EXPECT_TRUE(contains(out.message, expected)) << args.back() << " -> " << out.message;
    }
}

// hostile network: uploads. --writable on an address others reach needs a token, or a word
// that says the operator means it; loopback and unix sockets do not.
TEST_F(config_test, writable_on_a_public_address_needs_a_token_or_insecure_writable) {
    for (const char* listen : {"0.0.0.0:8080", ":8080", "192.0.2.7:80", "[::]:8080", "[2001:db8::1]:80"}) {
        const std::string message = error_of({"--root", dir_, "--writable", "--listen", listen});
        EXPECT_TRUE(contains(message, "--writable (writable)")) << listen << ": " << message;
        EXPECT_TRUE(contains(message, "is not a loopback address")) << message;
        EXPECT_TRUE(contains(message, "--upload-token")) << message;
        EXPECT_TRUE(contains(message, "--insecure-writable")) << message;
        EXPECT_TRUE(parse({"--root", dir_, "--writable", "--listen", listen, "--upload-token", "t"}).run()) << listen;
        const daemon_config insecure = parse_ok({"--root", dir_, "--writable", "--listen", listen, "--insecure-writable"});
        EXPECT_TRUE(insecure.insecure_writable);
        EXPECT_TRUE(contains(exposure_warning(insecure), "INSECURE")) << listen;
        // Not writable: nothing to guard.
        EXPECT_TRUE(parse({"--root", dir_, "--listen", listen}).run()) << listen;
    }
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--writable", "--listen", "0.0.0.0:8080"}), "0.0.0.0:8080"));
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--writable", "--listen", "[::]:81"}), "[::]:81"));
    // Every --listen address counts, not only the first.
    EXPECT_TRUE(contains(
        error_of({"--root", dir_, "--writable", "--listen", "127.0.0.1:8080", "--listen", "0.0.0.0:8082"}),
        "0.0.0.0:8082 is not a loopback address"));
    EXPECT_TRUE(contains(exposure_warning(parse_ok({"--root", dir_, "--writable", "--listen", "127.0.0.1:8080",
                                                    "--listen", "[::]:8082", "--insecure-writable"})),
                         "[::]:8082"));
    for (const char* listen : {"127.0.0.1:8080", "127.1.2.3:80", "[::1]:8080", "[::ffff:127.0.0.1]:80"}) {
        const daemon_config c = parse_ok({"--root", dir_, "--writable", "--listen", listen});
        EXPECT_EQ(exposure_warning(c), "") << listen;
    }
    EXPECT_TRUE(parse({"--config", write_toml("root = '" + dir_ +
                                              "'\nwritable = true\nlisten = '0.0.0.0:80'\ninsecure_writable = true\n")})
                    .run());
    // A token: no warning, whatever the address.
    EXPECT_EQ(exposure_warning(parse_ok({"--root", dir_, "--writable", "--listen", "0.0.0.0:1", "--upload-token", "t",
                                         "--insecure-writable"})),
              "");
    EXPECT_TRUE(is_loopback_host("127.0.0.1"));
    EXPECT_TRUE(is_loopback_host("::1"));
    EXPECT_TRUE(is_loopback_host("unix:/run/datapump.sock"));
    EXPECT_FALSE(is_loopback_host("0.0.0.0"));
    EXPECT_FALSE(is_loopback_host("128.0.0.1"));
    EXPECT_FALSE(is_loopback_host("::"));
    EXPECT_FALSE(is_loopback_host("localhost"));
}

TEST_F(config_test, upload_bounds) {
    const daemon_config c =
        parse_ok({"--root", dir_, "--writable", "--max-uploads", "10", "--max-uploads-per-ip", "2", "--upload-min-rate",
                  "10k", "--upload-rate-window-ms", "500", "--follow-uploads", "off", "--max-upload", "0"});
    EXPECT_EQ(c.max_uploads, 10U);
    EXPECT_EQ(c.max_uploads_per_ip, 2U);
    EXPECT_EQ(c.upload_min_rate, 10000U);
    EXPECT_EQ(c.upload_rate_window_ms, 500U);
    EXPECT_EQ(c.follow_uploads, http::follow_policy::off);
    EXPECT_EQ(c.max_upload, 0U);  // explicitly: no limit
    EXPECT_EQ(parse_ok({"--root", dir_, "--writable", "--upload-token", "t", "--follow-uploads", "token"}).follow_uploads,
              http::follow_policy::token);
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--writable", "--follow-uploads", "token"}), "no --upload-token"));
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--follow-uploads", "friends"}), "use auto, public, token or off"));
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--upload-rate-window-ms", "10"}), "--upload-rate-window-ms"));
    // The arena holds 1024 buffers of 256 KiB; 300 uploads of 4 + 1 buffers would need 1500.
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--writable", "--max-uploads", "300"}), "need 1500 arena buffers"));
    const daemon_config from_file =
        parse_ok({"--config", write_toml("root = '" + dir_ + "'\nmax_uploads_per_ip = 0\nupload_min_rate = '1M'\n"
                                         "follow_uploads = 'public'\n")});
    EXPECT_EQ(from_file.max_uploads_per_ip, 0U);
    EXPECT_EQ(from_file.upload_min_rate, 1000000U);
    EXPECT_EQ(from_file.follow_uploads, http::follow_policy::public_);
}

// Two switches side by side: each flag sets its own (they once shared one variable).
TEST_F(config_test, upload_flags) {
    const daemon_config c = parse_ok({"--root", dir_, "--writable", "--upload-token", "s3cret", "--max-upload", "10G",
                                      "--upload-windows", "8"});
    EXPECT_TRUE(c.writable);
    EXPECT_FALSE(c.directory_listing);
    EXPECT_EQ(c.upload_token, "s3cret");
    EXPECT_EQ(c.max_upload, 10000000000U);
    EXPECT_EQ(c.upload_windows, 8U);
    const daemon_config listing = parse_ok({"--root", dir_, "--directory-listing"});
    EXPECT_FALSE(listing.writable);
    EXPECT_TRUE(listing.directory_listing);
    EXPECT_NE(error_of({"--root", dir_, "--upload-token", "x"}).find("add --writable"), std::string::npos);
    EXPECT_NE(error_of({"--root", dir_, "--writable", "--upload-token", "a b"}).find("visible ASCII"), std::string::npos);
    EXPECT_NE(error_of({"--root", dir_, "--upload-windows", "0"}).find("--upload-windows"), std::string::npos);
}

// hostile network: framing and paths
TEST_F(config_test, serve_dotfiles_is_off_unless_asked_for) {
    EXPECT_FALSE(parse_ok({"--root", dir_}).serve_dotfiles);
    EXPECT_TRUE(parse_ok({"--root", dir_, "--serve-dotfiles"}).serve_dotfiles);
    EXPECT_TRUE(parse_ok({"--config", write_toml("root = '" + dir_ + "'\nserve_dotfiles = true\n")}).serve_dotfiles);
    EXPECT_FALSE(parse_ok({"--config", write_toml("root = '" + dir_ + "'\nserve_dotfiles = false\n")}).serve_dotfiles);
}

TEST_F(config_test, rt_flags_and_keys) {
    const daemon_config c = parse_ok({"--root", dir_, "--rt-vps", "2", "--rt-max-density", "0.0005"});
    EXPECT_EQ(c.rt_vps, 2U);
    EXPECT_DOUBLE_EQ(c.rt_max_density, 0.0005);
    EXPECT_EQ(parse_ok({"--root", dir_, "--rt-vps", "0", "--rt-max-density", "1"}).rt_vps, 0U);  // one per CPU
    const daemon_config from_file = parse_ok({"--config", write_toml("root = '" + dir_ +
                                                                     "'\nrt_vps = 3\nrt_max_density = 0.5\n")});
    EXPECT_EQ(from_file.rt_vps, 3U);
    EXPECT_DOUBLE_EQ(from_file.rt_max_density, 0.5);
    EXPECT_DOUBLE_EQ(parse_ok({"--config", write_toml("root = '" + dir_ + "'\nrt_max_density = 1\n")}).rt_max_density,
                     1.0);
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--rt-vps", "257"}), "--rt-vps (rt_vps): 257 is out of range"));
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--rt-max-density", "0"}), "--rt-max-density (rt_max_density)"));
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--rt-max-density", "1.5"}), "at most 1"));
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--rt-max-density", "1e-3"}), "is not a decimal number"));
    EXPECT_TRUE(contains(error_of({"--config", write_toml("rt_max_density = 'high'\n")}), "expected a number"));
}

TEST_F(config_test, durability_modes) {
    const daemon_config batch =
        parse_ok({"--root", dir_, "--writable", "--durability", "batch", "--durability-window-ms", "20"});
    EXPECT_EQ(batch.durability, ingest::durability::batched);
    EXPECT_EQ(batch.durability_window, std::chrono::milliseconds(20));
    EXPECT_EQ(parse_ok({"--root", dir_, "--durability", "upload"}).durability, ingest::durability::per_upload);
    EXPECT_NE(error_of({"--root", dir_, "--durability", "sometimes"}).find("use upload or batch"), std::string::npos);
    EXPECT_NE(error_of({"--root", dir_, "--durability-window-ms", "0"}).find("--durability-window-ms"),
              std::string::npos);
    EXPECT_NE(error_of({"--root", dir_, "--durability-window-ms", "1001"}).find("1 to 1000"), std::string::npos);
    const daemon_config from_file = parse_ok({"--config", write_toml("root = '" + dir_ + "'\ndurability = 'batch'\n")});
    EXPECT_EQ(from_file.durability, ingest::durability::batched);
}

TEST_F(config_test, every_flag) {
    const daemon_config c = parse_ok({"--root", dir_, "--listen", "[::1]:9090", "--loops", "3", "--provider", "direct",
                            "--send-path", "send-zc", "--cache-mib", "64", "--buffer-kib", "128", "--capacity",
                            "1.5G", "--default-rate", "5M", "--max-rate", "10M", "--default-burst", "65536",
                            "--max-connections", "50", "--idle-timeout-ms", "1000", "--header-timeout-ms", "2000",
                            "--max-header-bytes", "8192", "--max-request-line", "4096", "--directory-listing",
                            "--grace-ms", "0", "--access-log", "off", "--log-level", "debug"});
    EXPECT_EQ(c.root, dir_);
    EXPECT_EQ(c.listen_host, "::1");
    EXPECT_EQ(c.listen_port, 9090);
    EXPECT_EQ(c.loops, 3U);
    EXPECT_EQ(c.provider, "direct");
    EXPECT_EQ(c.path, http::send_path::send_zc);
    EXPECT_EQ(c.cache_mib, 64U);
    EXPECT_EQ(c.buffer_kib, 128U);
    EXPECT_EQ(c.capacity, 1500000000U);
    EXPECT_EQ(c.default_rate, 5000000U);
    EXPECT_EQ(c.max_rate, 10000000U);
    EXPECT_EQ(c.default_burst, 65536U);
    EXPECT_EQ(c.max_connections, 50U);
    EXPECT_EQ(c.idle_timeout_ms, 1000U);
    EXPECT_EQ(c.header_timeout_ms, 2000U);
    EXPECT_EQ(c.max_header_bytes, 8192U);
    EXPECT_EQ(c.max_request_line, 4096U);
    EXPECT_TRUE(c.directory_listing);
    EXPECT_EQ(c.grace_ms, 0U);
    EXPECT_EQ(access_log_target(c), "off");
    EXPECT_EQ(c.log_level, "debug");
}

TEST_F(config_test, flag_equals_form_and_switch_spellings) {
    const daemon_config c = parse_ok({"--root=" + dir_, "--access-log=no", "--directory-listing=off", "--listen=:81"});
    EXPECT_EQ(access_log_target(c), "off");
    EXPECT_FALSE(c.directory_listing);
    EXPECT_EQ(c.listen_host, "0.0.0.0");
    EXPECT_EQ(c.listen_port, 81);
    EXPECT_TRUE(contains(error_of({"--access-log-format", "maybe"}),
                         "--access-log-format: unknown access log format 'maybe' (use combined or json)"));
}

// logs: the access log is a path, stderr or off (the old switch words still work), in a file too.
TEST_F(config_test, access_log_and_log_file_targets) {
    EXPECT_EQ(access_log_target(parse_ok({"--root", dir_, "--access-log", "/var/log/datapump/access.log"})),
              "/var/log/datapump/access.log");
    EXPECT_EQ(access_log_target(parse_ok({"--root", dir_, "--access-log", "on"})), "stderr");
    EXPECT_EQ(access_log_target(parse_ok({"--root", dir_, "--access-log", "stderr"})), "stderr");
    const daemon_config c = parse_ok({"--root", dir_, "--access-log-format", "json", "--log-file", "/tmp/d.log"});
    EXPECT_EQ(c.access_format, http::access_log_format::json);
    EXPECT_EQ(c.log_file, "/tmp/d.log");
    const daemon_config f = parse_ok(
        {"--root", dir_, "--config", write_toml("access_log = '/tmp/a.log'\naccess_log_format = 'json'\nlog_file = '/tmp/d.log'\n")});
    EXPECT_EQ(access_log_target(f), "/tmp/a.log");
    EXPECT_EQ(f.access_format, http::access_log_format::json);
    EXPECT_EQ(f.log_file, "/tmp/d.log");
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--access-log", ""}), "give a file path, stderr or off"));
    EXPECT_TRUE(contains(error_of({"--root", dir_, "--log-file", ""}), "--log-file (log_file): give a file path or stderr"));
}

TEST_F(config_test, send_path_spellings) {
    for (const auto path : {http::send_path::automatic, http::send_path::sendfile, http::send_path::splice,
                            http::send_path::send_zc, http::send_path::send}) {
        EXPECT_EQ(parse_ok({"--send-path", std::string(http::option_name(path))}).path, path);
    }
    EXPECT_EQ(http::option_name(http::send_path::send_zc), "send-zc");
    EXPECT_EQ(http::parse_send_path("send_zc"), http::send_path::send_zc);
    EXPECT_EQ(parse_ok({"--send-path", "send_zc"}).path, http::send_path::send_zc);
    EXPECT_TRUE(contains(error_of({"--send-path", "zerocopy"}), "unknown send path 'zerocopy'"));
}

TEST_F(config_test, toml_file_then_flags_that_were_given) {
    const std::string path = write_toml("root = '" + dir_ +
                                        "'\n"
                                        "listen = '0.0.0.0:8082'\n"
                                        "loops = 2\n"
                                        "provider = 'direct'\n"
                                        "send_path = 'splice'\n"
                                        "cache_mib = 32\n"
                                        "buffer_kib = 64\n"
                                        "capacity = '1G'\n"
                                        "default_rate = 250000\n"
                                        "max_rate = '2M'\n"
                                        "default_burst = 4096\n"
                                        "max_connections = 7\n"
                                        "idle_timeout_ms = 11\n"
                                        "header_timeout_ms = 12\n"
                                        "max_header_bytes = 4096\n"
                                        "max_request_line = 1024\n"
                                        "directory_listing = true\n"
                                        "grace_ms = 13\n"
                                        "access_log = false\n"
                                        "log_level = 'warn'\n");
    daemon_config c = parse_ok({"--config", path});
    EXPECT_EQ(c.config_file, path);
    EXPECT_EQ(c.root, dir_);
    EXPECT_EQ(c.listen_host, "0.0.0.0");
    EXPECT_EQ(c.listen_port, 8082);
    EXPECT_EQ(c.loops, 2U);
    EXPECT_EQ(c.provider, "direct");
    EXPECT_EQ(c.path, http::send_path::splice);
    EXPECT_EQ(c.cache_mib, 32U);
    EXPECT_EQ(c.buffer_kib, 64U);
    EXPECT_EQ(c.capacity, 1000000000U);
    EXPECT_EQ(c.default_rate, 250000U);
    EXPECT_EQ(c.max_rate, 2000000U);
    EXPECT_EQ(c.default_burst, 4096U);
    EXPECT_EQ(c.max_connections, 7U);
    EXPECT_EQ(c.idle_timeout_ms, 11U);
    EXPECT_EQ(c.header_timeout_ms, 12U);
    EXPECT_EQ(c.max_header_bytes, 4096U);
    EXPECT_EQ(c.max_request_line, 1024U);
    EXPECT_TRUE(c.directory_listing);
    EXPECT_EQ(c.grace_ms, 13U);
    EXPECT_EQ(access_log_target(c), "off");
    EXPECT_EQ(c.log_level, "warn");

    // Flags override the file, whichever side of --config they are on; the rest stays the file's.
    c = parse_ok({"--loops", "5", "--config", path, "--access-log", "on", "--listen", "127.0.0.1:1"});
    EXPECT_EQ(c.loops, 5U);
    EXPECT_EQ(access_log_target(c), "stderr");
    EXPECT_EQ(c.listen_host, "127.0.0.1");
    EXPECT_EQ(c.listen_port, 1);
    EXPECT_EQ(c.provider, "direct");
    EXPECT_EQ(c.cache_mib, 32U);
    EXPECT_TRUE(c.directory_listing);
}

TEST_F(config_test, unknown_toml_keys_are_errors) {
    std::string message = error_of({"--config", write_toml("lopps = 4\n")});
    EXPECT_TRUE(contains(message, "unknown key 'lopps'")) << message;
    EXPECT_TRUE(contains(message, "did you mean 'loops'")) << message;
    message = error_of({"--config", write_toml("send-path = 'send'\n")});
    EXPECT_TRUE(contains(message, "did you mean 'send_path'")) << message;
    message = error_of({"--config", write_toml("[server]\nloops = 4\n")});
    EXPECT_TRUE(contains(message, "unknown key 'server'")) << message;
    EXPECT_TRUE(contains(message, "known keys: root listen loops")) << message;
    message = error_of({"--config", write_toml("config = 'other.toml'\n")});
    EXPECT_TRUE(contains(message, "unknown key 'config'")) << message;
}

TEST_F(config_test, toml_type_mismatches_name_key_and_type) {
    struct bad_case {
        const char* toml;
        const char* expected;
    };
    for (const auto& [toml, expected] : {
             bad_case{"loops = '8'\n", "datapumpd.toml:1:9: key 'loops': "},
             bad_case{"loops = '8'\n", "expected an integer, got a string"},
             bad_case{"directory_listing = 'on'\n", "expected a boolean (true or false), got a string"},
             bad_case{"root = 1\n", "expected a string, got an integer"},
             bad_case{"capacity = 1.5\n", "expected an integer (bytes per second) or a string such as \"5M\""},
             bad_case{"capacity = '5Q'\n", "datapumpd.toml:1:12: key 'capacity': "},
             bad_case{"capacity = -1\n", "cannot be negative"},
             bad_case{"loops = -1\n", "-1 is out of range"},
             bad_case{"cache_mib = 4294967296\n", "out of range (0 to 4294967295)"},
             bad_case{"listen = [1]\n", "expected a string or an array of strings, got an array"},
             bad_case{"listen = []\n", "expected a string or an array of strings, got an array"},
             bad_case{"listen = ['a']\n", "has no port"},
             bad_case{"admin_listen = ['127.0.0.1:1']\n", "expected a string, got an array"},
             bad_case{"listen = 'localhost'\n", "has no port"},
             bad_case{"grace_ms = 1979-05-27\n", "got a date"},
         }) {
        const std::string message = error_of({"--config", write_toml(toml)});
        EXPECT_TRUE(contains(message, expected)) << toml << " -> " << message;
    }
}

TEST_F(config_test, all_file_problems_at_once_and_syntax_errors_with_line) {
    std::string message = error_of({"--config", write_toml("loops = 'x'\nprovidr = 'posix'\n")});
    EXPECT_TRUE(contains(message, "key 'loops'")) << message;
    EXPECT_TRUE(contains(message, "unknown key 'providr'")) << message;
    message = error_of({"--config", write_toml("loops = 2\nroot = \n")});
    EXPECT_TRUE(contains(message, "datapumpd.toml:2:")) << message;
    EXPECT_TRUE(contains(message, "not valid TOML")) << message;
    message = error_of({"--config", dir_ + "/missing.toml"});
    EXPECT_TRUE(contains(message, "missing.toml")) << message;
}

TEST_F(config_test, bad_listen_flags) {
    for (const char* bad : {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:80", "[::1]", "[]:80", "h:x"}) {
        const std::string message = error_of({"--listen", bad});
        EXPECT_TRUE(contains(message, "--listen: '")) << bad << " -> " << message;
    }
}

TEST_F(config_test, rate_flags_with_suffixes) {
    const daemon_config c = parse_ok({"--capacity", "100M", "--default-rate", "1.5k", "--max-rate", "2G"});
    EXPECT_EQ(c.capacity, 100000000U);
    EXPECT_EQ(c.default_rate, 1500U);
    EXPECT_EQ(c.max_rate, 2000000000U);
    EXPECT_TRUE(contains(error_of({"--capacity", "5 MB"}), "--capacity: '5 MB' is not a rate"));
    EXPECT_TRUE(contains(error_of({"--max-rate", "1.5"}), "--max-rate: '1.5' is not a rate: too many decimals"));
}

TEST_F(config_test, bad_numbers_in_flags) {
    EXPECT_TRUE(contains(error_of({"--loops", "many"}), "--loops: 'many' is not a whole number"));
    EXPECT_TRUE(contains(error_of({"--loops", "-2"}), "--loops"));
    EXPECT_TRUE(contains(error_of({"--cache-mib", "99999999999"}), "too large (at most 4294967295)"));
}

TEST_F(config_test, validation_errors_name_the_option_and_the_fix) {
    const std::string missing = dir_ + "/nope";
    std::string message = error_of({"--root", missing});
    EXPECT_TRUE(contains(message, "'" + missing + "' does not exist")) << message;
    const std::string file = write_toml("");
    message = error_of({"--root", file});
    EXPECT_TRUE(contains(message, "'" + file + "' is not a directory")) << message;

    for (const char* kib : {"0", "2", "6", "16388", "32768"}) {
        message = error_of({"--buffer-kib", kib});
        EXPECT_TRUE(contains(message, "--buffer-kib (buffer_kib): " + std::string(kib) + " is not usable")) << message;
        EXPECT_TRUE(contains(message, "multiple of 4")) << message;
    }
    ASSERT_TRUE(parse({"--buffer-kib", "4", "--cache-mib", "1"}).run());
    ASSERT_TRUE(parse({"--buffer-kib", "16384", "--cache-mib", "256"}).run());
    message = error_of({"--cache-mib", "0"});
    EXPECT_TRUE(contains(message, "--cache-mib (cache_mib)")) << message;
    message = error_of({"--cache-mib", "2", "--buffer-kib", "256"});
    EXPECT_TRUE(contains(message, "2 MiB holds 8 buffers of 256 KiB")) << message;
    EXPECT_TRUE(contains(message, "raise it to 4")) << message;

    EXPECT_TRUE(contains(error_of({"--loops", "0"}), "--loops (loops): 0 is out of range; give 1 to 256"));
    EXPECT_TRUE(contains(error_of({"--loops", "257"}), "--loops (loops): 257 is out of range"));
    ASSERT_TRUE(parse({"--loops", "256"}).run());
    EXPECT_TRUE(contains(error_of({"--provider", "ext4"}), "unknown provider 'ext4'; use posix or direct"));
    message = error_of({"--default-rate", "5M", "--max-rate", "1M"});
    EXPECT_TRUE(contains(message, "--max-rate (max_rate): 1000000 B/s is below --default-rate 5000000")) << message;
    ASSERT_TRUE(parse({"--default-rate", "5M", "--max-rate", "0"}).run());
    ASSERT_TRUE(parse({"--default-rate", "0", "--max-rate", "1M"}).run());
    EXPECT_TRUE(contains(error_of({"--log-level", "loud"}), "unknown level 'loud'"));
    message = error_of({"--cors-origins", "https://a.example,https://b.example/player"});
    EXPECT_TRUE(contains(message, "--cors-origins (cors_origins): 'https://b.example/player' is not an origin"))
        << message;
    ASSERT_TRUE(parse({"--cors-origins", "https://a.example, http://localhost:3000"}).run());
    ASSERT_TRUE(parse({"--cors-origins", "*"}).run());
    message = error_of({"--cache-control", "*.m3u8 no-cache; *.ts"});
    EXPECT_TRUE(contains(message, "--cache-control (cache_control): '*.ts' has no value")) << message;
    ASSERT_TRUE(parse({"--cache-control", "*.m3u8 no-cache; * max-age=3600, public"}).run());
    EXPECT_TRUE(contains(error_of({"--max-connections", "0"}), "--max-connections (max_connections): 0"));
    EXPECT_TRUE(contains(error_of({"--max-request-line", "20000"}), "larger than --max-header-bytes"));

    // Several problems: all of them, one per line.
    message = error_of({"--loops", "0", "--provider", "x"});
    EXPECT_TRUE(contains(message, "--loops (loops)")) << message;
    EXPECT_TRUE(contains(message, "--provider (provider)")) << message;
    EXPECT_TRUE(contains(message, "--help")) << message;
}

TEST_F(config_test, validate_config_alone) {
    daemon_config c;
    c.root = dir_;
    EXPECT_EQ(validate_config(c), "");
    c.provider = "nfs";
    c.buffer_kib = 5;
    const std::string message = validate_config(c);
    EXPECT_TRUE(contains(message, "provider")) << message;
    EXPECT_TRUE(contains(message, "\n--buffer-kib")) << message;
}

TEST_F(config_test, help_and_version_exit_zero) {
    auto out = parse({"--help"});
    EXPECT_FALSE(out.run());
    EXPECT_EQ(out.exit_code, 0);
    for (const char* flag : {"--root", "--listen", "--config", "--send-path", "--capacity", "--directory-listing",
                             "--access-log", "--log-level", "RATE"}) {
        EXPECT_TRUE(contains(out.message, flag)) << flag;
    }
    EXPECT_EQ(parse({"-h"}).exit_code, 0);
    EXPECT_EQ(usage_text(), out.message);
    // --help wins over an otherwise bad command line.
    EXPECT_EQ(parse({"--loops", "0", "--help"}).exit_code, 0);

    out = parse({"--version"});
    EXPECT_FALSE(out.run());
    EXPECT_EQ(out.exit_code, 0);
    EXPECT_TRUE(contains(out.message, "datapumpd ")) << out.message;
}

TEST_F(config_test, unknown_flags_and_stray_arguments) {
    std::string message = error_of({"--lops", "3"});
    EXPECT_TRUE(contains(message, "--lops")) << message;
    EXPECT_TRUE(contains(message, "datapumpd --help")) << message;
    message = error_of({"stray"});
    EXPECT_TRUE(contains(message, "stray")) << message;
    message = error_of({"--root"});
    EXPECT_TRUE(contains(message, "--root")) << message;
}

}  // namespace
}  // namespace datapump::daemon
