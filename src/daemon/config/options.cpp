// conf: the option table (options.hpp) and the conversions its rows use: from a flag's text or a
// TOML value to a member of daemon_config, and back to the text --help shows.
#include "config/options.hpp"

#include "config/values.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <sstream>
#include <thread>
#include <type_traits>
#include <utility>

namespace datapump::daemon {

daemon_config::daemon_config() {
    loops = default_loops();
    admin = http::admin_kind::tcp;
    admin_address = {"127.0.0.1", 8081};
    follow_uploads = http::follow_policy::automatic;
    direct_min_size = std::uint64_t{1} << 20;
    mime_types_file = "/etc/mime.types";
}

unsigned daemon_config::default_loops() {
    return std::clamp(std::thread::hardware_concurrency(), 1U, 256U);
}

std::string access_log_target(const daemon_config& config) {
    return config.access_log ? config.access_log_path : std::string("off");
}

namespace detail {
namespace {

template <class T>
using converted = parsed<T>;

// The type of the member `Member` points to, in daemon_config (or its base).
template <auto Member>
using member_type = std::remove_cvref_t<decltype(std::declval<daemon_config&>().*Member)>;

std::string mismatch(const raw_value& v, std::string_view wanted) {
    return v.origin + ": expected " + std::string(wanted) + ", got " + std::string(v.type_name);
}

converted<std::string> to_text(const raw_value& v) {
    if (const auto* text = std::get_if<std::string>(&v.value)) {
        return *text;
    }
    return std::unexpected(mismatch(v, "a string"));
}

// One word of a fixed set, read by `parse`; `what` and `choices` name them in the error.
template <class T>
converted<T> to_choice(const raw_value& v, std::optional<T> (*parse)(std::string_view), std::string_view what,
                       std::string_view choices) {
    auto text = to_text(v);
    if (!text) {
        return std::unexpected(std::move(text.error()));
    }
    const auto chosen = parse(*text);
    if (!chosen) {
        return std::unexpected(v.origin + ": unknown " + std::string(what) + " '" + *text + "' (use " +
                               std::string(choices) + ")");
    }
    return *chosen;
}

// A whole number up to Limit's maximum: the option's range, which may be narrower than the
// member's type (max_connections takes what a uint32 holds, into a uint64).
template <class Limit>
converted<Limit> to_whole(const raw_value& v) {
    constexpr auto max = std::uint64_t{std::numeric_limits<Limit>::max()};
    if (v.from_flag) {
        const auto parsed = parse_unsigned(std::get<std::string>(v.value), max);
        if (!parsed) {
            return std::unexpected(v.origin + ": " + parsed.error());
        }
        return static_cast<Limit>(*parsed);
    }
    const auto* number = std::get_if<std::int64_t>(&v.value);
    if (number == nullptr) {
        return std::unexpected(mismatch(v, "an integer"));
    }
    if (*number < 0 || static_cast<std::uint64_t>(*number) > max) {
        return std::unexpected(v.origin + ": " + std::to_string(*number) + " is out of range (0 to " +
                               std::to_string(max) + ")");
    }
    return static_cast<Limit>(*number);
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
    auto parsed = parse_rate(*text);
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
    auto parsed = parse_decimal(*text);
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
    auto parsed = parse_switch(std::get<std::string>(v.value));
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
    field = static_cast<T>(std::move(*value));
    return std::nullopt;
}

// The rows' setters and getters by kind; Member points into daemon_config or its server part.
template <auto Member, class Limit = member_type<Member>>
problem set_whole(daemon_config& c, const raw_value& v) {
    return store(c.*Member, to_whole<Limit>(v));
}
template <auto Member>
problem set_rate(daemon_config& c, const raw_value& v) {
    return store(c.*Member, to_rate(v));
}
template <auto Member>
problem set_decimal(daemon_config& c, const raw_value& v) {
    return store(c.*Member, to_decimal(v));
}
template <auto Member>
problem set_switch(daemon_config& c, const raw_value& v) {
    return store(c.*Member, to_bool(v));
}
template <auto Member>
problem set_text(daemon_config& c, const raw_value& v) {
    return store(c.*Member, to_text(v));
}
template <auto Member>
std::string show_number(const daemon_config& c) {
    return std::to_string(c.*Member);
}
template <auto Member>
std::string show_decimal(const daemon_config& c) {
    std::ostringstream out;
    out << c.*Member;
    return out.str();
}
template <auto Member>
std::string show_switch(const daemon_config& c) {
    return c.*Member ? "on" : "off";
}
template <auto Member>
std::string show_text(const daemon_config& c) {
    return c.*Member;
}
// An empty text shown as "none" (which the setting reads back as empty).
template <auto Member>
std::string show_or_none(const daemon_config& c) {
    return (c.*Member).empty() ? std::string("none") : c.*Member;
}
// --help hides tokens.
template <auto Member>
std::string show_token(const daemon_config& c) {
    return (c.*Member).empty() ? std::string("none") : std::string("(set)");
}

// Every --listen given (or the TOML value: a string or an array of strings): the first is
// listen_host:listen_port, the others more_listen. A later source replaces the whole list.
problem set_listen(daemon_config& c, const raw_value& v) {
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
        auto address = parse_listen(texts[i]);
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

// Appends, rather than "[" + host: GCC 12 sees a false -Wrestrict in that once inlined here.
std::string show_address(const std::string& host, std::uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos;
    std::string out;
    if (v6) {
        out.append("[").append(host).append("]");
    } else {
        out.append(host);
    }
    out.append(":").append(std::to_string(port));
    return out;
}

std::string show_listen(const daemon_config& c) {
    std::string out = show_address(c.listen_host, c.listen_port);
    for (const auto& more : c.more_listen) {
        out.append(" ").append(show_address(more.host, more.port));
    }
    return out;
}

problem set_admin_listen(daemon_config& c, const raw_value& v) {
    auto text = to_text(v);
    if (!text) {
        return std::move(text.error());
    }
    auto admin = parse_admin_listen(*text);
    if (!admin) {
        return v.origin + ": " + admin.error();
    }
    c.admin_address = {};
    c.admin_socket = std::move(admin->socket);
    if (admin->off) {
        c.admin = http::admin_kind::off;
    } else if (!c.admin_socket.empty()) {
        c.admin = http::admin_kind::unix_socket;
    } else {
        c.admin = http::admin_kind::tcp;
        c.admin_address = {std::move(admin->address.host), admin->address.port};
    }
    return std::nullopt;
}

std::string show_admin_listen(const daemon_config& c) {
    switch (c.admin) {
        case http::admin_kind::off:
            return "off";
        case http::admin_kind::unix_socket:
            return "unix:" + c.admin_socket;
        case http::admin_kind::tcp:
            return show_address(c.admin_address.host, c.admin_address.port);
    }
    return "off";
}

problem set_send_path(daemon_config& c, const raw_value& v) {
    return store(c.path, to_choice(v, http::parse_send_path, "send path", "auto, sendfile, splice, send-zc or send"));
}

std::string show_send_path(const daemon_config& c) {
    return std::string(http::option_name(c.path));
}

problem set_huge_pages(daemon_config& c, const raw_value& v) {
    return store(c.huge_pages, to_choice(v, http::parse_huge_pages, "huge-pages value", "try, on or off"));
}

std::string show_huge_pages(const daemon_config& c) {
    return std::string(http::to_string(c.huge_pages));
}

problem set_durability(daemon_config& c, const raw_value& v) {
    auto text = to_text(v);
    if (!text) {
        return std::move(text.error());
    }
    if (*text != "upload" && *text != "batch") {
        return v.origin + ": unknown durability '" + *text + "' (use upload or batch)";
    }
    c.durability = *text == "batch" ? ingest::durability::batched : ingest::durability::per_upload;
    return std::nullopt;
}

std::string show_durability(const daemon_config& c) {
    return c.durability == ingest::durability::batched ? "batch" : "upload";
}

// durability_window_ms: whole milliseconds into the server's microseconds.
problem set_durability_window(daemon_config& c, const raw_value& v) {
    auto ms = to_whole<std::uint32_t>(v);
    if (!ms) {
        return std::move(ms.error());
    }
    c.durability_window = std::chrono::milliseconds(*ms);
    return std::nullopt;
}

std::string show_durability_window(const daemon_config& c) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(c.durability_window).count());
}

// logs: --access-log PATH|stderr|off. The switch words of the old on/off form (and a TOML
// boolean) still work: on means stderr.
problem set_access_log(daemon_config& c, const raw_value& v) {
    if (const auto* flag = std::get_if<bool>(&v.value)) {
        c.access_log = *flag;
        if (*flag) {
            c.access_log_path = "stderr";
        }
        return std::nullopt;
    }
    auto text = to_text(v);
    if (!text) {
        return v.origin + ": expected a path, stderr or off, got " + std::string(v.type_name);
    }
    if (text->empty()) {
        return v.origin + ": empty; give a file path, stderr or off";
    }
    const auto on = parse_switch(*text);
    c.access_log = on.value_or(true);
    if (!on) {
        c.access_log_path = std::move(*text);
    } else if (*on) {
        c.access_log_path = "stderr";
    }
    return std::nullopt;
}

problem set_access_log_format(daemon_config& c, const raw_value& v) {
    return store(c.access_format, to_choice(v, http::parse_access_log_format, "access log format", "combined or json"));
}

std::string show_access_log_format(const daemon_config& c) {
    return std::string(http::to_string(c.access_format));
}

// The message is validation's (as it was when this was a string checked there): at the value's
// place in a file.
problem set_follow_uploads(daemon_config& c, const raw_value& v) {
    auto text = to_text(v);
    if (!text) {
        return std::move(text.error());
    }
    const auto policy = http::parse_follow_policy(*text);
    if (!policy) {
        return (v.place.empty() ? std::string() : v.place + ": ") +
               "--follow-uploads (follow_uploads): unknown value '" + *text + "'; use auto, public, token or off";
    }
    c.follow_uploads = *policy;
    return std::nullopt;
}

std::string show_follow_uploads(const daemon_config& c) {
    return std::string(http::to_string(c.follow_uploads));
}

// clang-format off
// One row per option, in --help order; the docs' columns are Markdown. The size follows the rows
// (std::to_array), so adding an option touches only its row.
constexpr auto options = std::to_array<option_spec>({
    {.key = "root",
     .value_name = "DIR",
     .members = "root",
     .help = "the served folder; nothing outside it is reachable",
     .doc_default = "`.`",
     .doc = "the served folder; nothing outside it is reachable",
     .apply = set_text<&daemon_config::root>,
     .show = show_text<&daemon_config::root>},
    {.key = "listen",
     .value_name = "HOST:PORT",
     .members = "listen_host listen_port more_listen",
     .help = "IPv4 or [IPv6] address and port; repeat it for more addresses",
     .doc_default = "`127.0.0.1:8080`",
     .doc = "IPv4 or `[IPv6]` address and port; repeat the flag (TOML: an array of strings) to serve on several addresses, every loop on each",
     .apply = set_listen,
     .show = show_listen},
    {.key = "loops",
     .value_name = "N",
     .members = "loops",
     .help = "event-loop threads, one io_uring each (1..256)",
     .doc_default = "number of cores",
     .doc = "event-loop threads, one io_uring each",
     .apply = set_whole<&daemon_config::loops>,
     .show = show_number<&daemon_config::loops>},
    {.key = "provider",
     .value_name = "NAME",
     .members = "provider",
     .help = "posix (page cache) or direct (O_DIRECT into the arena)",
     .doc_default = "`posix`",
     .doc = "`posix` (page cache) or `direct` (O_DIRECT into the arena)",
     .apply = set_text<&daemon_config::provider>,
     .show = show_text<&daemon_config::provider>},
    {.key = "send_path",
     .value_name = "P",
     .members = "path",
     .help = "auto, sendfile, splice, send-zc or send",
     .doc_default = "`auto`",
     .doc = "`auto`, `sendfile`, `splice`, `send-zc`, `send` (see below)",
     .apply = set_send_path,
     .show = show_send_path},
    {.key = "cache_mib",
     .value_name = "N",
     .members = "cache_mib",
     .help = "the buffer arena in MiB (direct provider, and the cache)",
     .doc_default = "`256`",
     .doc = "the buffer arena of the cache the `send-zc` and `send` paths lend from (the `sendfile` and `splice` paths use the kernel's page cache and keep a token arena of 16 buffers)",
     .apply = set_whole<&daemon_config::cache_mib>,
     .show = show_number<&daemon_config::cache_mib>},
    {.key = "buffer_kib",
     .value_name = "N",
     .members = "buffer_kib",
     .help = "arena buffer size in KiB, a multiple of 4 (4..16384)",
     .doc_default = "`256`",
     .doc = "arena buffer size (a multiple of 4)",
     .apply = set_whole<&daemon_config::buffer_kib>,
     .show = show_number<&daemon_config::buffer_kib>},
    {.key = "huge_pages",
     .value_name = "H",
     .members = "huge_pages",
     .help = "huge pages for the arena: try, on (refuse to start without) or off",
     .doc_default = "`try`",
     .doc = "transparent huge pages for the cache's arena (the loan paths and uploads): `try` takes them where the kernel gives them, `on` refuses to start unless the whole arena got them, `off` keeps a memfd in small pages (see \"Huge pages\")",
     .apply = set_huge_pages,
     .show = show_huge_pages},
    {.key = "capacity",
     .value_name = "RATE",
     .members = "capacity",
     .help = "admission limit: sum of the rates of paced streams (0: none)",
     .doc_default = "`0` (none)",
     .doc = "admission limit: sum of the rates of paced streams",
     .apply = set_rate<&daemon_config::capacity>,
     .show = show_number<&daemon_config::capacity>},
    {.key = "default_rate",
     .value_name = "RATE",
     .members = "default_rate",
     .help = "rate of a request that asks for none (0: unpaced)",
     .doc_default = "`0` (unpaced)",
     .doc = "rate of a request that asks for none",
     .apply = set_rate<&daemon_config::default_rate>,
     .show = show_number<&daemon_config::default_rate>},
    {.key = "max_rate",
     .value_name = "RATE",
     .members = "max_rate",
     .help = "cap on a requested rate (0: no cap)",
     .doc_default = "`0` (no cap)",
     .doc = "cap on a requested rate",
     .apply = set_rate<&daemon_config::max_rate>,
     .show = show_number<&daemon_config::max_rate>},
    {.key = "default_burst",
     .value_name = "BYTES",
     .members = "default_burst",
     .help = "token-bucket depth of a paced stream (0: a second of its rate up to 1 MiB, a quarter second above 4 MiB/s, at least 256 KiB)",
     .doc_default = "`0` (auto)",
     .doc = "token-bucket depth of a paced stream that asks for none; auto: one second of its rate up to 1048576, a quarter second of it when that is more, at least 262144",
     .apply = set_whole<&daemon_config::default_burst>,
     .show = show_number<&daemon_config::default_burst>},
    {.key = "rt_vps",
     .value_name = "N",
     .members = "rt_vps",
     .help = "virtual processors (real-time threads) that pace the paced streams (0: one per CPU)",
     .doc_default = "`1`",
     .doc = "virtual processors (real-time threads) of the rt scheduler that paces the paced streams; 0: one per online CPU (0..256)",
     .apply = set_whole<&daemon_config::rt_vps>,
     .show = show_number<&daemon_config::rt_vps>},
    {.key = "rt_max_density",
     .value_name = "X",
     .members = "rt_max_density",
     .help = "pacing admission: the density (CPU share) each rt VP may be loaded to, in (0, 1]",
     .doc_default = "`0.9`",
     .doc = "pacing admission: the density (share of a CPU promised to pacing ticks) each rt VP may be loaded to, in (0, 1] (see \"Pacing and admission\")",
     .apply = set_decimal<&daemon_config::rt_max_density>,
     .show = show_decimal<&daemon_config::rt_max_density>},
    {.key = "max_connections",
     .value_name = "N",
     .members = "max_connections",
     .help = "further connections are accepted and closed at once (503)",
     .doc_default = "`10000`",
     .doc = "further connections are accepted and closed at once (503)",
     .apply = set_whole<&daemon_config::max_connections, std::uint32_t>,
     .show = show_number<&daemon_config::max_connections>},
    {.key = "idle_timeout_ms",
     .value_name = "N",
     .members = "idle_timeout_ms",
     .help = "a keep-alive connection with no request is closed after this",
     .doc_default = "`60000`",
     .doc = "a keep-alive connection with no request is closed",
     .apply = set_whole<&daemon_config::idle_timeout_ms, std::uint32_t>,
     .show = show_number<&daemon_config::idle_timeout_ms>},
    {.key = "header_timeout_ms",
     .value_name = "N",
     .members = "header_timeout_ms",
     .help = "a request head must be complete within this time (408)",
     .doc_default = "`10000`",
     .doc = "a request head must be complete within this time (408)",
     .apply = set_whole<&daemon_config::header_timeout_ms, std::uint32_t>,
     .show = show_number<&daemon_config::header_timeout_ms>},
    {.key = "max_header_bytes",
     .value_name = "N",
     .members = "max_header_bytes",
     .help = "larger request heads get 431",
     .doc_default = "`16384`",
     .doc = "larger heads get 431",
     .apply = set_whole<&daemon_config::max_header_bytes>,
     .show = show_number<&daemon_config::max_header_bytes>},
    {.key = "max_request_line",
     .value_name = "N",
     .members = "max_request_line",
     .help = "longer request lines get 414",
     .doc_default = "`8192`",
     .doc = "longer request lines get 414",
     .apply = set_whole<&daemon_config::max_request_line>,
     .show = show_number<&daemon_config::max_request_line>},
    {.key = "directory_listing",
     .value_name = "",
     .members = "directory_listing",
     .help = "list directories (HTML) instead of refusing them (403)",
     .doc_default = "off",
     .doc = "list directories (HTML) instead of refusing them (403)",
     .apply = set_switch<&daemon_config::directory_listing>,
     .show = show_switch<&daemon_config::directory_listing>},
    {.key = "precompressed",
     .value_name = "",
     .members = "precompressed",
     .help = "serve F.br / F.gz for F to clients that accept br / gzip, when they exist (nginx's gzip_static)",
     .doc_default = "off",
     .doc = "a `GET` or `HEAD` of a file F from a client whose `Accept-Encoding` takes `br` (else `gzip`) gets the file F.br (F.gz) when it exists beside F, sent like any file, with `Content-Encoding`, F's `Content-Type`, its own `ETag` and ranges over its bytes; every file answer then carries `Vary: Accept-Encoding`; nothing is compressed on the fly (see \"Precompressed files\")",
     .apply = set_switch<&daemon_config::precompressed>,
     .show = show_switch<&daemon_config::precompressed>},
    {.key = "open_file_cache",
     .value_name = "N",
     .members = "open_file_cache",
     .help = "open files kept between requests, watched for changes (0: open each time; like nginx open_file_cache max=)",
     .doc_default = "`16384`",
     .doc = "files (up to 1 MiB) kept open between requests on the page-cache send paths (on the loan paths: those below `--direct-min-size`), watched with inotify so that a change is seen by the next request; the least recently used goes first; `0`: every request opens its file; capped to half the descriptor limit (see \"Open-file cache\")",
     .apply = set_whole<&daemon_config::open_file_cache>,
     .show = show_number<&daemon_config::open_file_cache>},
    {.key = "open_file_cache_valid_ms",
     .value_name = "N",
     .members = "open_file_cache_valid_ms",
     .help = "a kept file is opened anew after this long at the latest (changes inotify cannot see)",
     .doc_default = "`60000`",
     .doc = "a kept file is opened anew after this long at the latest, for the changes inotify does not report (through another hard link, through a shared mapping) (1..86400000)",
     .apply = set_whole<&daemon_config::open_file_cache_valid_ms>,
     .show = show_number<&daemon_config::open_file_cache_valid_ms>},
    {.key = "direct_min_size",
     .value_name = "BYTES",
     .members = "direct_min_size",
     .help = "on the loan send paths, smaller files go from the page cache by sendfile, as nginx's directio; SI suffixes as RATE (0: none)",
     .doc_default = "`1048576` (1 MiB)",
     .doc = "on the loan send paths (`send-zc`, `send`), a file smaller than this is sent from the page cache by `sendfile` (the direct provider clears O_DIRECT on that open file), as nginx's `directio SIZE` does: a small file would take a whole arena buffer and gain nothing from bypassing the page cache; larger files, and every range of them, go from the arena; `0`: every file from the arena (see \"Small files on the direct provider\")",
     .apply = set_rate<&daemon_config::direct_min_size>,
     .show = show_number<&daemon_config::direct_min_size>},
    {.key = "mime_types_file",
     .value_name = "FILE",
     .members = "mime_types_file",
     .help = "Content-Types of the extensions the built-in media table does not name, in mime.types format (\"\": the built-in table only)",
     .doc_default = "`/etc/mime.types`",
     .doc = "a file in mime.types format (a type, then its extensions, per line) giving the Content-Type of every extension the built-in table of media and web types does not name; the built-in table wins where both name one (`ts` stays `video/mp2t`); a file that cannot be read is logged and the built-in table serves alone; `\"\"`: the built-in table only (see \"Content types\")",
     .apply = set_text<&daemon_config::mime_types_file>,
     .show = show_text<&daemon_config::mime_types_file>},
    {.key = "cors_origins",
     .value_name = "ORIGINS",
     .members = "cors_origins",
     .help = "pages on these origins may read the files: * (any), or a comma-separated list such as https://a.example,https://b.example (none: off)",
     .doc_default = "none",
     .doc = "web pages on these origins may read the files (CORS, for players such as hls.js or dash.js on another site): `*` for any origin (public media), or a comma-separated list of origins (`scheme://host[:port]`, as the browser sends them); their `GET` and `HEAD` answers carry `Access-Control-Allow-Origin` and expose `Content-Range`, `Accept-Ranges`, `Content-Length`, and their preflight `OPTIONS` is answered `204`; `none` (or `\"\"`): no CORS header, `OPTIONS` gets 405 (see \"Pages on other origins\")",
     .apply = set_text<&daemon_config::cors_origins>,
     .show = show_or_none<&daemon_config::cors_origins>},
    {.key = "cache_control",
     .value_name = "RULES",
     .members = "cache_control",
     .help = "Cache-Control (and Expires) of served files by path: 'GLOB VALUE; ...', e.g. '*.m3u8 no-cache; *.ts max-age=31536000, immutable' (none: no such header)",
     .doc_default = "none",
     .doc = "caching headers of served files by path pattern, as nginx's `expires` per location: rules `GLOB VALUE` separated by `;`, the first whose glob (fnmatch, `*` spans folders, matched against `/` and the path) matches giving the file's `Cache-Control: VALUE`, and `Expires` when VALUE has a `max-age`; e.g. `*.m3u8 no-cache; *.ts max-age=31536000, immutable; * max-age=3600`; on 200, 206 and 304 answers to `GET` and `HEAD` of files; `none`: no such header (see \"Caching headers\")",
     .apply = set_text<&daemon_config::cache_control>,
     .show = show_or_none<&daemon_config::cache_control>},
    {.key = "grace_ms",
     .value_name = "N",
     .members = "",
     .own_reload = http::reload_rule::live,
     .help = "on SIGTERM/SIGINT: let streams finish this long, then cut them",
     .doc_default = "`5000`",
     .doc = "on SIGTERM/SIGINT: stop accepting, let streams finish this long, then cut them",
     .apply = set_whole<&daemon_config::grace_ms>,
     .show = show_number<&daemon_config::grace_ms>},
    {.key = "access_log",
     .value_name = "PATH",
     .members = "access_log",
     .help = "one line per response, when it ends: a file (reopened on SIGUSR1), stderr or off",
     .doc_default = "`stderr`",
     .doc = "the access log: one line per response, written when it ends; a file (appended to, reopened on `SIGUSR1`), `stderr` or `off` (`on`/`off` and TOML `true`/`false` still work: on is `stderr`). See \"Logs\"",
     .apply = set_access_log,
     .show = access_log_target},
    {.key = "writable",
     .value_name = "",
     .members = "writable",
     .help = "accept uploads (PUT) and DELETE; off: they get 405",
     .doc_default = "off",
     .doc = "accept uploads (`PUT`) and `DELETE` (see \"Uploads\"); off: 405",
     .apply = set_switch<&daemon_config::writable>,
     .show = show_switch<&daemon_config::writable>},
    {.key = "upload_token",
     .value_name = "TOKEN",
     .members = "upload_token",
     .help = "uploads and deletes need 'Authorization: Bearer TOKEN' (empty: none)",
     .doc_default = "none",
     .doc = "`PUT`/`DELETE` need `Authorization: Bearer TOKEN` (401 otherwise); prefer the TOML file to the flag, which `ps` shows",
     .apply = set_text<&daemon_config::upload_token>,
     .show = show_token<&daemon_config::upload_token>},
    {.key = "max_upload",
     .value_name = "BYTES",
     .members = "max_upload",
     .help = "larger upload bodies get 413; SI suffixes as RATE (default 4 GiB; 0: no limit)",
     .doc_default = "`4294967296` (4 GiB)",
     .doc = "larger bodies get 413 (SI suffixes as for RATE: `10G`); `0`: no limit (see \"Uploads\" for why 4 GiB)",
     .apply = set_rate<&daemon_config::max_upload>,
     .show = show_number<&daemon_config::max_upload>},
    {.key = "upload_windows",
     .value_name = "N",
     .members = "upload_windows",
     .help = "arena buffers of one upload written at once (1..64)",
     .doc_default = "`4`",
     .doc = "arena buffers of one upload being written while the next receives (1..64)",
     .apply = set_whole<&daemon_config::upload_windows, std::uint32_t>,
     .show = show_number<&daemon_config::upload_windows>},
    {.key = "durability",
     .value_name = "MODE",
     .members = "durability",
     .help = "upload: fsync each upload and its folder; batch: one syncfs per window",
     .doc_default = "`upload`",
     .doc = "`upload`: each upload is fsynced and its folder too before its answer; `batch`: the uploads finishing within the window share one `syncfs` before and one after their renames (see \"Uploads\")",
     .apply = set_durability,
     .show = show_durability},
    {.key = "durability_window_ms",
     .value_name = "N",
     .members = "durability_window",
     .help = "batch: how long a finished upload waits for others (1..1000)",
     .doc_default = "`5`",
     .doc = "`batch`: how long a finished upload waits for others (1..1000)",
     .apply = set_durability_window,
     .show = show_durability_window},
    {.key = "log_level",
     .value_name = "L",
     .members = "",
     .own_reload = http::reload_rule::live,
     .help = "trace, debug, info, warn, error, critical or off",
     .doc_default = "`info`",
     .doc = "`trace` … `off`",
     .apply = set_text<&daemon_config::log_level>,
     .show = show_text<&daemon_config::log_level>},
    {.key = "admin_listen",
     .value_name = "ADDR",
     .members = "admin admin_address admin_socket",
     .help = "/metrics, the status page and the control API: HOST:PORT, unix:/PATH or off",
     .doc_default = "`127.0.0.1:8081`",
     .doc = "the admin listener: `/metrics`, the status page and the control API, and nothing else (see \"Control plane\"). `HOST:PORT` (port 0: the kernel picks), `unix:/PATH` (a socket created with mode 0660 in an existing folder; a stale one is replaced; removed at exit) or `off`",
     .apply = set_admin_listen,
     .show = show_admin_listen},
    {.key = "admin_token",
     .value_name = "TOKEN",
     .members = "admin_token",
     .help = "admin requests need 'Authorization: Bearer TOKEN' (empty: none)",
     .doc_default = "none",
     .doc = "every admin request needs `Authorization: Bearer TOKEN` (401 otherwise; the status page also takes `?token=TOKEN`); prefer the TOML file to the flag, which `ps` shows",
     .apply = set_text<&daemon_config::admin_token>,
     .show = show_token<&daemon_config::admin_token>},
    {.key = "serve_dotfiles",
     .value_name = "",
     .members = "serve_dotfiles",
     .help = "serve, accept and list names starting with '.' (off: 404/403; .well-known always)",
     .doc_default = "off",
     .doc = "serve, accept (`PUT`/`DELETE`) and list names starting with `.`; off: 404 (403 to `PUT`), hidden from listings; `/.well-known/` is served either way (see \"Hostile input\")",
     .apply = set_switch<&daemon_config::serve_dotfiles>,
     .show = show_switch<&daemon_config::serve_dotfiles>},
    {.key = "insecure_writable",
     .value_name = "",
     .members = "",
     .own_reload = http::reload_rule::fixed,
     .help = "allow --writable without --upload-token on a non-loopback address (warned at every start)",
     .doc_default = "off",
     .doc = "let `--writable` without `--upload-token` listen on a non-loopback address (refused otherwise); logged as a warning at every start",
     .apply = set_switch<&daemon_config::insecure_writable>,
     .show = show_switch<&daemon_config::insecure_writable>},
    {.key = "max_uploads",
     .value_name = "N",
     .members = "max_uploads",
     .help = "uploads at once; more get 503 (0: auto, half the arena / (upload_windows + 1))",
     .doc_default = "`0` (auto)",
     .doc = "uploads in progress at once; more get 503 with `Retry-After`; auto: half the arena's buffers / (`upload_windows` + 1), at least 1; more than the arena holds is refused at start-up",
     .apply = set_whole<&daemon_config::max_uploads, std::uint32_t>,
     .show = show_number<&daemon_config::max_uploads>},
    {.key = "max_uploads_per_ip",
     .value_name = "N",
     .members = "max_uploads_per_ip",
     .help = "uploads at once from one client address; more get 503 (0: no cap)",
     .doc_default = "`4`",
     .doc = "uploads in progress at once from one client address; more get 503 with `Retry-After`; `0`: no cap",
     .apply = set_whole<&daemon_config::max_uploads_per_ip, std::uint32_t>,
     .show = show_number<&daemon_config::max_uploads_per_ip>},
    {.key = "upload_min_rate",
     .value_name = "RATE",
     .members = "upload_min_rate",
     .help = "an upload slower than this over a window is cut with 408 (0: none)",
     .doc_default = "`4096`",
     .doc = "an upload whose body averages less than this over a window is cut with 408; `0`: none (only `--idle-timeout-ms` between bytes)",
     .apply = set_rate<&daemon_config::upload_min_rate>,
     .show = show_number<&daemon_config::upload_min_rate>},
    {.key = "upload_rate_window_ms",
     .value_name = "N",
     .members = "upload_rate_window_ms",
     .help = "the window --upload-min-rate is averaged over (the first one is the grace)",
     .doc_default = "`10000`",
     .doc = "the window `--upload-min-rate` is averaged over, from the request head on; the first one is the grace (100..3600000)",
     .apply = set_whole<&daemon_config::upload_rate_window_ms, std::uint32_t>,
     .show = show_number<&daemon_config::upload_rate_window_ms>},
    {.key = "follow_uploads",
     .value_name = "WHO",
     .members = "follow_uploads",
     .help = "who may GET a file while it is uploaded: auto (token if set, else public), public, token, off",
     .doc_default = "`auto`",
     .doc = "who may `GET` a file while it is being uploaded: `public`, `token` (the upload token's bearer), `off`; `auto`: `token` when `--upload-token` is set, else `public`",
     .apply = set_follow_uploads,
     .show = show_follow_uploads},
    {.key = "send_timeout_ms",
     .value_name = "N",
     .members = "send_timeout_ms",
     .help = "a response whose client takes no byte for this long is cut (nginx send_timeout)",
     .doc_default = "`60000`",
     .doc = "a response (head or body) during which the client takes no byte for this long is cut (reset); plus 1 s, the accepted sockets' `TCP_USER_TIMEOUT` (see \"Limits and timeouts\")",
     .apply = set_whole<&daemon_config::send_timeout_ms, std::uint32_t>,
     .show = show_number<&daemon_config::send_timeout_ms>},
    {.key = "max_pause_ms",
     .value_name = "N",
     .members = "max_pause_ms",
     .help = "a stream paused for longer than this is cut",
     .doc_default = "`300000`",
     .doc = "a stream paused for longer than this is cut (see \"Limits and timeouts\")",
     .apply = set_whole<&daemon_config::max_pause_ms, std::uint32_t>,
     .show = show_number<&daemon_config::max_pause_ms>},
    {.key = "max_connections_per_ip",
     .value_name = "N",
     .members = "max_connections_per_ip",
     .help = "open connections one client address may hold; more get 503 and close (0: no limit)",
     .doc_default = "`512`",
     .doc = "open connections one client address may hold; more are answered 503 and closed (0: no limit; see \"Limits\")",
     .apply = set_whole<&daemon_config::max_connections_per_ip>,
     .show = show_number<&daemon_config::max_connections_per_ip>},
    {.key = "max_streams_per_ip",
     .value_name = "N",
     .members = "max_streams_per_ip",
     .help = "live streams (paced and unpaced) one client address may hold; more get 503 (0: no limit)",
     .doc_default = "`256`",
     .doc = "live streams (paced and unpaced) one client address may hold; more get 503 with `Retry-After: 1` (0: no limit)",
     .apply = set_whole<&daemon_config::max_streams_per_ip>,
     .show = show_number<&daemon_config::max_streams_per_ip>},
    {.key = "max_rate_per_ip",
     .value_name = "RATE",
     .members = "max_rate_per_ip",
     .help = "sum of the paced rates one client address may hold; more get 503 (0: no limit)",
     .doc_default = "`0` (none)",
     .doc = "sum of the paced rates one client address may hold; a stream that would pass it gets 503 with `Retry-After: 1`",
     .apply = set_rate<&daemon_config::max_rate_per_ip>,
     .show = show_number<&daemon_config::max_rate_per_ip>},
    {.key = "access_log_format",
     .value_name = "F",
     .members = "access_format",
     .help = "combined (nginx's, then \"Range\" and the duration) or json",
     .doc_default = "`combined`",
     .doc = "`combined` (nginx's, then `\"Range\"` and the duration) or `json` (see \"Logs\")",
     .apply = set_access_log_format,
     .show = show_access_log_format},
    {.key = "log_file",
     .value_name = "PATH",
     .members = "",
     .own_reload = http::reload_rule::live,
     .help = "the daemon log: a file (reopened on SIGUSR1) or stderr (the journal's priorities under systemd)",
     .doc_default = "`stderr`",
     .doc = "the daemon log: a file (appended to, reopened on `SIGUSR1`) or `stderr`; on stderr under systemd each line carries its journal priority (see \"Logs\")",
     .apply = set_text<&daemon_config::log_file>,
     .show = show_text<&daemon_config::log_file>},
});

constexpr auto modes = std::to_array<mode_spec>({
    {.flag = "--check-config",
     .help = "read and check the configuration (the --config file and the flags), print 'configuration ok' or the errors with FILE:LINE:COLUMN, and exit (0: ok, 2: errors) without starting",
     .doc = "read and check the configuration (the `--config` file and the flags given), print `datapumpd: configuration ok` on stdout and exit 0, or the problems on stderr (a file's with `FILE:LINE:COLUMN`) and exit 2; never starts the daemon (like `nginx -t`)"},
    {.flag = "--print-config-template",
     .help = "print a TOML file with every key commented out, with its default and help, and exit",
     .doc = "print a TOML file with every key commented out (`#key = default`) under its help line, and exit 0; from the same table as `--help`, so the two cannot drift (the packaged `/etc/datapump/datapumpd.toml` is made with it)"},
});
// clang-format on

}  // namespace

std::span<const option_spec> option_table() {
    return options;
}

std::span<const mode_spec> mode_table() {
    return modes;
}

const option_spec* find_option(std::string_view key) {
    const auto* it = std::find_if(options.begin(), options.end(), [&](const option_spec& o) { return o.key == key; });
    return it == options.end() ? nullptr : it;
}

std::string flag_name(std::string_view key) {
    std::string flag = "--";
    for (const char c : key) {
        flag += c == '_' ? '-' : c;
    }
    return flag;
}

http::reload_rule reload_rule_of(const option_spec& row) {
    if (row.members.empty()) {
        return row.own_reload;
    }
    // The strictest rule among the members the row sets: fixed over fixed_when_writable over live.
    const auto strictness = [](http::reload_rule r) {
        return r == http::reload_rule::fixed ? 2 : r == http::reload_rule::fixed_when_writable ? 1 : 0;
    };
    http::reload_rule rule = http::reload_rule::live;
    for (const http::setting_rule& s : http::setting_rules()) {
        std::string_view rest = row.members;
        while (!rest.empty()) {
            const std::size_t space = rest.find(' ');
            const std::string_view member = rest.substr(0, space);
            rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
            if (member == s.member && strictness(s.reload) > strictness(rule)) {
                rule = s.reload;
            }
        }
    }
    return rule;
}

}  // namespace detail
}  // namespace datapump::daemon
