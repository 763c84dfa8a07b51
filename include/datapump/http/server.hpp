// File: datapump/http/server.hpp
//
// The HTTP/1.1 streaming server that datapumpd runs (docs/daemon.md is its user contract).
//
//   server ──owns──> registry + provider instance (posix or direct) + file_cache (the arena)
//          ──owns──> N loop threads: io::event_loop, a SO_REUSEPORT listening socket per public
//                    address, connections; loop 0 also owns the admin listener (if any)
//          ──owns──> stream_table (live streams, VCR), admission, counters
//          ──owns──> rt::system (its VPs tick the paced streams: stream::rt_pacing)
//
// A connection belongs to the loop that accepted it, for life. Its bytes move by the send path
// chosen at start: sendfile (page cache -> socket), send_zc (arena loans -> SEND_ZC from fixed
// buffers, pinned until the notification), send (arena loans, copied by the kernel).
//
// Signals: start() sets SIGPIPE to SIG_IGN when it is at its default (sendfile() cannot be told
// not to raise it); a handler the program installed is left alone.
//
// Thread-safety: start() and shutdown() from one controlling thread; the views, port() and the
// stream controls from any thread.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/http/views.hpp"
#include "datapump/ingest/publisher.hpp"
#include "datapump/stream/send_path.hpp"
#include "datapump/stream/stream_table.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::http {

// How response bodies reach the socket (docs/daemon.md, "Inside"; the stream engine's paths,
// datapump/stream/send_path.hpp). `automatic` lets start() pick from the provider: sendfile for
// posix, send_zc for direct.
using send_path = stream::send_path;
// The name in logs, metrics and the status page ("auto", "sendfile", "splice", "send_zc", "send").
[[nodiscard]] const char* to_string(send_path p);
// The configuration's spelling ("auto", "sendfile", "splice", "send-zc", "send"), and its parser
// (which takes "send_zc" too); nullopt for anything else. The strings are static.
[[nodiscard]] std::string_view option_name(send_path p);
[[nodiscard]] std::optional<send_path> parse_send_path(std::string_view text);

// The burst of a paced stream when neither the request nor the configuration names one: one
// second of its rate up to 1 MiB, a quarter second of it above 4 MiB/s, and at least 256 KiB. The
// burst is also the piece a paced stream sends at once (one rt tick each, stream::rt_piece), and
// each piece costs a VP wake-up, a wake-up of the stream's loop and a send, so the piece is at
// least 1 MiB wherever the rate allows one a second: 1000 streams at 1 MB/s cost 2.23x nginx's
// CPU per byte with a quarter second (262,144 B), 1.37x with one second, nginx's own `limit_rate`
// allowance (docs/benchmarks.md, "Many paced viewers"). Above 4 MiB/s a quarter second is more
// than 1 MiB and keeps the start-up burst a quarter of a second.
[[nodiscard]] constexpr std::uint64_t auto_burst(std::uint64_t rate) {
    constexpr std::uint64_t mib = std::uint64_t{1} << 20;
    constexpr std::uint64_t floor = 262144;
    const std::uint64_t second = rate < mib ? rate : mib;
    const std::uint64_t quarter = rate / 4;
    const std::uint64_t most = second > quarter ? second : quarter;
    return most > floor ? most : floor;
}

// An IP address and port to listen on: IPv4, or IPv6 with or without brackets; port 0: the
// kernel picks.
struct listen_address {
    std::string host;
    std::uint16_t port = 0;
};

// Where the admin listener is (docs/daemon.md, "Control plane").
enum class admin_kind : std::uint8_t { off, tcp, unix_socket };

// Who may GET a file while it is being uploaded (load-and-play; docs/daemon.md "Uploads"). Not
// allowed: the GET is answered as if no upload ran (the previous version, or 404).
enum class follow_policy : std::uint8_t {
    public_,    // anyone who may GET the file
    token,      // only a request with the upload token (Authorization: Bearer)
    off,        // nobody
    automatic,  // token while an upload token is set, else public_ (decided per request, so a
                // reload that sets or drops the token moves it along)
};
// The configuration's spelling: "public", "token", "off", "auto"; and its parser (nullopt for
// anything else). The strings are static.
[[nodiscard]] std::string_view to_string(follow_policy p);
[[nodiscard]] std::optional<follow_policy> parse_follow_policy(std::string_view text);

