// File: datapump/http/views.hpp (target datapump::http_views)
//
// What the daemon shows about itself, as text: Prometheus metrics, the JSON of the control API,
// the status page and directory listings (docs/daemon.md, "Control API, metrics, status page").
// The server fills plain snapshot structs (the *_view types) from its counters and calls these
// pure functions; nothing here does I/O, reads a clock or keeps state.
//
//     server counters ──snapshot──> server_view / stream_view ──render──> body text
//
// Ownership: the views are plain values owned by the caller; every function returns a new string
// (status_page_html: a view of a static string, valid for the whole program).
// Thread-safety: pure functions; any thread.
// Errors: none. Text from users (file names, client addresses) is escaped for its format, and
// bytes that are not UTF-8 become U+FFFD in JSON, so rendering cannot fail.
#pragma once

#include "datapump/base/export.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::http {

// One live stream, as the control API shows it.
struct stream_view {
    std::uint64_t id = 0;
    std::string client;  // peer address, "203.0.113.7:51234"
    std::string file;    // path under the root, as requested (decoded)
    std::uint64_t start = 0;
    std::uint64_t end = 0;  // exclusive
    std::uint64_t position = 0;
    std::uint64_t bytes_sent = 0;
    std::uint64_t rate = 0;  // bytes per second, 0 = unpaced
    std::uint64_t burst = 0;
    std::string state;  // "playing" | "paused" | "waiting" (for pacing) | "ending"
    std::uint32_t speed = 1;
    unsigned loop = 0;
    std::string send_path;  // "sendfile" | "splice" | "send_zc" | "send"
};

struct loop_view {
    unsigned index = 0;
    std::uint64_t connections = 0;
    std::uint64_t streams = 0;
    std::uint64_t busy_ns = 0;
    std::uint64_t wakeups = 0;
};

struct cache_view {
    std::uint64_t buffers = 0;
    std::uint64_t buffer_size = 0;  // bytes
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t collisions = 0;
    std::uint64_t fallbacks = 0;
    std::uint64_t evictions = 0;
    std::uint64_t disk_reads = 0;
    std::uint64_t disk_bytes = 0;
    std::uint64_t loans_out = 0;
    std::uint64_t prefetch_posted = 0;
    std::uint64_t prefetch_dropped = 0;
    // The open-file cache (fs::open_cache) of the roots served now.
    std::uint64_t open_files = 0;
    std::uint64_t open_hits = 0;
    std::uint64_t open_misses = 0;
    std::uint64_t open_forgotten = 0;
    std::uint64_t open_evicted = 0;
    std::uint64_t open_unwatched = 0;
    std::uint64_t huge_page_bytes = 0;  // of the arena, in huge pages (measured at start)
};

struct send_view {
    std::uint64_t sendfile_bytes = 0;
    std::uint64_t splice_bytes = 0;
    std::uint64_t send_zc_bytes = 0;
    std::uint64_t send_zc_sends = 0;
    std::uint64_t send_zc_copied = 0;  // notifications that said the kernel copied
    std::uint64_t send_bytes = 0;      // the copying fallback
    std::uint64_t readahead_advice = 0;  // page-cache paths: WILLNEED advice issued (cold windows)
};

// The ingest path (docs/ingest.md, "Copies"): copies per byte = copied / received.
struct ingest_view {
    std::uint64_t received = 0;        // body bytes received into arena buffers
    std::uint64_t copied = 0;          // of those, bytes the engine copied (head-buffer prefix, framing spill)
    std::uint64_t written = 0;         // bytes written to storage (padding of unaligned tails included)
    std::uint64_t writes = 0;          // storage write operations
    std::uint64_t rmw_reads = 0;       // file-system blocks read for read-modify-write
    std::uint64_t zero_filled = 0;     // partial blocks past the end of file, zero-filled instead
    std::uint64_t uploads_started = 0;
    std::uint64_t uploads_completed = 0;
    std::uint64_t uploads_failed = 0;
    std::uint64_t uploads_in_progress = 0;
    std::uint64_t leftovers_removed = 0;  // temp files of interrupted uploads removed at start-up
    std::uint64_t publish_batches = 0;    // groups of uploads published together (per upload: 1 each)
    std::uint64_t publish_syncs = 0;      // fsync/syncfs calls made to publish them
};

// Paced streams on rt/ (docs/daemon.md, "Pacing and admission"): one rt timer connection each.
struct rt_vp_view {
    unsigned index = 0;
    std::uint64_t connections = 0;
    double density = 0;    // admitted density, Σ budget / period of its connections
    std::string priority;  // what the kernel gave its thread ("SCHED_FIFO", ...)
};

struct rt_view {
    std::uint64_t connections = 0;      // paced streams admitted now
    std::uint64_t refusals = 0;         // paced streams refused (503) by rt's admission
    std::uint64_t deadline_misses = 0;  // ticks that ended after their deadline, every stream summed
    std::uint64_t overruns = 0;         // ticks that ran longer than their declared budget
    double max_density = 0;             // the admission limit per VP
    std::vector<rt_vp_view> vps;
};

