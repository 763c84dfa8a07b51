// The router: what the daemon answers to one parsed request (docs/daemon.md, "What it serves").
// Files under the root, /metrics, and the control API and status page under /_datapump/.
#include "connection.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/http/proto/log_escape.hpp"
#include "datapump/http/proto/accept_encoding.hpp"
#include "datapump/http/proto/cache_rules.hpp"
#include "datapump/http/proto/cors.hpp"
#include "datapump/http/proto/mime.hpp"
#include "datapump/http/proto/path.hpp"
#include "datapump/http/proto/query.hpp"
#include "datapump/http/proto/range.hpp"
#include "datapump/http/proto/response_head.hpp"
#include "datapump/http/proto/validators.hpp"
#include "datapump/ingest/upload_names.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <functional>
#include <array>
#include <optional>
#include <variant>

namespace datapump::http {

namespace {

constexpr std::string_view reserved_prefix = "/_datapump";
// Where a stream's capability is used on the public listener: this, then 32 hex digits.
constexpr std::string_view stream_capability_prefix = "/_datapump/streams/";
constexpr std::string_view stream_capability_root = "_datapump/streams/";  // the same, decoded and relative
constexpr std::string_view control_root = "_datapump";  // reserved_prefix, as a decoded relative path
constexpr std::string_view metrics_path = "metrics";

// A request's path decoded and normalised once (decode_path): routing, file answers, uploads and
// deletes all compare and open this same string, so no spelling of a name (`/%6detrics`,
// `//_datapump/`, `/./metrics`) can mean one thing to the router and another to the file layer.
struct target_path {
    std::string relative;    // relative to the root: "" for the root, never a leading '/'
    bool directory = false;  // the raw path ends with '/': a folder is asked for
    bool dotted = false;     // a component starts with '.' (a leading ".well-known" excepted)
};

bool is_control_path(std::string_view relative) {
    return relative == control_root ||
           (relative.starts_with(control_root) && relative.substr(control_root.size()).starts_with('/'));
}

// Names no client may create or delete, however spelled: the endpoints (which shadow files of
// those names) and upload temp files.
bool is_reserved(std::string_view relative) {
    return relative == metrics_path || is_control_path(relative) || ingest::is_temp_name(relative);
}

// True when a component of `relative` starts with '.' (.git, .env, .htpasswd, upload temp files),
// except ".well-known" at the root (RFC 8615: ACME challenges, security.txt), served as nginx
// users expect.
bool has_dot_component(std::string_view relative) {
    if (relative == ".well-known" || relative.starts_with(".well-known/")) {
        relative.remove_prefix(std::string_view(".well-known").size());
    }
    for (std::size_t at = 0; at < relative.size();) {
        if (relative[at] == '.') {
            return true;
        }
        const std::size_t slash = relative.find('/', at);
        if (slash == std::string_view::npos) {
            break;
        }
        at = slash + 1;
    }
    return false;
}

result<target_path> resolve_target(const request& req) {
    auto relative = decode_path(req.path);
    if (!relative) {
        return std::unexpected(relative.error());
    }
    target_path t;
    t.directory = req.path.ends_with('/');
    t.dotted = has_dot_component(*relative);
    t.relative = std::move(*relative);
    return t;
}

// The status for a path decode_path refused: 403 for a step out of the root, 414 for a name or
// path longer than the file system takes, 400 for the rest (bad escapes, %2F, NUL, backslash).
int refusal_status(const error& why) {
    switch (why.code) {
        case errc::escapes_root: return 403;
        case errc::out_of_range: return 414;
        default: return 400;
    }
}

// The headers every answer carries.
void common_headers(response_head& h, bool close) {
    h.add("Server", "datapump");
    h.add_date(static_cast<std::int64_t>(std::time(nullptr)));
    h.add("Connection", close ? "close" : "keep-alive");
}

// A header some answers add (Allow on 405, Retry-After on 503); empty name: none.
struct extra_header {
    std::string_view name;
    std::string_view value;
};

response_plan memory_response(int status, std::string_view content_type, std::string body, bool close,
                              bool head_only = false, extra_header extra = {}) {
    response_head h(status);
    common_headers(h, close);
    h.add("Content-Type", content_type);
    h.add("Content-Length", body.size());
    h.add("Cache-Control", "no-store");
    if (!extra.name.empty()) {
        h.add(extra.name, extra.value);
    }
    response_plan plan;
    plan.status = status;
    plan.head = std::move(h).finish();
    if (!head_only) {
        plan.body = std::move(body);
    }
    plan.close_after = close;
    return plan;
}

std::string error_body(int status, std::string_view detail) {
    std::string body = std::to_string(status) + " " + std::string(reason_phrase(status));
    if (!detail.empty()) {
        body += ": ";
        body += detail;
    }
    body += "\n";
    return body;
}

response_plan redirect(std::string_view location, bool close) {
    response_head h(301);
    common_headers(h, close);
    h.add("Location", location);
    h.add("Content-Length", "0");
    response_plan plan;
    plan.status = 301;
    plan.head = std::move(h).finish();
    plan.close_after = close;
    return plan;
}

response_plan json_response(int status, std::string body, bool close) {
    return memory_response(status, "application/json", std::move(body), close);
}

bool is_get_or_head(const request& req) { return req.verb == method::get || req.verb == method::head; }

// What a browser may send to another site from a page (a form, fetch): all but the safe methods.
bool changes_state(const request& req) {
    return req.verb != method::get && req.verb != method::head && req.verb != method::options;
}

std::string lowercase(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// A request whose Origin (or Sec-Fetch-Site) names another site than its Host is a page of that
// site acting through a visitor's browser (CSRF). No Origin: not a browser's cross-site request
// (curl, scripts) and allowed. The origin's default port (80, 443) is the same as none.
bool same_origin(const request& req) {
    if (const std::string* site = req.header("sec-fetch-site"); site != nullptr && lowercase(*site) == "cross-site") {
        return false;
    }
    const std::string* origin = req.header("origin");
    if (origin == nullptr) {
        return true;
    }
    const std::string* host_header = req.header("host");
    if (host_header == nullptr) {
        return false;
    }
    const std::string text = lowercase(*origin);
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string::npos) {
        return false;  // "null" (a sandboxed or file: page) or garbage
    }
    const std::string_view scheme = std::string_view(text).substr(0, scheme_end);
    std::string_view authority = std::string_view(text).substr(scheme_end + 3);
    authority = authority.substr(0, authority.find('/'));
    std::string host = lowercase(*host_header);
    const auto strip_default = [&](std::string_view a) {
        const std::string_view port = scheme == "https" ? ":443" : scheme == "http" ? ":80" : "";
        return !port.empty() && a.ends_with(port) ? a.substr(0, a.size() - port.size()) : a;
    };
    return !authority.empty() && strip_default(authority) == strip_default(host);
}

// The admin token, when one is set: "Authorization: Bearer TOKEN" on every admin request (what
// Prometheus' scrape config sends), or ?token=TOKEN on the status page itself, whose script then
// sends it as the header on its API calls.
bool admin_authorized(const server_config& cfg, const request& req) {
    const std::string& token = cfg.admin_token;
    if (token.empty() || bearer_matches(req.header("authorization"), token)) {
        return true;
    }
    const bool page = req.path == std::string(reserved_prefix) + "/" || req.path == std::string(reserved_prefix) + "/index.html";
    if (page && is_get_or_head(req)) {
        if (const auto given = query_param(req.query, "token")) {
            const std::string as_header = "Bearer " + *given;
            return bearer_matches(&as_header, token);
        }
    }
    return false;
}

// DNS rebinding: a page of evil.example whose name is made to resolve to 127.0.0.1 reaches the
// admin listener as its own origin (so the Origin check passes) and with its own name in Host.
// Without a token, the admin TCP listener answers only Host: localhost or an IP address, which
// no rebinding page can send (the Prometheus, Jupyter and Docker guard).
bool local_host_header(const request& req) {
    const std::string* header = req.header("host");
    if (header == nullptr) {
        return false;
    }
    const std::string host = lowercase(*header);
    if (host.starts_with('[')) {
        return host.find(']') != std::string::npos;  // an IPv6 literal
    }
    const std::string name = host.substr(0, host.rfind(':'));
    in_addr v4{};
    return name == "localhost" || ::inet_pton(AF_INET, name.c_str(), &v4) == 1;
}

response_plan method_not_allowed(std::string_view allow, bool close) {
    return memory_response(405, "text/plain; charset=utf-8", error_body(405, "method not allowed"), close, false,
                           {"Allow", allow});
}

// Opens a directory beneath the root, refusing what leaves it (the same rule as files).
int open_directory(int root_fd, const std::string& relative) {
    open_how how{};
    how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    const char* path = relative.empty() ? "." : relative.c_str();
    return static_cast<int>(::syscall(SYS_openat2, root_fd, path, &how, sizeof how));
}

response_plan directory_response(int root_fd, const server_config& cfg, const request& req, const std::string& relative,
                                 bool close) {
    if (!cfg.directory_listing) {
        return error_response(403, "directory listing is off", close);
    }
    if (req.path.empty() || req.path.back() != '/') {
        return redirect(req.path + "/", close);
    }
    const bool show_dotted = cfg.serve_dotfiles;
    const int fd = open_directory(root_fd, relative);
    if (fd < 0) {
        const int status = errno == ENOENT ? 404 : (errno == ENAMETOOLONG ? 414 : 403);
        return error_response(status, "the directory cannot be opened", close);
    }
    DIR* dir = ::fdopendir(fd);
    if (dir == nullptr) {
        ::close(fd);
        return error_response(500, "the directory cannot be read", close);
    }
    std::vector<std::pair<std::string, std::uint64_t>> entries;
    // readdir is safe here: this thread owns `dir` (the tidy check is about sharing one DIR).
    while (const dirent* e = ::readdir(dir)) {  // NOLINT(concurrency-mt-unsafe)
        const std::string name = e->d_name;
        if (name == "." || name == ".." || ingest::is_temp_name(name)) {
            continue;  // an upload's temp file is nobody's file yet
        }
        if (name.starts_with('.') && !show_dotted) {
            continue;  // dot-files are hidden unless served (nginx's autoindex hides them too)
        }
        struct stat st {};
        if (::fstatat(::dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            entries.emplace_back(name + "/", 0);
        } else if (S_ISREG(st.st_mode)) {
            entries.emplace_back(name, static_cast<std::uint64_t>(st.st_size));
        }
    }
    ::closedir(dir);
    std::sort(entries.begin(), entries.end());
    return memory_response(200, "text/html; charset=utf-8", directory_listing_html(req.path, entries), close,
                           req.verb == method::head);
}

// A request's value for `name`: the query parameter, else the header `header`, else none.
std::optional<std::string> param_or_header(const request& req, std::string_view name, std::string_view header) {
    if (auto value = query_param(req.query, name)) {
        return value;
    }
    if (const std::string* h = req.header(header)) {
        return *h;
    }
    return std::nullopt;
}

// The rate and burst a request asks for: query parameter first, then header, then the default.
result<std::pair<std::uint64_t, std::uint64_t>> requested_qos(const server_config& cfg, const request& req) {
    std::uint64_t rate = cfg.default_rate;
    std::uint64_t burst = cfg.default_burst;
    if (const auto text = param_or_header(req, "rate", "x-datapump-rate")) {
        auto r = parse_rate(*text);
        if (!r) {
            return std::unexpected(r.error());
        }
        rate = *r;
    }
    if (const auto btext = param_or_header(req, "burst", "x-datapump-burst")) {
        auto b = parse_rate(*btext);
        if (!b || *b == 0) {
            return fail(errc::invalid_argument, "burst must be a positive number of bytes");
        }
        burst = *b;
    }
    if (cfg.max_rate != 0 && (rate == 0 || rate > cfg.max_rate)) {
        rate = cfg.max_rate;
    }
    if (burst == 0) {
        burst = auto_burst(rate);
    }
    return std::pair{rate, burst};
}

// A GET of a file while it is uploaded (load-and-play): what has arrived, then the rest as it
// arrives. The length is the upload's Content-Length, else the answer is chunked (HTTP/1.1) or
// ends with the connection (HTTP/1.0). Ranges and validators do not apply: there is no version
// of the file yet to name.
response_plan follow_response(const request& req, const std::string& relative, const mime_types& mime,
                              std::shared_ptr<upload_entry> upload, bool close) {
    const bool http11 = req.version_major == 1 && req.version_minor >= 1;
    const auto length = upload->length();
    response_plan plan;
    plan.status = 200;
    plan.close_after = close || (!length && !http11);
    response_head h(200);
    common_headers(h, plan.close_after);
    h.add("Content-Type", mime.lookup(relative));
    h.add("Cache-Control", "no-store");
    h.add("X-Datapump-Upload", "in-progress");
    if (length) {
        h.add("Content-Length", *length);
    } else if (http11) {
        h.add("Transfer-Encoding", "chunked");
        plan.follow_chunked = true;
    }
    plan.head = std::move(h).finish();
    if (req.verb == method::head || (length && *length == 0)) {
        return plan;
    }
    plan.follow = std::move(upload);
    return plan;
}

// The upload of `relative` this GET may follow, or null: none runs, or --follow-uploads keeps it
// from this request, which is then answered as if no upload ran (the previous version, or 404):
// a stranger learns nothing of an upload in progress, not even that one runs.
std::shared_ptr<upload_entry> followable_upload(const server::state& s, const server_config& cfg, const request& req,
                                                const std::string& relative) {
    const follow_policy policy = cfg.follow_uploads != follow_policy::automatic ? cfg.follow_uploads
                                 : cfg.upload_token.empty()                  ? follow_policy::public_
                                                                             : follow_policy::token;
    switch (policy) {
        case follow_policy::automatic:  // resolved above
        case follow_policy::off:
            return nullptr;
        case follow_policy::token:
            if (cfg.upload_token.empty() ||
                !bearer_matches(req.header("authorization"), cfg.upload_token)) {
                return nullptr;
            }
            break;
        case follow_policy::public_:
            break;
    }
    return s.uploads.find(relative);
}

// Who may write: --writable, and the bearer token when one is set. Empty: allowed.
std::optional<response_plan> write_refusal(const server_config& cfg, const request& req, bool close) {
    if (!cfg.writable) {
        return method_not_allowed("GET, HEAD", close);
    }
    if (!cfg.upload_token.empty() && !bearer_matches(req.header("authorization"), cfg.upload_token)) {
        return memory_response(401, "text/plain; charset=utf-8", error_body(401, "a valid bearer token is needed"),
                               close, false, {"WWW-Authenticate", "Bearer realm=\"datapump\""});
    }
    return std::nullopt;
}

response_plan delete_response(server::state& s, const server_config& cfg, const request& req, const target_path& target,
                              bool keep_alive) {
    const bool close = !keep_alive;
    if (auto refused = write_refusal(cfg, req, close)) {
        return std::move(*refused);
    }
    const std::string& relative = target.relative;
    if (relative.empty()) {
        return error_response(405, "the root", close);
    }
    if (is_reserved(relative) || (target.dotted && !cfg.serve_dotfiles)) {
        return error_response(404, "no such file", close);
    }
    if (s.uploads.find(relative) != nullptr) {
        return error_response(409, "the file is being uploaded", close);
    }
    auto removed = s.instance.remove(relative);
    if (!removed) {
        if (removed.error().sys == ENAMETOOLONG) {
            return error_response(414, "a name in the path is longer than the file system allows", close);
        }
        switch (removed.error().code) {
            case errc::not_found: return error_response(404, "no such file", close);
            case errc::escapes_root: return error_response(403, "the path leaves the served folder", close);
            case errc::not_regular_file: return error_response(409, "not a regular file", close);
            default:
                spdlog::error("delete {}: {}", log_escape(relative), describe(removed.error()));
                return error_response(500, "the file cannot be removed", close);
        }
    }
    return empty_response(204, close);
}

}  // namespace

// The wake-up of a paced stream on `ctx`'s loop, for its rt ticks: runs on a VP, so it only posts
// (through the doorbell, which shutdown closes before the loop goes); the task finds the stream
// by id, so a wake-up that comes after the stream ended finds nothing.
stream::credit_wake credit_wake(loop_context& ctx) {
    return [doorbell = ctx.doorbell, ctx_ptr = &ctx](std::uint64_t sid) {
        doorbell->ring([ctx_ptr, sid] {
            const auto it = ctx_ptr->streams.find(sid);
            if (it != ctx_ptr->streams.end()) {
                connection* c = it->second;
                c->on_credit();
                connection::settle(c);
            }
        });
    };
}

namespace {

// The 503 of a paced stream that admission refused (capacity or rt), with why.
response_plan admission_refused(const request& req, std::string_view why, bool close) {
    spdlog::warn("admission refused {}: {}", log_escape(req.target), why);
    return memory_response(503, "text/plain; charset=utf-8", error_body(503, why), close, false, {"Retry-After", "1"});
}

// The 503 of a stream its client address may not start (docs/daemon.md, "Limits"). Not logged
// beyond the access log line: a client over its limit must not be able to flood the log.
response_plan client_refused(const stream::client_refusal& r, const stream::client_address& from, bool close) {
    return memory_response(503, "text/plain; charset=utf-8", error_body(503, stream::describe(r, from)), close, false,
                           {"Retry-After", "1"});
}

// The caching headers of a file answer (docs/daemon.md, "Caching headers"): the first of `rules`
// whose glob matches "/" + `relative` gives Cache-Control, and Expires when it has a max-age
// (capped at ten years).
void add_cache_headers(response_head& h, const std::vector<cache_rule>& rules, std::string_view relative) {
    if (rules.empty()) {
        return;
    }
    std::string path = "/";
    path += relative;
    const cache_rule* rule = match_cache_rule(rules, path);
    if (rule == nullptr) {
        return;
    }
    h.add("Cache-Control", std::string_view(rule->value));
    if (rule->max_age) {
        constexpr std::uint64_t most = std::uint64_t{10} * 365 * 86400;
        const auto now = static_cast<std::int64_t>(std::time(nullptr));
        h.add("Expires", std::string_view(http_date(now + static_cast<std::int64_t>(std::min(*rule->max_age, most)))));
    }
}

response_plan file_response(loop_context& ctx, const request& req, const target_path& target, bool keep_alive,
                            const stream::client_address& from) {
    server::state& s = *ctx.owner;
    const server_config& cfg = *ctx.settings;  // conf: the request's (its connection took them just now)
    const bool close = !keep_alive;
    if (req.verb == method::delete_) {
        return delete_response(s, cfg, req, target, keep_alive);
    }
    if (!is_get_or_head(req)) {
        return cfg.writable ? method_not_allowed("GET, HEAD, PUT, DELETE", close)
                                 : method_not_allowed("GET, HEAD", close);
    }
    std::string relative = target.relative;
    if (is_reserved(relative) || (target.dotted && !cfg.serve_dotfiles)) {
        return error_response(404, "no such file", close);
    }
    if (cfg.writable) {
        if (auto uploading = followable_upload(s, cfg, req, relative)) {
            return follow_response(req, relative, s.mime, std::move(uploading), close);
        }
    }
    // A directory asked for as one (the root, or a path ending in '/') is answered by its
    // index.html when it has one, as nginx's default `index` does; else listed or refused.
    // Through the root's open-file cache when it has one (fs::open_cache: a change made before
    // this request is always seen).
    const auto open_file = [&ctx](const std::string& name) -> result<std::shared_ptr<fs::file>> {
        if (ctx.root->files) {
            return ctx.root->files->open(name);
        }
        auto opened = ctx.root->instance->open(name);
        if (!opened) {
            return std::unexpected(opened.error());
        }
        return std::make_shared<fs::file>(std::move(*opened));
    };
    std::optional<result<std::shared_ptr<fs::file>>> index;
    if (relative.empty() || target.directory) {
        std::string name = relative.empty() ? std::string("index.html") : relative + "/index.html";
        index.emplace(open_file(name));
        if (!*index) {
            return directory_response(ctx.root->fd, cfg, req, relative, close);
        }
        relative = std::move(name);
    }
    // A precompressed sibling (docs/daemon.md, "Precompressed files"), as nginx's gzip_static:
    // brotli first, then gzip; the name, type and caching rules stay the file's.
    std::string_view encoding;
    std::string served = relative;
    std::optional<result<std::shared_ptr<fs::file>>> sibling;
    if (const std::string* accept = req.header("accept-encoding"); cfg.precompressed && accept != nullptr) {
        constexpr std::array<std::pair<std::string_view, std::string_view>, 2> codings{
            {{"br", ".br"}, {"gzip", ".gz"}}};
        for (const auto& [coding, suffix] : codings) {
            if (!accepts_coding(*accept, coding)) {
                continue;
            }
            std::string name = relative + std::string(suffix);
            if (auto found = open_file(name)) {
                sibling.emplace(std::move(found));
                encoding = coding;
                served = std::move(name);
                break;
            }
        }
    }
    auto opened = sibling ? std::move(*sibling) : index ? std::move(*index) : open_file(relative);
    if (!opened) {
        if (opened.error().sys == ENAMETOOLONG) {
            return error_response(414, "a name in the path is longer than the file system allows", close);
        }
        switch (opened.error().code) {
            case errc::not_found:
                return error_response(404, "no such file", close);
            case errc::escapes_root:
                return error_response(403, "the path leaves the served folder", close);
            case errc::not_regular_file: {
                return directory_response(ctx.root->fd, cfg, req, relative, close);
            }
            default:
                spdlog::error("open {}: {}", log_escape(relative), describe(opened.error()));
                return error_response(500, "the file cannot be opened", close);
        }
    }
    const fs::file_info info = (*opened)->info();
    const std::int64_t mtime_s = info.mtime_ns / 1'000'000'000;
    const std::string etag = make_etag(info.inode, info.size, info.mtime_ns);
    const std::string last_modified = http_date(mtime_s);
    const conditional_result cond = evaluate_conditions(req, etag, mtime_s);

    auto base_head = [&](int status) {
        response_head h(status);
        common_headers(h, close);
        h.add("ETag", etag);
        h.add("Last-Modified", last_modified);
        h.add("Accept-Ranges", "bytes");
        if (cfg.precompressed) {
            h.add("Vary", "Accept-Encoding");
        }
        if (status != 416) {  // 200, 206, 304: the representation's caching headers
            add_cache_headers(h, ctx.rules->cache, relative);
        }
        return h;
    };
    response_plan plan;
    plan.close_after = close;
    if (cond.not_modified) {
        plan.status = 304;
        plan.head = base_head(304).finish();
        return plan;
    }
    const range_result range = cond.use_range ? evaluate_range(req.header("range"), info.size) : range_result{};
    if (range.kind == range_kind::unsatisfiable) {
        auto h = base_head(416);
        h.add("Content-Range", content_range_unsatisfied(info.size));
        h.add("Content-Length", "0");
        plan.status = 416;
        plan.head = std::move(h).finish();
        return plan;
    }
    const bool partial = range.kind == range_kind::partial;
    plan.status = partial ? 206 : 200;
    plan.start = partial ? range.first : 0;
    plan.length = partial ? range.last - range.first + 1 : info.size;
    plan.file_size = info.size;

    auto qos = requested_qos(cfg, req);
    if (!qos) {
        return error_response(400, qos.error().what, close);
    }
    auto h = base_head(plan.status);
    h.add("Content-Type", s.mime.lookup(relative));
    if (!encoding.empty()) {
        h.add("Content-Encoding", encoding);
    }
    h.add("Content-Length", plan.length);
    if (partial) {
        h.add("Content-Range", content_range(range.first, range.last, info.size));
    }
    if (req.verb == method::head || plan.length == 0) {
        plan.length = 0;
        plan.head = std::move(h).finish();
        return plan;
    }
    // Admission (the client address's limits, the byte capacity, then for paced streams the rt
    // scheduler's density test) and the stream's table entry: stream::open.
    auto admitted = stream::open(s.stream_parts(), {.from = from,
                                                    .rate = qos->first,
                                                    .burst = qos->second,
                                                    .file = "/" + served,
                                                    .start = plan.start,
                                                    .length = plan.length,
                                                    .file_size = info.size,
                                                    .send_path = to_string(stream::path_for(
                                                        s.path, cfg.direct_min_size, info.size,
                                                        ctx.root->instance->ops().send_fd != nullptr)),
                                                    .wake = credit_wake(ctx)});
    if (!admitted) {
        if (const auto* limit = std::get_if<stream::client_refusal>(&admitted.error())) {
            return client_refused(*limit, from, close);
        }
        return admission_refused(req, stream::describe(admitted.error(), from), close);
    }
    const stream::control& control = *admitted->controls;
    h.add("X-Datapump-Stream", control.id);
    if (!control.capability.empty()) {
        // The client's own key to its stream on the public listener (docs/daemon.md, "Control plane").
        h.add("X-Datapump-Control", std::string(stream_capability_prefix) + control.capability);
    }
    plan.stream = std::move(*admitted);
    plan.head = std::move(h).finish();
    plan.file = std::move(*opened);
    return plan;
}

// A VCR action (pause, resume, seek?offset=N, speed?factor=K) on stream `id`, answered as the
// control API does: 200 {"ok":true,"stream":{...}}, 404 (`unknown`: no such stream), 400.
response_plan stream_action(server::state& s, const request& req, std::uint64_t id, std::string_view action,
                            const std::string& unknown, bool close) {
    result<std::shared_ptr<stream::control>> done = fail(errc::invalid_argument, "unknown action");
    if (action == "pause") {
        done = s.table.pause(id);
    } else if (action == "resume") {
        done = s.table.resume(id);
    } else if (action == "seek") {
        auto offset = query_param(req.query, "offset");
        auto value = offset ? parse_uint(*offset) : fail(errc::invalid_argument, "seek needs ?offset=BYTES");
        done = value ? s.table.seek(id, *value) : std::unexpected(value.error());
    } else if (action == "speed") {
        auto factor = query_param(req.query, "factor");
        auto value = factor ? parse_uint(*factor) : fail(errc::invalid_argument, "speed needs ?factor=K");
        if (value && *value > stream::stream_table::max_speed) {
            value = fail(errc::invalid_argument, "speed factor must be 1..64");
        }
        done = value ? s.table.set_speed(id, static_cast<std::uint32_t>(*value)) : std::unexpected(value.error());
    } else {
        return json_response(404, control_reply(false, "unknown action (pause, resume, seek, speed)", nullptr), close);
    }
    if (!done) {
        if (done.error().code == errc::not_found) {
            return json_response(404, control_reply(false, unknown, nullptr), close);
        }
        return json_response(400, control_reply(false, done.error().what, nullptr), close);
    }
    const stream_view v = view_of(**done);
    return json_response(200, control_reply(true, {}, &v), close);
}

// The public listener's only view of the control plane: /_datapump/streams/CAP (GET: the
// stream's JSON) and /_datapump/streams/CAP/ACTION (POST), for the holder of the capability the
// stream's response carried. Anything else under the prefix is 404, as a missing file is.
response_plan capability_response(server::state& s, const request& req, const target_path& target,
                                  bool keep_alive) {
    const bool close = !keep_alive;
    const std::string_view path(target.relative);
    if (!path.starts_with(stream_capability_root)) {
        return error_response(404, "no such file", close);
    }
    const std::string_view rest = path.substr(stream_capability_root.size());
    const auto slash = rest.find('/');
    const std::string_view capability = rest.substr(0, slash);
    const std::string_view action = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    constexpr std::string_view unknown = "no such stream (ended, or never handed out)";
    const std::shared_ptr<stream::control> c =
        capability.size() == 32 ? s.table.find_capability(capability) : nullptr;
    if (c == nullptr) {
        return json_response(404, control_reply(false, unknown, nullptr), close);
    }
    if (action.empty()) {
        if (!is_get_or_head(req)) {
            return method_not_allowed("GET, HEAD", close);
        }
        return json_response(200, stream_json(view_of(*c)), close);
    }
    if (req.verb != method::post) {
        return method_not_allowed("POST", close);
    }
    return stream_action(s, req, c->id, action, std::string(unknown), close);
}

response_plan control_response(server::state& s, const served_root& root, const request& req, const target_path& target,
                               bool keep_alive) {
    const bool close = !keep_alive;
    std::string_view sub = std::string_view(target.relative).substr(control_root.size());
    if (sub.empty() && target.directory) {
        sub = "/";
    }
    if (sub.empty()) {
        // The query goes along: it may carry the status page's ?token=.
        return redirect(std::string(reserved_prefix) + "/" + (req.query.empty() ? "" : "?" + req.query), close);
    }
    if (sub == "/" || sub == "/index.html") {
        if (!is_get_or_head(req)) {
            return method_not_allowed("GET, HEAD", close);
        }
        return memory_response(200, "text/html; charset=utf-8", std::string(status_page_html()), close,
                               req.verb == method::head);
    }
    if (sub == "/api/streams") {
        if (!is_get_or_head(req)) {
            return method_not_allowed("GET, HEAD", close);
        }
        return json_response(200, streams_json(stream_views(s)), close);
    }
    if (sub == "/api/status") {
        if (!is_get_or_head(req)) {
            return method_not_allowed("GET, HEAD", close);
        }
        return json_response(200, status_json(make_view(s, root)), close);
    }
    constexpr std::string_view streams_prefix = "/api/streams/";
    if (sub.starts_with(streams_prefix)) {
        const std::string_view rest = sub.substr(streams_prefix.size());
        const auto slash = rest.find('/');
        if (slash == std::string_view::npos) {
            return json_response(404, control_reply(false, "expected /api/streams/ID/ACTION", nullptr), close);
        }
        auto id = parse_uint(rest.substr(0, slash));
        const std::string_view action = rest.substr(slash + 1);
        if (!id) {
            return json_response(400, control_reply(false, "the stream id is not a number", nullptr), close);
        }
        if (req.verb != method::post) {
            return method_not_allowed("POST", close);
        }
        return stream_action(s, req, *id, action, "no stream " + std::to_string(*id), close);
    }
    return error_response(404, "no such control endpoint", close);
}

}  // namespace

result<std::string> upload_target(server::state& s, const server_config& cfg, const request& req,
                                  response_plan& refusal) {
    // Every refusal closes: the body's bytes are on their way and will not be read.
    if (auto refused = write_refusal(cfg, req, true)) {
        refusal = std::move(*refused);
        return fail(errc::invalid_argument, "refused");
    }
    const auto refuse = [&](int status, std::string_view why) {
        refusal = error_response(status, why, true);
        return fail(errc::invalid_argument, "refused");
    };
    auto target = resolve_target(req);
    if (!target) {
        return refuse(refusal_status(target.error()), target.error().what);
    }
    std::string relative = std::move(target->relative);
    if (relative == metrics_path || is_control_path(relative)) {
        return refuse(405, "not a file");
    }
    if (relative.empty() || target->directory) {
        return refuse(405, "a PUT needs a file name, not a folder");
    }
    if (ingest::is_temp_name(relative)) {
        return refuse(403, "names of upload temp files are reserved");
    }
    if (target->dotted && !cfg.serve_dotfiles) {
        return refuse(403, "names starting with '.' are refused (see --serve-dotfiles)");
    }
    if (const std::string* expect = req.header("expect"); expect != nullptr) {
        std::string lower = *expect;
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
        if (lower != "100-continue") {
            return refuse(417, "the only expectation understood is 100-continue");
        }
    }
    if (!req.body_chunked && cfg.max_upload != 0 && req.body_length > cfg.max_upload) {
        return refuse(413, "the body is larger than the upload limit");
    }
    if (s.uploads.find(relative) != nullptr) {
        return refuse(409, "the file is being uploaded by another request");
    }
    return relative;
}

response_plan empty_response(int status, bool close, std::string_view location) {
    response_head h(status);
    common_headers(h, close);
    if (!location.empty()) {
        h.add("Location", location);
    }
    if (status != 204) {
        h.add("Content-Length", "0");
    }
    response_plan plan;
    plan.status = status;
    plan.head = std::move(h).finish();
    plan.close_after = close;
    return plan;
}

response_plan error_response(int status, std::string_view detail, bool close) {
    return memory_response(status, "text/plain; charset=utf-8", error_body(status, detail), close);
}

// ---- Pages on other origins (CORS; docs/daemon.md) ----

// The request headers a page on an allowed origin may send with its GETs.
constexpr std::string_view cors_allowed_headers =
    "Range, If-Range, If-None-Match, If-Modified-Since, X-Datapump-Rate, X-Datapump-Burst";

// Adds `lines` ("Name: value\r\n"...) to a finished head, before its blank line.
void add_head_lines(response_plan& plan, std::string_view lines) {
    if (plan.head.size() >= 2) {
        plan.head.insert(plan.head.size() - 2, lines);
    }
}

// The CORS lines of a response to `req` under `policy`: Access-Control-Allow-Origin for an
// allowed Origin, and Vary: Origin whenever the answer depends on it (a list, not "*").
std::string cors_lines(const cors_policy& policy, const request& req, bool preflight) {
    std::string lines;
    if (!policy.any) {
        lines += "Vary: Origin\r\n";
    }
    const std::string* origin = req.header("origin");
    const std::string_view allow = origin == nullptr ? std::string_view{} : policy.allow_origin(*origin);
    if (allow.empty()) {
        return lines;
    }
    lines += "Access-Control-Allow-Origin: ";
    lines += allow;
    lines += "\r\n";
    if (preflight) {
        lines += "Access-Control-Allow-Methods: GET, HEAD\r\nAccess-Control-Allow-Headers: ";
        lines += cors_allowed_headers;
        lines += "\r\nAccess-Control-Max-Age: 86400\r\n";
    } else {
        lines += "Access-Control-Expose-Headers: Content-Range, Accept-Ranges, Content-Length, ETag\r\n";
    }
    return lines;
}

// A preflight (OPTIONS with Access-Control-Request-Method): 204 with the CORS lines when the
// origin is allowed and the method is GET or HEAD, else 403 saying which.
response_plan preflight_response(const cors_policy& policy, const request& req, bool close) {
    const std::string* origin = req.header("origin");
    if (origin == nullptr || policy.allow_origin(*origin).empty()) {
        response_plan plan = error_response(403, "this origin may not read here (see --cors-origins)", close);
        add_head_lines(plan, policy.any ? std::string_view{} : std::string_view{"Vary: Origin\r\n"});
        return plan;
    }
    const std::string* asked = req.header("access-control-request-method");
    if (asked == nullptr || (*asked != "GET" && *asked != "HEAD")) {
        return error_response(403, "only GET and HEAD may be asked for from another origin", close);
    }
    response_plan plan = empty_response(204, close, {});
    add_head_lines(plan, cors_lines(policy, req, true));
    return plan;
}

std::shared_ptr<const answer_rules> make_answer_rules(const server_config& c) {
    auto rules = std::make_shared<answer_rules>();
    if (auto cors = parse_cors_origins(c.cors_origins)) {
        rules->cors = std::move(*cors);
    }
    if (auto cache = parse_cache_rules(c.cache_control)) {
        rules->cache = std::move(*cache);
    }
    return rules;
}

response_plan route(loop_context& ctx, const request& req, bool keep_alive, bool admin,
                    const stream::client_address& from) {
    server::state& s = *ctx.owner;
    const auto target = resolve_target(req);
    if (!target) {
        return error_response(refusal_status(target.error()), target.error().what, !keep_alive);
    }
    const bool metrics = target->relative == metrics_path;
    const bool control = is_control_path(target->relative);
    if (!admin) {
        // The control plane lives on the admin listener only; here the names stay reserved.
        if (metrics) {
            return error_response(404, "no such file", !keep_alive);
        }
        if (control) {
            return capability_response(s, req, *target, keep_alive);
        }
        const cors_policy& cors = ctx.rules->cors;
        if (cors.enabled() && req.verb == method::options && req.header("access-control-request-method") != nullptr) {
            return preflight_response(cors, req, !keep_alive);
        }
        response_plan plan = file_response(ctx, req, *target, keep_alive, from);
        if (cors.enabled() && is_get_or_head(req)) {
            add_head_lines(plan, cors_lines(cors, req, false));
        }
        return plan;
    }
    if (metrics) {
        if (!is_get_or_head(req)) {
            return method_not_allowed("GET, HEAD", !keep_alive);
        }
        return memory_response(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(make_view(s, *ctx.root)), !keep_alive,
                               req.verb == method::head);
    }
    if (control) {
        return control_response(s, *ctx.root, req, *target, keep_alive);
    }
    return error_response(404, "the admin listener serves only /metrics and /_datapump/", !keep_alive);
}

std::optional<response_plan> refuse_before_routing(const server_config& cfg, const request& req, bool keep_alive,
                                                   bool admin) {
    // A refused request's body (a PUT's) is not read: the connection closes after the answer.
    const bool close = !keep_alive || req.body_follows;
    if (changes_state(req) && !same_origin(req)) {
        return error_response(403, "cross-origin request refused", close);
    }
    if (!admin) {
        return std::nullopt;
    }
    if (!admin_authorized(cfg, req)) {
        return memory_response(401, "text/plain; charset=utf-8", error_body(401, "the admin token is needed"), close,
                               false, {"WWW-Authenticate", "Bearer realm=\"datapump admin\""});
    }
    if (cfg.admin == admin_kind::tcp && cfg.admin_token.empty() && !local_host_header(req)) {
        return error_response(403, "the admin listener without --admin-token answers only Host: localhost or an IP "
                                   "address (a guard against DNS rebinding)", close);
    }
    if (req.body_follows) {
        return error_response(404, "the admin listener serves only /metrics and /_datapump/", true);
    }
    return std::nullopt;
}

}  // namespace datapump::http