// logs: the access log's line format (docs/daemon.md, "Logs").
//   combined:  nginx's combined format, then two fields goaccess's COMBINED and fail2ban's
//              filters ignore: "RANGE" (the Range header, "-" when none) and the duration in
//              seconds (3 decimals, nginx's $request_time):
//     127.0.0.1 - - [07/Dec/2026:03:14:15 +0000] "GET /a.bin HTTP/1.1" 206 100 "REFERER" "AGENT" "bytes=0-99" 0.004
//   json:      one object per line: time (ISO 8601 with offset), remote_addr, method, target,
//              protocol, status, body_bytes_sent, referer, user_agent, range, duration_s,
//              first_byte_s (null when no byte was sent), completed (false: cut short).
enum class access_log_format : std::uint8_t { combined, json };
// "combined", "json"; and the parser (nullopt for anything else). The strings are static.
[[nodiscard]] std::string_view to_string(access_log_format f);
[[nodiscard]] std::optional<access_log_format> parse_access_log_format(std::string_view text);

// Huge pages for the cache's arena (buffer::arena_config::huge_pages; docs/daemon.md, "Huge
// pages"), as PostgreSQL's `huge_pages`: off (a memfd in small pages), try (transparent huge
// pages where the kernel gives them, small pages where not), on (start only if the whole arena
// got huge pages).
enum class huge_pages : std::uint8_t { off, try_, on };
// "off", "try", "on"; and the parser (nullopt for anything else). The strings are static.
[[nodiscard]] std::string_view to_string(huge_pages h);
[[nodiscard]] std::optional<huge_pages> parse_huge_pages(std::string_view text);

