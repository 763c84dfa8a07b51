// metrics_text: the Prometheus text exposition format, version 0.0.4.
//   # HELP name text        (text: backslash and newline escaped)
//   # TYPE name counter|gauge
//   name{label="value",...} number   (label values: backslash, quote and newline escaped)
#include "datapump/http/views.hpp"

#include <charconv>
#include <cmath>

namespace datapump::http {
namespace {

class writer {
public:
    // Starts a family: its HELP and TYPE lines.
    void family(std::string_view name, std::string_view type, std::string_view help) {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        for (const char c : help) {
            if (c == '\\') {
                out_ += "\\\\";
            } else if (c == '\n') {
                out_ += "\\n";
            } else {
                out_ += c;
            }
        }
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }

    // A sample without labels.
    void sample(std::string_view name, std::uint64_t value) {
        out_ += name;
        out_ += ' ';
        number(value);
        out_ += '\n';
    }

    // A sample with one label.
    void sample(std::string_view name, std::string_view label, std::string_view label_value, std::uint64_t value) {
        begin_labelled(name, label, label_value);
        out_ += "} ";
        number(value);
        out_ += '\n';
    }

    // A sample in seconds from an integer count of 10^-digits seconds, written exactly.
    void seconds(std::string_view name, std::string_view label, std::string_view label_value, std::uint64_t count,
                 unsigned digits) {
        if (label.empty()) {
            out_ += name;
        } else {
            begin_labelled(name, label, label_value);
            out_ += '}';
        }
        out_ += ' ';
        std::uint64_t scale = 1;
        for (unsigned i = 0; i < digits; ++i) {
            scale *= 10;
        }
        number(count / scale);
        std::string fraction = std::to_string(count % scale);
        out_ += '.';
        out_.append(digits - fraction.size(), '0');
        out_ += fraction;
        out_ += '\n';
    }

    // A sample from an integer count of 10^-digits units (a density, a ratio), written exactly.
    void fixed(std::string_view name, std::string_view label, std::string_view label_value, std::uint64_t count,
               unsigned digits) {
        seconds(name, label, label_value, count, digits);
    }

    // Opens `name{label="value"`; more labels may follow with label().
    void begin_labelled(std::string_view name, std::string_view label, std::string_view value) {
        out_ += name;
        out_ += '{';
        label_pair(label, value);
    }

    void label(std::string_view label, std::string_view value) {
        out_ += ',';
        label_pair(label, value);
    }

    void end_labelled(std::uint64_t value) {
        out_ += "} ";
        number(value);
        out_ += '\n';
    }

    void counter(std::string_view name, std::string_view help, std::uint64_t value) {
        family(name, "counter", help);
        sample(name, value);
    }

    void gauge(std::string_view name, std::string_view help, std::uint64_t value) {
        family(name, "gauge", help);
        sample(name, value);
    }

    std::string take() { return std::move(out_); }

private:
    void label_pair(std::string_view label, std::string_view value) {
        out_ += label;
        out_ += "=\"";
        for (const char c : value) {
            if (c == '\\') {
                out_ += "\\\\";
            } else if (c == '"') {
                out_ += "\\\"";
            } else if (c == '\n') {
                out_ += "\\n";
            } else {
                out_ += c;
            }
        }
        out_ += '"';
    }

    void number(std::uint64_t value) {
        char digits[24];
        // 24 digits hold any uint64_t: to_chars cannot fail.
        char* end = std::to_chars(std::begin(digits), std::end(digits), value).ptr;
        // Appended as a string_view, not as an iterator range: GCC 12 at -O3 inlines the range
        // overload into a memcpy it thinks may overlap (-Wrestrict, a false positive: GCC bug
        // 105329), which broke plain Release builds.
        out_.append(std::string_view(digits, static_cast<std::size_t>(end - digits)));
    }

