// The option table, the TOML file and the flags. CLI11 and toml++ throw; every exception is caught
// in this file and becomes a message in parse_outcome.
#include "config/config.hpp"

#include "config/values.hpp"

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#ifndef DATAPUMP_VERSION
#define DATAPUMP_VERSION "unknown"
#endif

namespace datapump::daemon {

std::string_view to_string(send_path_choice choice) {
    switch (choice) {
        case send_path_choice::auto_: return "auto";
        case send_path_choice::sendfile: return "sendfile";
        case send_path_choice::splice: return "splice";
        case send_path_choice::send_zc: return "send-zc";
        case send_path_choice::send: return "send";
    }
    return "auto";
}

std::optional<send_path_choice> parse_send_path(std::string_view text) {
    if (text == "auto") {
        return send_path_choice::auto_;
    }
    if (text == "sendfile") {
        return send_path_choice::sendfile;
    }
    if (text == "splice") {
        return send_path_choice::splice;
    }
    if (text == "send-zc" || text == "send_zc") {
        return send_path_choice::send_zc;
    }
    if (text == "send") {
        return send_path_choice::send;
    }
    return std::nullopt;
}

unsigned daemon_config::default_loops() {
    return std::clamp(std::thread::hardware_concurrency(), 1U, 256U);
}

namespace {

constexpr int exit_usage = 2;

// One option value before conversion: text from a flag, or a typed TOML value.
struct raw_value {
    std::string origin;  // "--loops", or "key 'loops' in FILE"
    bool from_flag = false;
    std::variant<std::monostate, std::string, std::int64_t, double, bool> value;
    std::string_view type_name;  // the TOML type, "a string", for mismatch messages
    // private control plane: the texts of a repeated flag (--listen) or of a TOML array of strings.
    std::vector<std::string> texts;
};

using problem = std::optional<std::string>;  // a message for the user, or nothing wrong

template <class T>
using converted = detail::parsed<T>;

std::string mismatch(const raw_value& v, std::string_view wanted) {
    return v.origin + ": expected " + std::string(wanted) + ", got " + std::string(v.type_name);
}

converted<std::string> to_text(const raw_value& v) {
    if (const auto* text = std::get_if<std::string>(&v.value)) {
        return *text;
    }
    return std::unexpected(mismatch(v, "a string"));
}

template <class T>
converted<T> to_whole(const raw_value& v) {
    constexpr auto max = std::uint64_t{std::numeric_limits<T>::max()};
    if (v.from_flag) {
        const auto parsed = detail::parse_unsigned(std::get<std::string>(v.value), max);
        if (!parsed) {
            return std::unexpected(v.origin + ": " + parsed.error());
        }
        return static_cast<T>(*parsed);
    }
    const auto* number = std::get_if<std::int64_t>(&v.value);
    if (number == nullptr) {
        return std::unexpected(mismatch(v, "an integer"));
    }
    if (*number < 0 || static_cast<std::uint64_t>(*number) > max) {
        return std::unexpected(v.origin + ": " + std::to_string(*number) + " is out of range (0 to " +
                               std::to_string(max) + ")");
    }
    return static_cast<T>(*number);
}

converted<std::uint64_t> to_rate(const raw_value& v) {
    if (const auto* number = std::get_if<std::int64_t>(&v.value)) {
        if (*number < 0) {
            return std::unexpected(v.origin + ": a rate cannot be negative (" + std::to_string(*number) + ")");
        }
        return static_cast<std::uint64_t>(*number);
    }
    const auto* text = std::get_if<std::string>(&v.value);
    if (text == nullptr) {
        return std::unexpected(mismatch(v, "an integer (bytes per second) or a string such as \"5M\""));
    }
    auto parsed = detail::parse_rate(*text);
    if (!parsed) {
        return std::unexpected(v.origin + ": " + parsed.error());
    }
    return *parsed;
}

converted<double> to_decimal(const raw_value& v) {
    if (const auto* number = std::get_if<double>(&v.value)) {
        return *number;
    }
    if (const auto* whole = std::get_if<std::int64_t>(&v.value)) {
        return static_cast<double>(*whole);
    }
    const auto* text = std::get_if<std::string>(&v.value);
    if (text == nullptr || !v.from_flag) {
        return std::unexpected(mismatch(v, "a number (e.g. 0.9)"));
    }
    auto parsed = detail::parse_decimal(*text);
    if (!parsed) {
        return std::unexpected(v.origin + ": " + parsed.error());
    }
    return *parsed;
}

converted<bool> to_bool(const raw_value& v) {
    if (const auto* flag = std::get_if<bool>(&v.value)) {
        return *flag;
    }
    if (!v.from_flag) {
        return std::unexpected(mismatch(v, "a boolean (true or false)"));
    }
    auto parsed = detail::parse_switch(std::get<std::string>(v.value));
    if (!parsed) {
        return std::unexpected(v.origin + ": " + parsed.error());
    }
    return *parsed;
}

template <class T, class U>
problem store(T& field, converted<U> value) {
    if (!value) {
        return std::move(value.error());
    }
    field = std::move(*value);
    return std::nullopt;
}

// Every --listen given (or the TOML value: a string or an array of strings): the first is
// listen_host:listen_port, the others more_listen. A later source replaces the whole list.
problem store_listen(daemon_config& c, const raw_value& v) {
    std::vector<std::string> texts = v.texts;
    if (texts.empty()) {
        auto text = to_text(v);
        if (!text) {
            return mismatch(v, "a string or an array of strings");
        }
        texts.push_back(std::move(*text));
    }
    c.more_listen.clear();
    for (std::size_t i = 0; i < texts.size(); ++i) {
        auto address = detail::parse_listen(texts[i]);
        if (!address) {
            return v.origin + ": " + address.error();
        }
        if (i == 0) {
            c.listen_host = std::move(address->host);
            c.listen_port = address->port;
        } else {
            c.more_listen.push_back({std::move(address->host), address->port});
        }
    }
    return std::nullopt;
}

problem store_admin_listen(daemon_config& c, const raw_value& v) {
    auto text = to_text(v);
    if (!text) {
        return std::move(text.error());
    }
    auto admin = detail::parse_admin_listen(*text);
    if (!admin) {
        return v.origin + ": " + admin.error();
    }
    c.admin_host.clear();
    c.admin_port = 0;
    c.admin_socket = std::move(admin->socket);
    if (!admin->off && c.admin_socket.empty()) {
        c.admin_host = std::move(admin->address.host);
        c.admin_port = admin->address.port;
    }
    return std::nullopt;
}

problem store_send_path(daemon_config& c, const raw_value& v) {
    auto text = to_text(v);
    if (!text) {
        return std::move(text.error());
    }
    const auto choice = parse_send_path(*text);
    if (!choice) {
        return v.origin + ": unknown send path '" + *text + "' (use auto, sendfile, splice, send-zc or send)";
    }
    c.send_path = *choice;
    return std::nullopt;
}

problem store_durability(daemon_config& c, const raw_value& v) {
    auto text = to_text(v);
    if (!text) {
        return std::move(text.error());
    }
    if (*text != "upload" && *text != "batch") {
        return v.origin + ": unknown durability '" + *text + "' (use upload or batch)";
    }
    c.durability_batch = *text == "batch";
    return std::nullopt;
}

// logs: --access-log PATH|stderr|off. The switch words of the old on/off form (and a TOML
// boolean) still work: on means stderr.
problem store_access_log(daemon_config& c, const raw_value& v) {
    if (const auto* flag = std::get_if<bool>(&v.value)) {
        c.access_log = *flag ? "stderr" : "off";
        return std::nullopt;
    }
    auto text = to_text(v);
    if (!text) {
        return v.origin + ": expected a path, stderr or off, got " + std::string(v.type_name);
    }
    if (text->empty()) {
        return v.origin + ": empty; give a file path, stderr or off";
    }
    if (const auto on = detail::parse_switch(*text)) {
        c.access_log = *on ? "stderr" : "off";
    } else {
        c.access_log = std::move(*text);
    }
    return std::nullopt;
}

problem store_access_log_format(daemon_config& c, const raw_value& v) {
    auto text = to_text(v);
    if (!text) {
        return std::move(text.error());
    }
    if (*text != "combined" && *text != "json") {
        return v.origin + ": unknown access log format '" + *text + "' (use combined or json)";
    }
    c.access_log_format = std::move(*text);
    return std::nullopt;
}

std::string show_rate(std::uint64_t rate) {
    return std::to_string(rate);
}

std::string show_decimal(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

std::string show_switch(bool on) {
    return on ? "on" : "off";
}

std::string show_address(const std::string& host, std::uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string show_listen(const daemon_config& c) {
    std::string out = show_address(c.listen_host, c.listen_port);
    for (const auto& more : c.more_listen) {
        out += " " + show_address(more.host, more.port);
    }
    return out;
}

std::string show_admin_listen(const daemon_config& c) {
    if (!c.admin_socket.empty()) {
        return "unix:" + c.admin_socket;
    }
    return c.admin_host.empty() ? std::string("off") : show_address(c.admin_host, c.admin_port);
}

// One row of docs/daemon.md's table. The flag is "--" + key with '-' for '_'.
struct option_spec {
    std::string_view key;
    std::string_view value_name;  // empty: a flag without a value (--directory-listing)
    std::string_view help;
    problem (*apply)(daemon_config&, const raw_value&);
    std::string (*show)(const daemon_config&);  // the value, as --help prints the default
};

// clang-format off
// The size follows the rows (std::to_array), so adding an option touches only its row.
constexpr auto options = std::to_array<option_spec>({
    {"root", "DIR", "the served folder; nothing outside it is reachable",
     [](daemon_config& c, const raw_value& v) { return store(c.root, to_text(v)); },
     [](const daemon_config& c) { return c.root; }},
    {"listen", "HOST:PORT", "IPv4 or [IPv6] address and port; repeat it for more addresses",
     store_listen, show_listen},
    {"loops", "N", "event-loop threads, one io_uring each (1..256)",
     [](daemon_config& c, const raw_value& v) { return store(c.loops, to_whole<unsigned>(v)); },
     [](const daemon_config& c) { return std::to_string(c.loops); }},
    {"provider", "NAME", "posix (page cache) or direct (O_DIRECT into the arena)",
     [](daemon_config& c, const raw_value& v) { return store(c.provider, to_text(v)); },
     [](const daemon_config& c) { return c.provider; }},
    {"send_path", "P", "auto, sendfile, splice, send-zc or send",
     store_send_path,
     [](const daemon_config& c) { return std::string(to_string(c.send_path)); }},
    {"cache_mib", "N", "the buffer arena in MiB (direct provider, and the cache)",
     [](daemon_config& c, const raw_value& v) { return store(c.cache_mib, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.cache_mib); }},
    {"buffer_kib", "N", "arena buffer size in KiB, a multiple of 4 (4..16384)",
     [](daemon_config& c, const raw_value& v) { return store(c.buffer_kib, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.buffer_kib); }},
    {"capacity", "RATE", "admission limit: sum of the rates of paced streams (0: none)",
     [](daemon_config& c, const raw_value& v) { return store(c.capacity, to_rate(v)); },
     [](const daemon_config& c) { return show_rate(c.capacity); }},
    {"default_rate", "RATE", "rate of a request that asks for none (0: unpaced)",
     [](daemon_config& c, const raw_value& v) { return store(c.default_rate, to_rate(v)); },
     [](const daemon_config& c) { return show_rate(c.default_rate); }},
    {"max_rate", "RATE", "cap on a requested rate (0: no cap)",
     [](daemon_config& c, const raw_value& v) { return store(c.max_rate, to_rate(v)); },
     [](const daemon_config& c) { return show_rate(c.max_rate); }},
    {"default_burst", "BYTES",
     "token-bucket depth of a paced stream (0: a quarter second of its rate, at least 256 KiB)",
     [](daemon_config& c, const raw_value& v) { return store(c.default_burst, to_whole<std::uint64_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.default_burst); }},
    {"rt_vps", "N", "virtual processors (real-time threads) that pace the paced streams (0: one per CPU)",
     [](daemon_config& c, const raw_value& v) { return store(c.rt_vps, to_whole<unsigned>(v)); },
     [](const daemon_config& c) { return std::to_string(c.rt_vps); }},
    {"rt_max_density", "X", "pacing admission: the density (CPU share) each rt VP may be loaded to, in (0, 1]",
     [](daemon_config& c, const raw_value& v) { return store(c.rt_max_density, to_decimal(v)); },
     [](const daemon_config& c) { return show_decimal(c.rt_max_density); }},
    {"max_connections", "N", "further connections are accepted and closed at once (503)",
     [](daemon_config& c, const raw_value& v) { return store(c.max_connections, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_connections); }},
    {"idle_timeout_ms", "N", "a keep-alive connection with no request is closed after this",
     [](daemon_config& c, const raw_value& v) { return store(c.idle_timeout_ms, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.idle_timeout_ms); }},
    {"header_timeout_ms", "N", "a request head must be complete within this time (408)",
     [](daemon_config& c, const raw_value& v) { return store(c.header_timeout_ms, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.header_timeout_ms); }},
    {"max_header_bytes", "N", "larger request heads get 431",
     [](daemon_config& c, const raw_value& v) { return store(c.max_header_bytes, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_header_bytes); }},
    {"max_request_line", "N", "longer request lines get 414",
     [](daemon_config& c, const raw_value& v) { return store(c.max_request_line, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_request_line); }},
    {"directory_listing", "", "list directories (HTML) instead of refusing them (403)",
     [](daemon_config& c, const raw_value& v) { return store(c.directory_listing, to_bool(v)); },
     [](const daemon_config& c) { return show_switch(c.directory_listing); }},
    {"grace_ms", "N", "on SIGTERM/SIGINT: let streams finish this long, then cut them",
     [](daemon_config& c, const raw_value& v) { return store(c.grace_ms, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.grace_ms); }},
    {"access_log", "PATH", "one line per response, when it ends: a file (reopened on SIGUSR1), stderr or off",
     store_access_log,
     [](const daemon_config& c) { return c.access_log; }},
    {"writable", "", "accept uploads (PUT) and DELETE; off: they get 405",
     [](daemon_config& c, const raw_value& v) { return store(c.writable, to_bool(v)); },
     [](const daemon_config& c) { return show_switch(c.writable); }},
    {"upload_token", "TOKEN", "uploads and deletes need 'Authorization: Bearer TOKEN' (empty: none)",
     [](daemon_config& c, const raw_value& v) { return store(c.upload_token, to_text(v)); },
     [](const daemon_config& c) { return c.upload_token.empty() ? std::string("none") : std::string("(set)"); }},
    {"max_upload", "BYTES", "larger upload bodies get 413; SI suffixes as RATE (default 4 GiB; 0: no limit)",
     [](daemon_config& c, const raw_value& v) { return store(c.max_upload, to_rate(v)); },
     [](const daemon_config& c) { return show_rate(c.max_upload); }},
    {"upload_windows", "N", "arena buffers of one upload written at once (1..64)",
     [](daemon_config& c, const raw_value& v) { return store(c.upload_windows, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.upload_windows); }},
    {"durability", "MODE", "upload: fsync each upload and its folder; batch: one syncfs per window",
     store_durability,
     [](const daemon_config& c) { return std::string(c.durability_batch ? "batch" : "upload"); }},
    {"durability_window_ms", "N", "batch: how long a finished upload waits for others (1..1000)",
     [](daemon_config& c, const raw_value& v) { return store(c.durability_window_ms, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.durability_window_ms); }},
    {"log_level", "L", "trace, debug, info, warn, error, critical or off",
     [](daemon_config& c, const raw_value& v) { return store(c.log_level, to_text(v)); },
     [](const daemon_config& c) { return c.log_level; }},
    // private control plane
    {"admin_listen", "ADDR", "/metrics, the status page and the control API: HOST:PORT, unix:/PATH or off",
     store_admin_listen, show_admin_listen},
    {"admin_token", "TOKEN", "admin requests need 'Authorization: Bearer TOKEN' (empty: none)",
     [](daemon_config& c, const raw_value& v) { return store(c.admin_token, to_text(v)); },
     [](const daemon_config& c) { return c.admin_token.empty() ? std::string("none") : std::string("(set)"); }},
    // hostile network: framing and paths
    {"serve_dotfiles", "", "serve, accept and list names starting with '.' (off: 404/403; .well-known always)",
     [](daemon_config& c, const raw_value& v) { return store(c.serve_dotfiles, to_bool(v)); },
     [](const daemon_config& c) { return show_switch(c.serve_dotfiles); }},
    // hostile network: uploads
    {"insecure_writable", "", "allow --writable without --upload-token on a non-loopback address (warned at every start)",
     [](daemon_config& c, const raw_value& v) { return store(c.insecure_writable, to_bool(v)); },
     [](const daemon_config& c) { return show_switch(c.insecure_writable); }},
    {"max_uploads", "N", "uploads at once; more get 503 (0: auto, half the arena / (upload_windows + 1))",
     [](daemon_config& c, const raw_value& v) { return store(c.max_uploads, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_uploads); }},
    {"max_uploads_per_ip", "N", "uploads at once from one client address; more get 503 (0: no cap)",
     [](daemon_config& c, const raw_value& v) { return store(c.max_uploads_per_ip, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_uploads_per_ip); }},
    {"upload_min_rate", "RATE", "an upload slower than this over a window is cut with 408 (0: none)",
     [](daemon_config& c, const raw_value& v) { return store(c.upload_min_rate, to_rate(v)); },
     [](const daemon_config& c) { return show_rate(c.upload_min_rate); }},
    {"upload_rate_window_ms", "N", "the window --upload-min-rate is averaged over (the first one is the grace)",
     [](daemon_config& c, const raw_value& v) { return store(c.upload_rate_window_ms, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.upload_rate_window_ms); }},
    {"follow_uploads", "WHO", "who may GET a file while it is uploaded: auto (token if set, else public), public, token, off",
     [](daemon_config& c, const raw_value& v) { return store(c.follow_uploads, to_text(v)); },
     [](const daemon_config& c) { return c.follow_uploads; }},
    // hostile network: nothing held forever
    {"send_timeout_ms", "N", "a response whose client takes no byte for this long is cut (nginx send_timeout)",
     [](daemon_config& c, const raw_value& v) { return store(c.send_timeout_ms, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.send_timeout_ms); }},
    {"max_pause_ms", "N", "a stream paused for longer than this is cut",
     [](daemon_config& c, const raw_value& v) { return store(c.max_pause_ms, to_whole<std::uint32_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_pause_ms); }},
    // hostile network: per-client-address limits
    {"max_connections_per_ip", "N", "open connections one client address may hold; more get 503 and close (0: no limit)",
     [](daemon_config& c, const raw_value& v) { return store(c.max_connections_per_ip, to_whole<std::uint64_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_connections_per_ip); }},
    {"max_streams_per_ip", "N", "live streams (paced and unpaced) one client address may hold; more get 503 (0: no limit)",
     [](daemon_config& c, const raw_value& v) { return store(c.max_streams_per_ip, to_whole<std::uint64_t>(v)); },
     [](const daemon_config& c) { return std::to_string(c.max_streams_per_ip); }},
    {"max_rate_per_ip", "RATE", "sum of the paced rates one client address may hold; more get 503 (0: no limit)",
     [](daemon_config& c, const raw_value& v) { return store(c.max_rate_per_ip, to_rate(v)); },
     [](const daemon_config& c) { return show_rate(c.max_rate_per_ip); }},
    // logs
    {"access_log_format", "F", "combined (nginx's, then \"Range\" and the duration) or json",
     store_access_log_format,
     [](const daemon_config& c) { return c.access_log_format; }},
    {"log_file", "PATH", "the daemon log: a file (reopened on SIGUSR1) or stderr (the journal's priorities under systemd)",
     [](daemon_config& c, const raw_value& v) { return store(c.log_file, to_text(v)); },
     [](const daemon_config& c) { return c.log_file; }},
});
// clang-format on

std::string flag_name(std::string_view key) {
    std::string flag = "--";
    for (const char c : key) {
        flag += c == '_' ? '-' : c;
    }
    return flag;
}

const option_spec* find_option(std::string_view key) {
    const auto* it = std::find_if(options.begin(), options.end(), [&](const option_spec& o) { return o.key == key; });
    return it == options.end() ? nullptr : it;
}

// Levenshtein distance, for "did you mean" on unknown keys (keys are short).
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        row[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0U : 1U)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// "FILE:LINE:COLUMN" of a place in the TOML file, as compilers and editors write it.
std::string file_position(const std::string& path, const toml::source_position& at) {
    return path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

std::string unknown_key(std::string_view key, const std::string& where) {
    std::string message = where + ": unknown key '" + std::string(key) + "'";
    const option_spec* best = nullptr;
    std::size_t best_distance = 3;  // suggest only close spellings
    for (const auto& o : options) {
        const std::size_t d = edit_distance(key, o.key);
        if (d < best_distance) {
            best = &o;
            best_distance = d;
        }
    }
    if (best != nullptr) {
        return message + ": did you mean '" + std::string(best->key) + "'?";
    }
    message += " (known keys:";
    for (const auto& o : options) {
        message += " ";
        message += o.key;
    }
    return message + ")";
}

raw_value from_toml(const toml::node& node, std::string origin) {
    raw_value v;
    v.origin = std::move(origin);
    switch (node.type()) {
        case toml::node_type::string:
            v.value = std::string(node.as_string()->get());
            v.type_name = "a string";
            break;
        case toml::node_type::integer:
            v.value = node.as_integer()->get();
            v.type_name = "an integer";
            break;
        case toml::node_type::floating_point:
            v.value = node.as_floating_point()->get();
            v.type_name = "a float";
            break;
        case toml::node_type::boolean:
            v.value = node.as_boolean()->get();
            v.type_name = "a boolean";
            break;
        case toml::node_type::table: v.type_name = "a table"; break;
        case toml::node_type::array:
            v.type_name = "an array";
            for (const auto& element : *node.as_array()) {
                if (!element.is_string()) {
                    v.texts.clear();
                    break;
                }
                v.texts.emplace_back(element.as_string()->get());
            }
            break;
        case toml::node_type::date: v.type_name = "a date"; break;
        case toml::node_type::time: v.type_name = "a time"; break;
        case toml::node_type::date_time: v.type_name = "a date-time"; break;
        case toml::node_type::none: v.type_name = "nothing"; break;
    }
    return v;
}

// Where each key of the file is, "FILE:LINE:COLUMN" of its value (conf: for validation's
// messages about a key the file set).
using key_places = std::vector<std::pair<std::string, std::string>>;

// Reads `path` and applies its keys to `config`. Returns one message per problem.
std::vector<std::string> apply_toml(daemon_config& config, const std::string& path, key_places& places) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        return {"--config: cannot read '" + path + "': " +
                (ec ? ec.message() : std::string("no such file (give the path of a TOML file)"))};
    }
    toml::table table;
    try {
        table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        const auto& at = e.source().begin;
        return {file_position(path, at) + ": not valid TOML: " + std::string(e.description())};
    }
    // The table iterates by key: the problems are told in the file's order, by their place.
    std::vector<std::pair<toml::source_position, std::string>> found;
    for (const auto& [key, node] : table) {
        const option_spec* spec = find_option(key.str());
        if (spec == nullptr) {
            found.emplace_back(key.source().begin, unknown_key(key.str(), file_position(path, key.source().begin)));
            continue;
        }
        // The value's place: a type or range error points at what is to be changed.
        places.emplace_back(std::string(key.str()), file_position(path, node.source().begin));
        raw_value v = from_toml(node, file_position(path, node.source().begin) + ": key '" + std::string(key.str()) + "'");
        if (auto p = spec->apply(config, v)) {
            found.emplace_back(node.source().begin, std::move(*p));
        }
    }
    std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
        return a.first.line != b.first.line ? a.first.line < b.first.line : a.first.column < b.first.column;
    });
    std::vector<std::string> problems;
    problems.reserve(found.size());
    for (auto& [at, message] : found) {
        problems.push_back(std::move(message));
    }
    config.config_file = path;
    return problems;
}

// conf: --print-config-template. The TOML literal of an option's value, from its --help form
// and its value name (the table has no type column): switches are booleans; N, BYTES and RATE
// integers; X a number; a TOKEN's "none" the empty string; anything else a string.
std::string toml_literal(const option_spec& o, const daemon_config& c) {
    std::string shown = o.show(c);
    if (o.value_name.empty() || o.value_name == "on/off") {
        return shown == "on" ? "true" : "false";
    }
    if (o.value_name == "N" || o.value_name == "BYTES" || o.value_name == "RATE" || o.value_name == "X") {
        return shown;
    }
    if (o.value_name == "TOKEN" && shown == "none") {
        return "\"\"";
    }
    std::ostringstream out;
    out << toml::value<std::string>(shown);  // quoted and escaped as TOML wants
    return out.str();
}

// The flags as CLI11 sees them: one text per option, applied only when given.
struct flag_state {
    std::array<std::string, options.size()> text;
    std::array<bool, options.size()> switches{};  // the flags without a value
    std::string config_file;
    std::array<CLI::Option*, options.size()> given{};
    CLI::Option* config = nullptr;
    std::vector<std::string> listen;  // --listen may be given several times
    // conf: modes that do not run the daemon
    bool check = false;           // --check-config
    bool print_template = false;  // --print-config-template
};

std::unique_ptr<CLI::App> build_app(flag_state& flags) {
    auto app = std::make_unique<CLI::App>(
        "datapumpd: serves the files under one folder over HTTP/1.1, paced, with VCR control", "datapumpd");
    app->set_version_flag("--version", std::string("datapumpd ") + DATAPUMP_VERSION);
    flags.config = app->add_option("--config", flags.config_file,
                                   "TOML file with the same keys as the flags (send_path, cache_mib, ...); "
                                   "flags given override it")
                       ->type_name("FILE");
    // conf: modes that do not run the daemon
    app->add_flag("--check-config", flags.check,
                  "read and check the configuration (the --config file and the flags), print 'configuration ok' "
                  "or the errors with FILE:LINE:COLUMN, and exit (0: ok, 2: errors) without starting");
    app->add_flag("--print-config-template", flags.print_template,
                  "print a TOML file with every key commented out, with its default and help, and exit");
    const daemon_config defaults;
    for (std::size_t i = 0; i < options.size(); ++i) {
        const option_spec& o = options[i];
        const std::string help = std::string(o.help) + " [default: " + o.show(defaults) + "]";
        if (o.value_name.empty()) {
            flags.given[i] = app->add_flag(flag_name(o.key), flags.switches[i], help);
        } else if (o.key == "listen") {
            // One value per --listen (never the next word), every occurrence kept.
            flags.given[i] = app->add_option(flag_name(o.key), flags.listen, help)
                                 ->type_name(std::string(o.value_name))
                                 ->expected(1)
                                 ->allow_extra_args(false)
                                 ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
        } else {
            flags.given[i] = app->add_option(flag_name(o.key), flags.text[i], help)->type_name(std::string(o.value_name));
        }
    }
    app->footer(
        "RATE is bytes per second with an optional SI suffix k (x1000), M (x10^6) or G (x10^9): 5M is 5 MB/s.\n"
        "Order: defaults, then the --config file, then the flags given. See docs/daemon.md.");
    return app;
}

// conf: validate_config's lines start "--flag (key): "; one about a key the file set (and no flag
// overrode) gets the key's FILE:LINE:COLUMN in front.
std::string place_problems(const std::string& lines, const key_places& places) {
    std::string out;
    std::size_t start = 0;
    while (start <= lines.size()) {
        std::size_t end = lines.find('\n', start);
        if (end == std::string::npos) {
            end = lines.size();
        }
        const std::string line = lines.substr(start, end - start);
        const std::size_t open = line.find(" (");
        const std::size_t close = line.find("): ");
        std::string prefix;
        if (line.starts_with("--") && open != std::string::npos && close != std::string::npos && open < close) {
            const std::string key = line.substr(open + 2, close - open - 2);
            for (const auto& [k, at] : places) {
                if (k == key) {
                    prefix = at + ": ";
                }
            }
        }
        if (!out.empty()) {
            out += '\n';
        }
        out += prefix;
        out += line;
        start = end + 1;
    }
    return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& line : lines) {
        if (!out.empty()) {
            out += '\n';
        }
        out += line;
    }
    return out;
}