// logs: a Prometheus histogram of durations (docs/daemon.md, "Metrics"). counts[i]: observations
// above bounds_us[i-1] and at most bounds_us[i] (not cumulative: metrics_text sums them);
// counts.back(): those above the last bound (+Inf). counts.size() == bounds_us.size() + 1 when
// there are observations to show; an empty view has no buckets but +Inf.
struct histogram_view {
    std::vector<std::uint64_t> bounds_us;  // upper bounds in microseconds, ascending
    std::vector<std::uint64_t> counts;
    std::uint64_t sum_us = 0;
    std::uint64_t count = 0;
};

// logs: the process's resources, as Prometheus's process_* metrics name them.
struct process_view {
    std::uint64_t start_time_ms = 0;  // since the Unix epoch
    std::uint64_t cpu_us = 0;         // user + system CPU time
    std::uint64_t resident_bytes = 0;
    std::uint64_t open_fds = 0;
    std::uint64_t max_fds = 0;        // RLIMIT_NOFILE's soft limit
};

struct server_view {
    std::string version;
    std::uint64_t uptime_ms = 0;
    std::string provider;
    std::string send_path;
    std::uint64_t capacity = 0;  // admission, B/s (0: no limit)
    std::uint64_t reserved = 0;  // admission, B/s
    std::uint64_t connections = 0;
    std::uint64_t active_streams = 0;
    std::uint64_t admission_refusals = 0;
    std::vector<std::pair<int, std::uint64_t>> requests_by_status;  // (status, count)
    std::uint64_t bytes_sent = 0;
    std::vector<loop_view> loops;
    cache_view cache;
    send_view sends;
    ingest_view ingest;
    rt_view rt;
    // hostile network: nothing held forever (docs/daemon.md, "Limits and timeouts")
    std::uint64_t send_timeouts = 0;   // responses cut: the client took no byte for the send timeout
    std::uint64_t pause_timeouts = 0;  // streams cut: paused longer than the maximum pause
    std::uint64_t stall_releases = 0;  // stalled paced streams that gave back their admission
    // hostile network: accept back-off and per-client-address limits (docs/daemon.md, "Limits")
    std::uint64_t accept_errors = 0;               // accept() failures, every loop
    std::uint64_t accept_shed = 0;                 // connections answered 503 through the spare descriptor
    std::uint64_t per_ip_refused_connections = 0;  // over --max-connections-per-ip
    std::uint64_t per_ip_refused_streams = 0;      // over --max-streams-per-ip
    std::uint64_t per_ip_refused_rate = 0;         // over --max-rate-per-ip
    // logs: request durations (request head read to the response's last byte sent, or its cut)
    // and times to first byte (head read to the first response byte taken by the socket).
    histogram_view request_duration;
    histogram_view time_to_first_byte;
    process_view process;
};

// GET /metrics: Prometheus text exposition format 0.0.4 (Content-Type
// "text/plain; version=0.0.4; charset=utf-8"). Every family has # HELP and # TYPE lines, even when
// it has no sample yet (requests by status). Besides the families listed in docs/daemon.md, a
// `datapump_info{version,provider,send_path} 1` gauge carries the strings of server_view.
[[nodiscard]] std::string metrics_text(const server_view& server);

// GET /_datapump/api/streams: {"streams":[stream_json...]}.
[[nodiscard]] std::string streams_json(const std::vector<stream_view>& streams);

// One stream: {"id","client","file","start","end","position","bytes_sent","rate","burst","state",
// "speed","loop","send_path"}.
[[nodiscard]] std::string stream_json(const stream_view& stream);

// GET /_datapump/api/status: the field names of server_view; requests_by_status is an object
// {"200":n,...}; loops an array of loop_view objects; cache, sends and rt objects with the field
// names of cache_view, send_view and rt_view (rt's vps an array of rt_vp_view objects).
[[nodiscard]] std::string status_json(const server_view& server);

// A control answer: {"ok":true,"stream":{...}} (or {"ok":true} when `stream` is null) when `ok`;
// {"ok":false,"error":"..."} otherwise (`stream` ignored).
[[nodiscard]] std::string control_reply(bool ok, std::string_view error_or_empty, const stream_view* stream);

// GET /_datapump/: one self-contained page (HTML, CSS, JS; no external resources) that polls
// api/streams and api/status every second, relative to itself. Static storage.
[[nodiscard]] std::string_view status_page_html();

// A directory listing. `url_path` is the decoded path of the directory ("/videos/a b/"); entries
// are (name, size) with a '/' after directory names. Names are HTML-escaped; hrefs are absolute
// (url_path's segments and the name percent-encoded), so they work with or without the trailing
// '/'. A parent link comes first unless url_path is "/".
[[nodiscard]] std::string directory_listing_html(
    std::string_view url_path, const std::vector<std::pair<std::string, std::uint64_t>>& entries);

}  // namespace datapump::http
DATAPUMP_API_END
