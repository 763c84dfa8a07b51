// The router: what the daemon answers to one parsed request (docs/daemon.md, "What it serves").
// Files under the root, /metrics, and the control API and status page under /_datapump/.
#include "connection.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/http/proto/mime.hpp"
#include "datapump/http/proto/path.hpp"
#include "datapump/http/proto/query.hpp"
#include "datapump/http/proto/range.hpp"
#include "datapump/http/proto/response_head.hpp"
#include "datapump/http/proto/validators.hpp"
#include "datapump/ingest/upload_names.hpp"

#include <fmt/format.h>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <functional>
#include <optional>

namespace datapump::http {

namespace {

constexpr std::string_view reserved_prefix = "/_datapump";

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

response_plan directory_response(server::state& s, const request& req, const std::string& relative, bool close) {
    if (!s.config.directory_listing) {
        return error_response(403, "directory listing is off", close);
    }
    if (req.path.empty() || req.path.back() != '/') {
        return redirect(req.path + "/", close);
    }
    const int fd = open_directory(s.root_fd.get(), relative);
    if (fd < 0) {
        return error_response(errno == ENOENT ? 404 : 403, "the directory cannot be opened", close);
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
result<std::pair<std::uint64_t, std::uint64_t>> requested_qos(const server::state& s, const request& req) {
    std::uint64_t rate = s.config.default_rate;
    std::uint64_t burst = s.config.default_burst;
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
    if (s.config.max_rate != 0 && (rate == 0 || rate > s.config.max_rate)) {
        rate = s.config.max_rate;
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
response_plan follow_response(const request& req, const std::string& relative, std::shared_ptr<upload_entry> upload,
                              bool close) {
    const bool http11 = req.version_major == 1 && req.version_minor >= 1;
    const auto length = upload->length();
    response_plan plan;
    plan.status = 200;
    plan.close_after = close || (!length && !http11);
    response_head h(200);
    common_headers(h, plan.close_after);
    h.add("Content-Type", content_type_for(relative));
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

// Who may write: --writable, and the bearer token when one is set. Empty: allowed.
std::optional<response_plan> write_refusal(const server::state& s, const request& req, bool close) {
    if (!s.config.writable) {
        return method_not_allowed("GET, HEAD", close);
    }
    if (!s.config.upload_token.empty() && !bearer_matches(req.header("authorization"), s.config.upload_token)) {
        return memory_response(401, "text/plain; charset=utf-8", error_body(401, "a valid bearer token is needed"),
                               close, false, {"WWW-Authenticate", "Bearer realm=\"datapump\""});
    }
    return std::nullopt;
}

response_plan delete_response(server::state& s, const request& req, bool keep_alive) {
    const bool close = !keep_alive;
    if (auto refused = write_refusal(s, req, close)) {
        return std::move(*refused);
    }
    auto relative = decode_path(req.path);
    if (!relative) {
        return error_response(relative.error().code == errc::escapes_root ? 403 : 400, relative.error().what, close);
    }
    if (relative->empty() || ingest::is_temp_name(*relative)) {
        return error_response(relative->empty() ? 405 : 404, relative->empty() ? "the root" : "no such file", close);
    }
    if (s.uploads.find(*relative) != nullptr) {
        return error_response(409, "the file is being uploaded", close);
    }
    auto removed = s.instance.remove(*relative);
    if (!removed) {
        switch (removed.error().code) {
            case errc::not_found: return error_response(404, "no such file", close);
            case errc::escapes_root: return error_response(403, "the path leaves the served folder", close);
            case errc::not_regular_file: return error_response(409, "not a regular file", close);
            default:
                spdlog::error("delete {}: {}", *relative, describe(removed.error()));
                return error_response(500, "the file cannot be removed", close);
        }
    }
    return empty_response(204, close);
}

// The wake-up of stream `sid` on `ctx`'s loop, for its rt ticks: runs on a VP, so it only posts
// (through the doorbell, which shutdown closes before the loop goes); the task finds the stream
// by id, so a wake-up that comes after the stream ended finds nothing.
std::function<void()> credit_wake(loop_context& ctx, std::uint64_t sid) {
    return [doorbell = ctx.doorbell, ctx_ptr = &ctx, sid] {
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

// The 503 of a paced stream that admission refused (capacity or rt), with why.
response_plan admission_refused(const request& req, std::string_view why, bool close) {
    spdlog::warn("admission refused {}: {}", req.target, why);
    return memory_response(503, "text/plain; charset=utf-8", error_body(503, why), close, false, {"Retry-After", "1"});
}

response_plan file_response(loop_context& ctx, const request& req, bool keep_alive) {
    server::state& s = *ctx.owner;
    const bool close = !keep_alive;
    if (req.verb == method::delete_) {
        return delete_response(s, req, keep_alive);
    }
    if (!is_get_or_head(req)) {
        return s.config.writable ? method_not_allowed("GET, HEAD, PUT, DELETE", close)
                                 : method_not_allowed("GET, HEAD", close);
    }
    auto relative = decode_path(req.path);
    if (!relative) {
        const int status = relative.error().code == errc::escapes_root ? 403 : 400;
        return error_response(status, relative.error().what, close);
    }
    if (ingest::is_temp_name(*relative)) {
        return error_response(404, "no such file", close);
    }
    if (s.config.writable) {
        if (auto uploading = s.uploads.find(*relative)) {
            return follow_response(req, *relative, std::move(uploading), close);
        }
    }
    // A directory asked for as one (the root, or a path ending in '/') is answered by its
    // index.html when it has one, as nginx's default `index` does; else listed or refused.
    std::optional<result<fs::file>> index;
    if (relative->empty() || req.path.ends_with('/')) {
        std::string name = relative->empty() ? std::string("index.html") : *relative + "/index.html";
        index.emplace(s.instance.open(name));
        if (!*index) {
            return directory_response(s, req, *relative, close);
        }
        relative = std::move(name);
    }
    auto opened = index ? std::move(*index) : s.instance.open(*relative);
    if (!opened) {
        switch (opened.error().code) {
            case errc::not_found:
                return error_response(404, "no such file", close);
            case errc::escapes_root:
                return error_response(403, "the path leaves the served folder", close);
            case errc::not_regular_file: {
                return directory_response(s, req, *relative, close);
            }
            default:
                spdlog::error("open {}: {}", *relative, describe(opened.error()));
                return error_response(500, "the file cannot be opened", close);
        }
    }
    const fs::file_info info = opened->info();
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

    auto qos = requested_qos(s, req);
    if (!qos) {
        return error_response(400, qos.error().what, close);
    }
    auto h = base_head(plan.status);
    h.add("Content-Type", content_type_for(*relative));
    h.add("Content-Length", plan.length);
    if (partial) {
        h.add("Content-Range", content_range(range.first, range.last, info.size));
    }
    if (req.verb == method::head || plan.length == 0) {
        plan.length = 0;
        plan.head = std::move(h).finish();
        return plan;
    }
    // Admission: the byte capacity, then (paced streams) the rt scheduler's density test.
    auto reserved = s.admission.reserve(qos->first);
    if (!reserved) {
        return admission_refused(req, reserved.error().text(), close);
    }
    plan.reservation = std::move(*reserved);
    plan.rate = qos->first;
    plan.burst = qos->second;
    auto control = s.table.make();
    if (plan.rate != 0) {
        auto paced = s.pacing->admit(control->id, plan.rate, plan.burst, credit_wake(ctx, control->id));
        if (!paced) {
            const std::uint64_t piece =
                stream::rt_piece(plan.rate, plan.burst, s.pacing->config().max_ticks_per_second);
            const std::string why =
                fmt::format("the pacing scheduler (rt) refused the stream ({} B/s in pieces of {} B: {:.1f} ticks/s): "
                            "{}",
                            plan.rate, piece, static_cast<double>(plan.rate) / static_cast<double>(piece),
                            paced.error().reason);
            return admission_refused(req, why, close);
        }
        plan.pacing = std::move(*paced);
        plan.burst = plan.pacing.piece();  // the bucket's depth: the burst, raised to 1/1000 s of the rate
    }
    control->file = "/" + *relative;
    control->start = plan.start;
    control->end = plan.start + plan.length;
    control->file_size = info.size;
    control->position.store(plan.start, std::memory_order_relaxed);
    control->rate = plan.rate;
    control->burst = plan.rate == 0 ? 0 : plan.burst;
    control->send_path = to_string(s.path);
    h.add("X-Datapump-Stream", control->id);
    plan.control = std::move(control);
    plan.head = std::move(h).finish();
    plan.file = std::move(*opened);
    return plan;
}

response_plan control_response(server::state& s, const request& req, bool keep_alive) {
    const bool close = !keep_alive;
    std::string_view sub = std::string_view(req.path).substr(reserved_prefix.size());
    if (sub.empty()) {
        return redirect(std::string(reserved_prefix) + "/", close);
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
        return json_response(200, status_json(make_view(s)), close);
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
        result<std::shared_ptr<stream::control>> done = fail(errc::invalid_argument, "unknown action");
        if (action == "pause") {
            done = s.table.pause(*id);
        } else if (action == "resume") {
            done = s.table.resume(*id);
        } else if (action == "seek") {
            auto offset = query_param(req.query, "offset");
            auto value = offset ? parse_uint(*offset) : fail(errc::invalid_argument, "seek needs ?offset=BYTES");
            done = value ? s.table.seek(*id, *value) : std::unexpected(value.error());
        } else if (action == "speed") {
            auto factor = query_param(req.query, "factor");
            auto value = factor ? parse_uint(*factor) : fail(errc::invalid_argument, "speed needs ?factor=K");
            if (value && *value > stream::stream_table::max_speed) {
                value = fail(errc::invalid_argument, "speed factor must be 1..64");
            }
            done = value ? s.table.set_speed(*id, static_cast<std::uint32_t>(*value)) : std::unexpected(value.error());
        } else {
            return json_response(404, control_reply(false, "unknown action (pause, resume, seek, speed)", nullptr),
                                 close);
        }
        if (!done) {
            if (done.error().code == errc::not_found) {
                return json_response(404, control_reply(false, "no stream " + std::to_string(*id), nullptr), close);
            }
            return json_response(400, control_reply(false, done.error().what, nullptr), close);
        }
        const stream_view v = view_of(**done);
        return json_response(200, control_reply(true, {}, &v), close);
    }
    return error_response(404, "no such control endpoint", close);
}

}  // namespace

result<std::string> upload_target(server::state& s, const request& req, response_plan& refusal) {
    // Every refusal closes: the body's bytes are on their way and will not be read.
    if (auto refused = write_refusal(s, req, true)) {
        refusal = std::move(*refused);
        return fail(errc::invalid_argument, "refused");
    }
    const auto refuse = [&](int status, std::string_view why) {
        refusal = error_response(status, why, true);
        return fail(errc::invalid_argument, "refused");
    };
    if (req.path == "/metrics" || req.path == reserved_prefix || req.path.starts_with(std::string(reserved_prefix) + "/")) {
        return refuse(405, "not a file");
    }
    auto relative = decode_path(req.path);
    if (!relative) {
        return refuse(relative.error().code == errc::escapes_root ? 403 : 400, relative.error().what);
    }
    if (relative->empty() || req.path.ends_with('/')) {
        return refuse(405, "a PUT needs a file name, not a folder");
    }
    if (ingest::is_temp_name(*relative)) {
        return refuse(403, "names of upload temp files are reserved");
    }
    if (const std::string* expect = req.header("expect"); expect != nullptr) {
        std::string lower = *expect;
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
        if (lower != "100-continue") {
            return refuse(417, "the only expectation understood is 100-continue");
        }
    }
    if (!req.body_chunked && s.config.max_upload != 0 && req.body_length > s.config.max_upload) {
        return refuse(413, "the body is larger than the upload limit");
    }
    if (s.uploads.find(*relative) != nullptr) {
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

response_plan route(loop_context& ctx, const request& req, bool keep_alive) {
    server::state& s = *ctx.owner;
    if (req.path == "/metrics") {
        if (!is_get_or_head(req)) {
            return method_not_allowed("GET, HEAD", !keep_alive);
        }
        return memory_response(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(make_view(s)), !keep_alive,
                               req.verb == method::head);
    }
    if (req.path == reserved_prefix || req.path.starts_with(std::string(reserved_prefix) + "/")) {
        return control_response(s, req, keep_alive);
    }
    return file_response(ctx, req, keep_alive);
}

}  // namespace datapump::http