// conf: the server's settings, in one struct that library users and datapumpd share (datapumpd's
// daemon_config derives from it and adds only what the daemon alone has; its option table, in
// src/daemon/config/options.cpp, maps flags and TOML keys onto these members). The defaults here
// are a library user's; where datapumpd's differ (loops, admin, follow_uploads) its
// daemon_config constructor says so, in one place. What a reload may change is setting_rules().
struct server_config {
    std::string root = ".";
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 8080;  // 0: the kernel picks (see server::port())
    unsigned loops = 1;
    std::string provider = "posix";
    send_path path = send_path::automatic;
    std::uint32_t cache_mib = 256;
    std::uint32_t buffer_kib = 256;
    http::huge_pages huge_pages = http::huge_pages::try_;
    std::uint64_t capacity = 0;
    std::uint64_t default_rate = 0;
    std::uint64_t max_rate = 0;
    // Token-bucket depth of a paced stream that asks for none; 0: auto_burst(rate).
    std::uint64_t default_burst = 0;
    // The rt system paced streams run on (docs/daemon.md, "Pacing and admission"): its virtual
    // processors (0: one per online CPU) and the density each may be loaded to (admission).
    unsigned rt_vps = 1;
    double rt_max_density = 0.9;
    std::uint64_t max_connections = 10000;
    std::uint64_t idle_timeout_ms = 60000;
    std::uint64_t header_timeout_ms = 10000;
    std::uint32_t max_header_bytes = 16384;
    std::uint32_t max_request_line = 8192;
    bool directory_listing = false;
    // Precompressed siblings (docs/daemon.md, "Precompressed files"; nginx's gzip_static): a GET or
    // HEAD of F from a client that accepts br (gzip) gets F.br (F.gz) when it exists, with
    // Content-Encoding and F's Content-Type; every file answer then carries Vary: Accept-Encoding.
    bool precompressed = false;
    // Open files kept between requests (fs::open_cache; docs/daemon.md, "Open-file cache"): at
    // most this many (0: none, every request opens its file), each opened anew after
    // open_file_cache_valid_ms at the latest. Capped at start to half the descriptor limit.
    std::uint64_t open_file_cache = 16384;
    std::uint64_t open_file_cache_valid_ms = 60000;
    // On the loan send paths (send_zc, send): a file smaller than this goes from the page cache by
    // sendfile when the provider can give a page-cache descriptor (the direct provider clears
    // O_DIRECT on that open file); nginx's `directio`. 0: every file by the loan path (a library
    // user's default; datapumpd's is 1 MiB, daemon_config).
    std::uint64_t direct_min_size = 0;
    // A mime.types file (type, then its extensions, per line) for the extensions the built-in
    // media table does not name (http::mime_types); empty: the built-in table only (a library
    // user's default; datapumpd's is /etc/mime.types, from Debian's media-types). A file that
    // cannot be read is logged and the built-in table serves alone.
    std::string mime_types_file;
    // Browsers on other origins (CORS; docs/daemon.md, "Pages on other origins"): "*" (any page
    // may read the files: public media), a comma-separated list of origins
    // ("https://player.example.com,http://localhost:3000"), or empty or "none" (off: no CORS header, an
    // OPTIONS gets 405). For GET, HEAD and their preflight OPTIONS on the public listeners.
    std::string cors_origins;
    // Caching headers of served files (docs/daemon.md, "Caching headers"): rules "PATTERN VALUE"
    // separated by ';' (http::parse_cache_rules), the first whose glob matches the path giving
    // Cache-Control (and Expires for a max-age); empty or "none": no rule (no such header).
    std::string cache_control;
    bool access_log = true;
    // Uploads (docs/daemon.md, "Uploads"): PUT and DELETE are refused (405) unless writable.
    bool writable = false;
    std::string upload_token;       // non-empty: PUT/DELETE need "Authorization: Bearer TOKEN"
    std::uint64_t max_upload = std::uint64_t{4} << 30;  // bytes; larger bodies get 413; 0: no limit
    unsigned upload_windows = 4;    // arena buffers of one upload being written at once
    // How a finished upload becomes durable (ingest::publisher): fsync per upload, or batched
    // (one syncfs for the uploads finishing within durability_window).
    ingest::durability durability = ingest::durability::per_upload;
    std::chrono::microseconds durability_window{5000};
    // private control plane (docs/daemon.md, "Control plane"): further public addresses (every
    // loop listens on each, as on listen_host:listen_port), and the admin listener, the only one
    // that serves /metrics, the status page and the control API. Off unless asked for: an
    // embedding program opts in (datapumpd's default is tcp 127.0.0.1:8081).
    std::vector<listen_address> more_listen;
    admin_kind admin = admin_kind::off;
    listen_address admin_address;  // admin == tcp
    std::string admin_socket;      // admin == unix_socket: the path (mode 0660, removed at shutdown)
    std::string admin_token;       // non-empty: every admin request needs "Authorization: Bearer TOKEN"
    // hostile network: framing and paths
    // Paths with a component starting with '.' (but a leading .well-known) are refused (GET/HEAD/
    // DELETE 404, PUT 403) and left out of listings unless this is set (docs/daemon.md).
    bool serve_dotfiles = false;
    // hostile network: uploads (docs/daemon.md "Uploads"). Over a cap: 503 with Retry-After,
    // before the body is read.
    unsigned max_uploads = 0;         // at once; 0: auto, half the arena's buffers / (upload_windows + 1)
    unsigned max_uploads_per_ip = 4;  // at once from one client address; 0: no cap
    // An upload must average this many B/s over every window from its head on (its first window
    // is its grace), else it is cut with 408; 0: no minimum (idle_timeout_ms between bytes only).
    std::uint64_t upload_min_rate = 4096;
    std::uint64_t upload_rate_window_ms = 10000;
    follow_policy follow_uploads = follow_policy::public_;
    // hostile network: nothing held forever (docs/daemon.md, "Limits and timeouts")
    // A response during which the socket takes no byte for this long is cut (nginx send_timeout).
    std::uint64_t send_timeout_ms = 60000;
    // A stream paused longer than this is cut.
    std::uint64_t max_pause_ms = 300000;
    // A paced stream whose client took no byte for this long (at most half the send timeout)
    // gives back its capacity reservation and its rt connection until the socket drains again.
    std::uint64_t stall_release_ms = 2000;
    // hostile network: accept back-off and per-client-address limits (docs/daemon.md, "Limits").
    // 0 in a per-IP limit: none of that kind.
    std::uint64_t max_connections_per_ip = 512;
    std::uint64_t max_streams_per_ip = 256;
    std::uint64_t max_rate_per_ip = 0;              // sum of the paced rates of one address, B/s
    std::chrono::milliseconds accept_pause{250};    // no accept on a loop after it failed (EMFILE...)
    std::chrono::milliseconds accept_log_every{10000};
    // logs: the access log (when access_log is set): one line per response, when it ends (its
    // last byte sent, or cut), with the body bytes actually sent. `access_sink` gets each line
    // (without a newline) on the loop thread, so it must not block: datapumpd's hands it to an
    // asynchronous logger. Empty: the line goes to spdlog's default logger at level info.
    access_log_format access_format = access_log_format::combined;
    std::function<void(std::string_view line)> access_sink;
    // pkg: socket activation
    // Listening sockets the process inherited (systemd's LISTEN_FDS; docs/daemon.md, "As a
    // service"): a public address with a non-zero port whose family, host and port equal one's
    // bound address is served on it (each loop accepts on its own duplicate) instead of on a socket
    // bound anew, so that a restart keeps the socket and the connections queued on it. The server
    // duplicates what it uses; the caller keeps (and closes) these descriptors.
    std::vector<int> inherited_listeners;
};