parse_outcome stop(int exit_code, std::string message) {
    return parse_outcome{std::nullopt, exit_code, std::move(message)};
}

parse_outcome usage_error(std::string_view message) {
    return stop(exit_usage, "datapumpd: " + std::string(message) + "\nRun 'datapumpd --help' for the options.");
}

parse_outcome parse_or_throw(int argc, const char* const* argv) {
    flag_state flags;
    const auto app = build_app(flags);
    try {
        app->parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return stop(0, app->help());
    } catch (const CLI::CallForAllHelp&) {
        return stop(0, app->help());
    } catch (const CLI::CallForVersion& e) {
        return stop(0, e.what());
    } catch (const CLI::ParseError& e) {
        return usage_error(e.what());
    }

    if (flags.print_template) {
        return stop(0, config_template());
    }
    daemon_config config;
    std::vector<std::string> problems;
    key_places places;
    if (flags.config->count() > 0) {
        problems = apply_toml(config, flags.config_file, places);
    }
    for (std::size_t i = 0; i < options.size(); ++i) {
        if (flags.given[i]->count() == 0) {
            continue;
        }
        std::erase_if(places, [&](const auto& p) { return p.first == options[i].key; });  // the flag's value wins
        raw_value v;
        v.origin = flag_name(options[i].key);
        v.from_flag = true;
        v.value = options[i].value_name.empty() ? show_switch(flags.switches[i]) : flags.text[i];
        if (options[i].key == "listen") {
            v.texts = flags.listen;
        }
        if (auto p = options[i].apply(config, v)) {
            problems.push_back(std::move(*p));
        }
    }
    if (problems.empty()) {
        if (std::string invalid = validate_config(config); !invalid.empty()) {
            problems.push_back(place_problems(invalid, places));
        }
    }
    if (!problems.empty()) {
        if (flags.check) {
            return stop(exit_usage, "datapumpd: " + join_lines(problems) + "\ndatapumpd: configuration refused\n");
        }
        return usage_error(join_lines(problems));
    }
    if (flags.check) {
        std::string ok = "datapumpd: configuration ok";
        if (!config.config_file.empty()) {
            ok += " (" + config.config_file + ")";
        }
        ok += "\n";
        if (const std::string warning = exposure_warning(config); !warning.empty()) {
            ok += "datapumpd: warning: " + warning + "\n";
        }
        return stop(0, ok);
    }
    return parse_outcome{std::move(config), 0, {}};
}

}  // namespace