    std::string out_;
};

std::string server_metrics(const server_view& s) {
    writer w;
    w.family("datapump_info", "gauge", "Build and configuration of the daemon (always 1).");
    w.begin_labelled("datapump_info", "version", s.version);
    w.label("provider", s.provider);
    w.label("send_path", s.send_path);
    w.end_labelled(1);

    w.family("datapump_uptime_seconds", "gauge", "Seconds since the daemon started.");
    w.seconds("datapump_uptime_seconds", {}, {}, s.uptime_ms, 3);

    w.family("datapump_requests_total", "counter", "HTTP requests answered, by status code.");
    for (const auto& [status, count] : s.requests_by_status) {
        w.sample("datapump_requests_total", "status", std::to_string(status), count);
    }
    w.counter("datapump_bytes_sent_total", "Response bytes sent, heads and bodies.", s.bytes_sent);
    w.gauge("datapump_connections", "Open client connections.", s.connections);
    w.gauge("datapump_active_streams", "Response bodies being sent.", s.active_streams);
    w.counter("datapump_admission_refusals_total", "Paced streams refused (503) because capacity was reserved.",
            s.admission_refusals);
    w.gauge("datapump_admission_capacity_bytes_per_second", "Admission limit on paced rates (0: none).",
          s.capacity);
    w.gauge("datapump_admission_reserved_bytes_per_second", "Sum of the rates of the running paced streams.",
          s.reserved);
    return w.take();
}

// hostile network: nothing held forever (docs/daemon.md, "Limits and timeouts")
std::string limit_metrics(const server_view& s) {
    writer w;
    w.counter("datapump_send_timeouts_total",
              "Responses cut because the client took no byte for the send timeout (--send-timeout-ms).",
              s.send_timeouts);
    w.counter("datapump_pause_timeouts_total", "Streams cut because they stayed paused longer than --max-pause-ms.",
              s.pause_timeouts);
    w.counter("datapump_stall_releases_total",
              "Paced streams whose client stalled, that gave back their admission until it drained.",
              s.stall_releases);
    return w.take();
}

// hostile network: accept back-off and per-client-address limits
std::string accept_metrics(const server_view& s) {
    writer w;
    w.counter("datapump_accept_errors_total",
              "accept() failures (EMFILE, ENFILE...: accepting pauses after each; docs/daemon.md \"Limits\").",
              s.accept_errors);
    w.counter("datapump_accept_shed_total",
              "Connections accepted through the spare descriptor at exhaustion, answered 503 and closed.",
              s.accept_shed);
    w.family("datapump_per_ip_refusals_total", "counter",
             "Connections or streams refused because their client address held its limit, by limit.");
    w.sample("datapump_per_ip_refusals_total", "limit", "connections", s.per_ip_refused_connections);
    w.sample("datapump_per_ip_refusals_total", "limit", "streams", s.per_ip_refused_streams);
    w.sample("datapump_per_ip_refusals_total", "limit", "rate", s.per_ip_refused_rate);
    return w.take();
}

std::string rt_metrics(const rt_view& r) {
    writer w;
    w.gauge("datapump_rt_connections", "Paced streams running on the rt scheduler (one timer connection each).",
            r.connections);
    w.counter("datapump_rt_refusals_total", "Paced streams refused (503) by the rt scheduler's admission (density).",
              r.refusals);
    w.counter("datapump_rt_deadline_misses_total",
              "Pacing ticks that ended after their deadline (one period), every paced stream summed.",
              r.deadline_misses);
    w.counter("datapump_rt_overruns_total", "Pacing ticks that ran longer than their declared budget.", r.overruns);
    w.family("datapump_rt_vp_density", "gauge",
             "Admitted density (sum of budget / period) of each rt virtual processor, against the limit.");
    for (const auto& v : r.vps) {
        const auto millionths = static_cast<std::uint64_t>(std::llround(v.density * 1e6));
        w.fixed("datapump_rt_vp_density", "vp", std::to_string(v.index), millionths, 6);
    }
    return w.take();
}

std::string cache_metrics(const cache_view& c) {
    writer w;
    w.gauge("datapump_cache_buffers", "Buffers in the cache arena.", c.buffers);
    w.gauge("datapump_cache_arena_huge_page_bytes", "Bytes of the cache arena in huge pages (at start).",
            c.huge_page_bytes);
    w.counter("datapump_cache_hits_total", "Cache look-ups that found the block resident.", c.hits);
    w.counter("datapump_cache_misses_total", "Cache look-ups that had to read the block.", c.misses);
    w.counter("datapump_cache_collisions_total", "Look-ups that found a block being loaded by another reader.",
            c.collisions);
    w.counter("datapump_cache_fallbacks_total", "Reads that bypassed the cache (no free buffer).", c.fallbacks);
    w.counter("datapump_cache_evictions_total", "Blocks evicted to make room.", c.evictions);
    w.counter("datapump_cache_disk_reads_total", "Reads issued to the storage.", c.disk_reads);
    w.counter("datapump_cache_disk_bytes_total", "Bytes read from the storage.", c.disk_bytes);
    w.gauge("datapump_cache_loans_outstanding", "Cache buffers lent out and not yet returned.", c.loans_out);
    w.counter("datapump_prefetch_posted_total", "Prefetch requests posted.", c.prefetch_posted);
    w.counter("datapump_prefetch_dropped_total", "Prefetch requests dropped (mailbox full).", c.prefetch_dropped);
    w.gauge("datapump_open_files_cached", "Files kept open between requests (the open-file cache).", c.open_files);
    w.counter("datapump_open_cache_hits_total", "Requests that found their file open in the open-file cache.",
              c.open_hits);
    w.counter("datapump_open_cache_misses_total", "Requests that opened their file.", c.open_misses);
    w.counter("datapump_open_cache_forgotten_total", "Kept files dropped because they or a folder changed.",
              c.open_forgotten);
    w.counter("datapump_open_cache_evicted_total", "Kept files dropped for room or age.", c.open_evicted);
    w.counter("datapump_open_cache_unwatched_total", "Opens not kept because their folder could not be watched.",
              c.open_unwatched);
    return w.take();
}

std::string send_metrics(const send_view& s) {
    writer w;
    w.family("datapump_send_bytes_total", "counter", "Body bytes sent, by send path.");
    w.sample("datapump_send_bytes_total", "path", "sendfile", s.sendfile_bytes);
    w.sample("datapump_send_bytes_total", "path", "splice", s.splice_bytes);
    w.sample("datapump_send_bytes_total", "path", "send_zc", s.send_zc_bytes);
    w.sample("datapump_send_bytes_total", "path", "send", s.send_bytes);
    w.counter("datapump_send_zc_sends_total", "Zero-copy sends completed.", s.send_zc_sends);
    w.counter("datapump_send_zc_copied_total", "Zero-copy sends the kernel reported it copied.", s.send_zc_copied);
    w.counter("datapump_readahead_advice_total", "Read-ahead advice (WILLNEED) issued for windows not yet cached.",
              s.readahead_advice);
    return w.take();
}

std::string ingest_metrics(const ingest_view& v) {
    writer w;
    w.counter("datapump_ingest_received_bytes_total", "Upload body bytes received into arena buffers.", v.received);
    w.counter("datapump_ingest_copied_bytes_total",
              "Upload body bytes the engine copied (prefix read with the head, chunk data beside framing).",
              v.copied);
    w.counter("datapump_ingest_written_bytes_total", "Bytes written to storage by the ingest path.", v.written);
    w.counter("datapump_ingest_writes_total", "Storage write operations of the ingest path.", v.writes);
    w.counter("datapump_ingest_rmw_reads_total", "File-system blocks read for read-modify-write.", v.rmw_reads);
    w.counter("datapump_ingest_zero_filled_total", "Partial blocks past the end of file zero-filled.", v.zero_filled);
    w.family("datapump_uploads_total", "counter", "Uploads (PUT), by outcome.");
    w.sample("datapump_uploads_total", "outcome", "started", v.uploads_started);
    w.sample("datapump_uploads_total", "outcome", "completed", v.uploads_completed);
    w.sample("datapump_uploads_total", "outcome", "failed", v.uploads_failed);
    w.gauge("datapump_uploads_in_progress", "Uploads receiving or being published.", v.uploads_in_progress);
    w.counter("datapump_upload_leftovers_removed_total", "Temp files of interrupted uploads removed at start-up.",
              v.leftovers_removed);
    w.counter("datapump_publish_batches_total", "Groups of uploads made durable together (per upload: one each).",
              v.publish_batches);
    w.counter("datapump_publish_syncs_total", "fsync/syncfs calls made to publish uploads.", v.publish_syncs);
    return w.take();
}

std::string loop_metrics(const std::vector<loop_view>& loops) {
    writer w;
    w.family("datapump_loop_connections", "gauge", "Open connections, by event loop.");
    for (const auto& l : loops) {
        w.sample("datapump_loop_connections", "loop", std::to_string(l.index), l.connections);
    }
    w.family("datapump_loop_streams", "gauge", "Active streams, by event loop.");
    for (const auto& l : loops) {
        w.sample("datapump_loop_streams", "loop", std::to_string(l.index), l.streams);
    }
    w.family("datapump_loop_busy_seconds_total", "counter", "Seconds each event loop spent working, not waiting.");
    for (const auto& l : loops) {
        w.seconds("datapump_loop_busy_seconds_total", "loop", std::to_string(l.index), l.busy_ns, 9);
    }
    w.family("datapump_loop_wakeups_total", "counter", "Times each event loop woke up from waiting.");
    for (const auto& l : loops) {
        w.sample("datapump_loop_wakeups_total", "loop", std::to_string(l.index), l.wakeups);
    }
    return w.take();
}

// logs: a bound in microseconds as Prometheus's `le` label, in seconds without trailing zeros
// ("0.0001", "2.5", "60").
std::string le_label(std::uint64_t us) {
    std::string text = std::to_string(us / 1'000'000);
    if (const std::uint64_t frac = us % 1'000'000; frac != 0) {
        std::string digits = std::to_string(frac);
        digits.insert(0, 6 - digits.size(), '0');
        while (digits.back() == '0') {
            digits.pop_back();
        }
        text += '.';
        text += digits;
    }
    return text;
}

void histogram(writer& w, std::string_view name, std::string_view help, const histogram_view& h) {
    w.family(name, "histogram", help);
    const std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.bounds_us.size() && i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        w.sample(bucket, "le", le_label(h.bounds_us[i]), cumulative);
    }
    w.sample(bucket, "le", "+Inf", h.count);
    w.seconds(std::string(name) + "_sum", {}, {}, h.sum_us, 6);
    w.sample(std::string(name) + "_count", h.count);
}

std::string latency_metrics(const server_view& s) {
    writer w;
    histogram(w, "datapump_request_duration_seconds",
              "Time from a request's head read to its response's last byte sent (or the response cut).",
              s.request_duration);
    histogram(w, "datapump_time_to_first_byte_seconds",
              "Time from a request's head read to the first response byte taken by the socket.",
              s.time_to_first_byte);
    return w.take();
}

// The standard process_* families, named as Prometheus's client libraries name them.
std::string process_metrics(const process_view& p) {
    writer w;
    w.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    w.seconds("process_start_time_seconds", {}, {}, p.start_time_ms, 3);
    w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    w.seconds("process_cpu_seconds_total", {}, {}, p.cpu_us, 6);
    w.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes);
    w.gauge("process_open_fds", "Number of open file descriptors.", p.open_fds);
    w.gauge("process_max_fds", "Maximum number of open file descriptors.", p.max_fds);
    return w.take();
}

}  // namespace

std::string metrics_text(const server_view& server) {
    return server_metrics(server) + rt_metrics(server.rt) + cache_metrics(server.cache) + send_metrics(server.sends) +
           ingest_metrics(server.ingest) + loop_metrics(server.loops) + limit_metrics(server) +
           accept_metrics(server) + latency_metrics(server) + process_metrics(server.process);
}

}  // namespace datapump::http