// conf: what a reload (server::reconfigure) may change, as one attribute of each member of
// server_config. The server keeps the fixed ones as started (keep_fixed); datapumpd's reload plan
// reads the same rules to tell the operator which changed keys need a restart.
enum class reload_rule : std::uint8_t {
    live,                 // applies to requests that start after the reload
    fixed,                // made at start (threads, sockets, memory): kept as started
    fixed_when_writable,  // root: live, but kept on a writable server (uploads live in it)
};
struct setting_rule {
    std::string_view member;  // the member's name in server_config
    reload_rule reload;
    // false for what the embedding program sets or tunes, not the operator (the access sink,
    // inherited sockets, the accept back-off, the stall release): datapumpd has no option for those.
    bool user_setting;
};
// One rule per member of server_config, in declaration order (a static_assert in settings.cpp
// fails the build when a member has none). The span is static.
[[nodiscard]] std::span<const setting_rule> setting_rules();
// `next` with `started`'s values for every member that a reload may not change, by
// setting_rules(): the configuration a server started with `started` runs after reconfigure(next).
[[nodiscard]] server_config keep_fixed(server_config next, const server_config& started);

// The descriptors a server with `config` may hold at once (docs/daemon.md, "Limits"): per
// connection its socket and the file it streams (plus a pipe pair on the splice path), per loop
// its ring, eventfd, listener and spare descriptor, and a fixed 64 for the rest (the root, the
// cache's and publisher's threads, rt's eventfds, logging, uploads' temp files beyond their
// connection). The daemon warns at start-up when RLIMIT_NOFILE is below it.
[[nodiscard]] std::uint64_t descriptors_needed(const server_config& config);

class server {
public:
    // Builds the cache and provider, binds the listening sockets and starts the loops.
    // Errors: invalid_argument (bad address, unknown provider or send path for it), not_found /
    // not_regular_file (root), unsupported (no io_uring), io_error (bind: sys = errno), and those
    // of the cache and the provider.
    [[nodiscard]] static result<std::unique_ptr<server>> start(const server_config& config);

    server(const server&) = delete;
    server& operator=(const server&) = delete;
    ~server();  // shutdown(0) if still running

    // The bound port (the kernel's choice when the config said 0) of the first public address.
    [[nodiscard]] std::uint16_t port() const;
    // The bound ports of every public address, in the config's order (listen, then more_listen).
    [[nodiscard]] std::vector<std::uint16_t> ports() const;
    // The admin listener's bound port; 0 when it is off or on a unix socket.
    [[nodiscard]] std::uint16_t admin_port() const;
    // The send path in use (never `automatic`).
    [[nodiscard]] send_path path() const;

    // Stops accepting, closes idle connections, lets responses in progress run for `grace`, then
    // cuts the rest and joins the loops. Returns the number of streams cut. Idempotent.
    std::size_t shutdown(std::chrono::milliseconds grace);

    // conf: a reload (docs/daemon.md, "Reload"). `next`'s settings apply to requests that start
    // from now on: rates, burst, capacity, tokens, timeouts, limits (per address too), uploads'
    // bounds, listing, dotfiles, the access log switch, and the root unless the server is
    // writable; max_header_bytes and max_request_line to connections accepted from now on. A
    // response in progress keeps the settings (and the root) it started with to its end (its
    // rate, its timeouts), so a live stream goes on byte for byte. The settings made at start
    // stay as started and `next`'s values for them are ignored (keep_fixed, by setting_rules()):
    // listen addresses, loops, provider, send path, cache and buffer sizes, rt, writable (and then
    // the root), the upload windows, max_uploads, durability, the admin listener (not its token).
    // Returns once every loop has the new settings. Errors (nothing is applied): those of the
    // provider's instantiation and open() on a new root. Call from the controlling thread; after
    // shutdown() it does nothing.
    [[nodiscard]] result<void> reconfigure(const server_config& next);

    [[nodiscard]] server_view view() const;
    [[nodiscard]] std::vector<stream_view> streams() const;
    // The live streams, for VCR control from the library (any thread, while the server lives).
    // A control taken from it may be kept past shutdown(): it then reads `ending` and its kick
    // does nothing.
    [[nodiscard]] stream::stream_table& streams_table();

    struct DATAPUMP_INTERNAL state;

private:
    explicit server(std::unique_ptr<state> s);
    std::unique_ptr<state> state_;
};

}  // namespace datapump::http
DATAPUMP_API_END