parse_outcome parse_config(int argc, const char* const* argv) {
    try {
        return parse_or_throw(argc, argv);
    } catch (const std::exception& e) {
        // CLI11 set-up, toml++ or an allocation: still a clean exit with a message.
        return usage_error(std::string("cannot read the configuration: ") + e.what());
    }
}

std::string usage_text() {
    flag_state flags;
    return build_app(flags)->help();
}

// conf: the template and the table's keys, for reload.
std::string config_template() {
    const daemon_config defaults;
    std::string out =
        "# datapumpd configuration (TOML), read with `datapumpd --config FILE`.\n"
        "# Every key is commented out with its default: uncomment a line to change it. Flags given on the\n"
        "# command line override this file. Check it with `datapumpd --config FILE --check-config`;\n"
        "# `systemctl reload datapumpd` (SIGHUP) applies it to new requests (docs/daemon.md, \"Reload\").\n"
        "# Generated by `datapumpd --print-config-template` (datapumpd " DATAPUMP_VERSION
        ") from the table behind --help.\n";
    for (const option_spec& o : options) {
        out += "\n# ";
        out += o.help;
        if (o.key == "loops") {
            out += "; default: one per CPU (" + o.show(defaults) + " where this was generated)";
        }
        out += "\n#";
        out += o.key;
        out += " = ";
        out += toml_literal(o, defaults);
        out += "\n";
    }
    return out;
}

std::vector<std::string_view> option_keys() {
    std::vector<std::string_view> keys;
    keys.reserve(options.size());
    for (const option_spec& o : options) {
        keys.push_back(o.key);
    }
    return keys;
}

std::string show_option(const daemon_config& config, std::string_view key) {
    const option_spec* spec = find_option(key);
    return spec == nullptr ? std::string() : spec->show(config);
}

}  // namespace datapump::daemon
