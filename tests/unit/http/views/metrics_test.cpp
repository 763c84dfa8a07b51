#include "datapump/http/views.hpp"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace datapump::http {
namespace {

server_view sample_server() {
    server_view s;
    s.version = "1.2\"3\\x\ny";
    s.uptime_ms = 61'005;
    s.provider = "posix";
    s.send_path = "sendfile";
    s.capacity = 100'000'000;
    s.reserved = 5'000'000;
    s.connections = 7;
    s.active_streams = 3;
    s.admission_refusals = 2;
    s.requests_by_status = {{200, 10}, {206, 4}, {404, 1}};
    s.bytes_sent = 123456789012;
    s.loops = {{0, 4, 2, 1'500'000'000, 99}, {1, 3, 1, 7, 5}};
    s.cache = {16, 262144, 100, 20, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 4194304};
    s.sends = {11, 12, 13, 14, 15, 16, 17};
    s.ingest = {21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33};
    s.accept_errors = 51;
    s.accept_shed = 52;
    s.per_ip_refused_connections = 53;
    s.per_ip_refused_streams = 54;
    s.per_ip_refused_rate = 55;
    s.rt.connections = 41;
    s.rt.refusals = 42;
    s.rt.deadline_misses = 43;
    s.rt.overruns = 44;
    s.rt.max_density = 0.9;
    s.rt.vps = {{0, 40, 0.0125, "SCHED_FIFO"}, {1, 1, 0.5, "nice -20"}};
    // hostile network: nothing held forever
    s.send_timeouts = 51;
    s.pause_timeouts = 52;
    s.stall_releases = 53;
    // logs: two bounds (1 ms, 1 s): 2 at most 1 ms, 1 in (1 ms, 1 s], 1 above; no first byte yet
    s.request_duration = {{1'000, 1'000'000}, {2, 1, 1}, 3'500'000, 4};
    s.process = {1'700'000'000'123, 1'500'000, 4096, 12, 1024};
    return s;
}

// A strict reader of the text format 0.0.4: every line is a HELP, a TYPE or a sample of the
// family announced last; label values are unescaped. Fails the test on anything else.
struct parsed_metrics {
    std::map<std::string, std::string> type;                     // family -> counter|gauge
    std::set<std::string> help;                                   // families with HELP
    std::map<std::string, std::string> value;                     // "name{labels}" -> value text
    std::map<std::string, std::map<std::string, std::string>> labels;  // "name{labels}" -> label -> value
};

parsed_metrics parse(const std::string& text) {
    parsed_metrics out;
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    const std::regex help_re(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\n]+)");
    const std::regex type_re(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
    const std::regex sample_re(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? ([0-9]+(\.[0-9]+)?))");
    const std::regex label_re(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|\}))re");
    std::string current;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::smatch m;
        if (std::regex_match(line, m, help_re)) {
            current = m[1];
            EXPECT_TRUE(out.help.insert(current).second) << "duplicate HELP " << line;
        } else if (std::regex_match(line, m, type_re)) {
            EXPECT_EQ(m[1], current) << "TYPE for another family than HELP: " << line;
            EXPECT_TRUE(out.type.emplace(m[1], m[2]).second) << "duplicate TYPE " << line;
        } else if (std::regex_match(line, m, sample_re)) {
            // logs: a histogram's samples are its family's name with _bucket, _sum or _count.
            const std::string name = m[1];
            const bool histogram_part = out.type[current] == "histogram" &&
                                        (name == current + "_bucket" || name == current + "_sum" ||
                                         name == current + "_count");
            EXPECT_TRUE(name == current || histogram_part) << "sample outside its family: " << line;
            const std::string key = std::string(m[1]) + std::string(m[2]);
            EXPECT_TRUE(out.value.emplace(key, m[3]).second) << "duplicate sample " << line;
            std::string labels = m[2];
            if (!labels.empty()) {
                labels = labels.substr(1);
                std::smatch l;
                while (std::regex_search(labels, l, label_re, std::regex_constants::match_continuous)) {
                    std::string raw = l[2];
                    std::string unescaped;
                    for (std::size_t i = 0; i < raw.size(); ++i) {
                        if (raw[i] == '\\') {
                            ++i;
                            unescaped += raw[i] == 'n' ? '\n' : raw[i];
                        } else {
                            unescaped += raw[i];
                        }
                    }
                    out.labels[key][l[1]] = unescaped;
                    labels = l.suffix();
                }
                EXPECT_TRUE(labels.empty()) << "bad labels in " << line;
            }
        } else {
            ADD_FAILURE() << "not a valid exposition line: '" << line << "'";
        }
    }
    return out;
}

TEST(metrics_text, every_family_with_help_type_and_values) {
    const auto m = parse(metrics_text(sample_server()));
    const std::map<std::string, std::string> families{
        {"datapump_requests_total", "counter"},
        {"datapump_bytes_sent_total", "counter"},
        {"datapump_connections", "gauge"},
        {"datapump_active_streams", "gauge"},
        {"datapump_admission_refusals_total", "counter"},
        {"datapump_admission_capacity_bytes_per_second", "gauge"},
        {"datapump_admission_reserved_bytes_per_second", "gauge"},
        {"datapump_rt_connections", "gauge"},
        {"datapump_rt_refusals_total", "counter"},
        {"datapump_rt_deadline_misses_total", "counter"},
        {"datapump_rt_overruns_total", "counter"},
        {"datapump_rt_vp_density", "gauge"},
        {"datapump_cache_buffers", "gauge"},
        {"datapump_cache_arena_huge_page_bytes", "gauge"},
        {"datapump_cache_hits_total", "counter"},
        {"datapump_cache_misses_total", "counter"},
        {"datapump_cache_collisions_total", "counter"},
        {"datapump_cache_fallbacks_total", "counter"},
        {"datapump_cache_evictions_total", "counter"},
        {"datapump_cache_disk_reads_total", "counter"},
        {"datapump_cache_disk_bytes_total", "counter"},
        {"datapump_cache_loans_outstanding", "gauge"},
        {"datapump_prefetch_posted_total", "counter"},
        {"datapump_prefetch_dropped_total", "counter"},
        {"datapump_open_files_cached", "gauge"},
        {"datapump_open_cache_hits_total", "counter"},
        {"datapump_open_cache_misses_total", "counter"},
        {"datapump_open_cache_forgotten_total", "counter"},
        {"datapump_open_cache_evicted_total", "counter"},
        {"datapump_open_cache_unwatched_total", "counter"},
        {"datapump_send_bytes_total", "counter"},
        {"datapump_send_zc_sends_total", "counter"},
        {"datapump_send_zc_copied_total", "counter"},
        {"datapump_readahead_advice_total", "counter"},
        {"datapump_ingest_received_bytes_total", "counter"},
        {"datapump_ingest_copied_bytes_total", "counter"},
        {"datapump_ingest_written_bytes_total", "counter"},
        {"datapump_ingest_writes_total", "counter"},
        {"datapump_ingest_rmw_reads_total", "counter"},
        {"datapump_ingest_zero_filled_total", "counter"},
        {"datapump_uploads_total", "counter"},
        {"datapump_uploads_in_progress", "gauge"},
        {"datapump_upload_leftovers_removed_total", "counter"},
        {"datapump_publish_batches_total", "counter"},
        {"datapump_publish_syncs_total", "counter"},
        {"datapump_loop_connections", "gauge"},
        {"datapump_loop_streams", "gauge"},
        {"datapump_loop_busy_seconds_total", "counter"},
        {"datapump_loop_wakeups_total", "counter"},
        {"datapump_uptime_seconds", "gauge"},
        {"datapump_info", "gauge"},
        // hostile network: nothing held forever
        {"datapump_send_timeouts_total", "counter"},
        {"datapump_pause_timeouts_total", "counter"},
        {"datapump_stall_releases_total", "counter"},
        {"datapump_accept_errors_total", "counter"},
        {"datapump_accept_shed_total", "counter"},
        {"datapump_per_ip_refusals_total", "counter"},
        // logs
        {"datapump_request_duration_seconds", "histogram"},
        {"datapump_time_to_first_byte_seconds", "histogram"},
        {"process_start_time_seconds", "gauge"},
        {"process_cpu_seconds_total", "counter"},
        {"process_resident_memory_bytes", "gauge"},
        {"process_open_fds", "gauge"},
        {"process_max_fds", "gauge"},
    };
    EXPECT_EQ(m.type, families);
    EXPECT_EQ(m.help.size(), families.size());

    const std::map<std::string, std::string> expected{
        {R"(datapump_requests_total{status="200"})", "10"},
        {R"(datapump_requests_total{status="206"})", "4"},
        {R"(datapump_requests_total{status="404"})", "1"},
        {"datapump_bytes_sent_total", "123456789012"},
        {"datapump_connections", "7"},
        {"datapump_active_streams", "3"},
        {"datapump_admission_refusals_total", "2"},
        {"datapump_admission_capacity_bytes_per_second", "100000000"},
        {"datapump_admission_reserved_bytes_per_second", "5000000"},
        {"datapump_rt_connections", "41"},
        {"datapump_rt_refusals_total", "42"},
        {"datapump_rt_deadline_misses_total", "43"},
        {"datapump_rt_overruns_total", "44"},
        {R"(datapump_rt_vp_density{vp="0"})", "0.012500"},
        {R"(datapump_rt_vp_density{vp="1"})", "0.500000"},
        {"datapump_cache_buffers", "16"},
        {"datapump_cache_arena_huge_page_bytes", "4194304"},
        {"datapump_cache_hits_total", "100"},
        {"datapump_cache_misses_total", "20"},
        {"datapump_cache_collisions_total", "3"},
        {"datapump_cache_fallbacks_total", "4"},
        {"datapump_cache_evictions_total", "5"},
        {"datapump_cache_disk_reads_total", "6"},
        {"datapump_cache_disk_bytes_total", "7"},
        {"datapump_cache_loans_outstanding", "8"},
        {"datapump_prefetch_posted_total", "9"},
        {"datapump_prefetch_dropped_total", "10"},
        {"datapump_open_files_cached", "11"},
        {"datapump_open_cache_hits_total", "12"},
        {"datapump_open_cache_misses_total", "13"},
        {"datapump_open_cache_forgotten_total", "14"},
        {"datapump_open_cache_evicted_total", "15"},
        {"datapump_open_cache_unwatched_total", "16"},
        {R"(datapump_send_bytes_total{path="sendfile"})", "11"},
        {R"(datapump_send_bytes_total{path="splice"})", "12"},
        {R"(datapump_send_bytes_total{path="send_zc"})", "13"},
        {R"(datapump_send_bytes_total{path="send"})", "16"},
        {"datapump_send_zc_sends_total", "14"},
        {"datapump_send_zc_copied_total", "15"},
        {"datapump_readahead_advice_total", "17"},
        {"datapump_ingest_received_bytes_total", "21"},
        {"datapump_ingest_copied_bytes_total", "22"},
        {"datapump_ingest_written_bytes_total", "23"},
        {"datapump_ingest_writes_total", "24"},
        {"datapump_ingest_rmw_reads_total", "25"},
        {"datapump_ingest_zero_filled_total", "26"},
        {R"(datapump_uploads_total{outcome="started"})", "27"},
        {R"(datapump_uploads_total{outcome="completed"})", "28"},
        {R"(datapump_uploads_total{outcome="failed"})", "29"},
        {"datapump_uploads_in_progress", "30"},
        {"datapump_upload_leftovers_removed_total", "31"},
        {"datapump_publish_batches_total", "32"},
        {"datapump_publish_syncs_total", "33"},
        {R"(datapump_loop_connections{loop="0"})", "4"},
        {R"(datapump_loop_connections{loop="1"})", "3"},
        {R"(datapump_loop_streams{loop="0"})", "2"},
        {R"(datapump_loop_streams{loop="1"})", "1"},
        {R"(datapump_loop_busy_seconds_total{loop="0"})", "1.500000000"},
        {R"(datapump_loop_busy_seconds_total{loop="1"})", "0.000000007"},
        {R"(datapump_loop_wakeups_total{loop="0"})", "99"},
        {R"(datapump_loop_wakeups_total{loop="1"})", "5"},
        {"datapump_uptime_seconds", "61.005"},
        // hostile network: nothing held forever
        {"datapump_send_timeouts_total", "51"},
        {"datapump_pause_timeouts_total", "52"},
        {"datapump_stall_releases_total", "53"},
        {"datapump_accept_errors_total", "51"},
        {"datapump_accept_shed_total", "52"},
        {R"(datapump_per_ip_refusals_total{limit="connections"})", "53"},
        {R"(datapump_per_ip_refusals_total{limit="streams"})", "54"},
        {R"(datapump_per_ip_refusals_total{limit="rate"})", "55"},
        // logs: buckets are cumulative, +Inf is the count
        {R"(datapump_request_duration_seconds_bucket{le="0.001"})", "2"},
        {R"(datapump_request_duration_seconds_bucket{le="1"})", "3"},
        {R"(datapump_request_duration_seconds_bucket{le="+Inf"})", "4"},
        {"datapump_request_duration_seconds_sum", "3.500000"},
        {"datapump_request_duration_seconds_count", "4"},
        {R"(datapump_time_to_first_byte_seconds_bucket{le="+Inf"})", "0"},
        {"datapump_time_to_first_byte_seconds_sum", "0.000000"},
        {"datapump_time_to_first_byte_seconds_count", "0"},
        {"process_start_time_seconds", "1700000000.123"},
        {"process_cpu_seconds_total", "1.500000"},
        {"process_resident_memory_bytes", "4096"},
        {"process_open_fds", "12"},
        {"process_max_fds", "1024"},
    };
    for (const auto& [key, value] : expected) {
        const auto it = m.value.find(key);
        ASSERT_NE(it, m.value.end()) << key;
        EXPECT_EQ(it->second, value) << key;
    }
    EXPECT_EQ(m.value.size(), expected.size() + 1);  // + datapump_info
}

TEST(metrics_text, label_values_are_escaped) {
    const std::string text = metrics_text(sample_server());
    EXPECT_NE(text.find(R"(datapump_info{version="1.2\"3\\x\ny",provider="posix",send_path="sendfile"} 1)"),
              std::string::npos)
        << text;
    const auto m = parse(text);
    // 3 status + 4 paths + 3 upload outcomes + 4 x 2 loops + 2 VPs + info + 3 per-IP limits
    // + 3 + 1 histogram buckets (logs)
    ASSERT_EQ(m.labels.size(), 28U);
    const auto& info = m.labels.at(R"(datapump_info{version="1.2\"3\\x\ny",provider="posix",send_path="sendfile"})");
    EXPECT_EQ(info.at("version"), "1.2\"3\\x\ny");
    EXPECT_EQ(info.at("provider"), "posix");
}

TEST(metrics_text, empty_server_still_announces_every_family) {
    const auto m = parse(metrics_text(server_view{}));
    // + 3: hostile network, nothing held forever; + 3: accept back-off and per-address limits
    // + 7: the histograms and process_* (logs); + 6: the open-file cache; + 1: the arena's huge pages
    EXPECT_EQ(m.type.size(), 44U + 3U + 3U + 7U + 6U + 1U);
    EXPECT_EQ(m.value.count("datapump_uptime_seconds"), 1U);
    EXPECT_EQ(m.value.at("datapump_uptime_seconds"), "0.000");
    EXPECT_EQ(m.value.count(R"(datapump_requests_total{status="200"})"), 0U);
}

}  // namespace
}  // namespace datapump::http
