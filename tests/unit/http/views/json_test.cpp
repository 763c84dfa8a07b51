#include "datapump/http/views.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>

namespace datapump::http {
namespace {

using json = nlohmann::json;

stream_view sample_stream() {
    stream_view s;
    s.id = 12;
    s.client = "203.0.113.7:51234";
    s.file = "videos/a \"b\" <c>.mp4";
    s.start = 100;
    s.end = 1'100;
    s.position = 600;
    s.bytes_sent = 500;
    s.rate = 5'000'000;
    s.burst = 262'144;
    s.state = "paused";
    s.speed = 4;
    s.loop = 1;
    s.send_path = "send_zc";
    return s;
}

std::set<std::string> keys(const json& object) {
    std::set<std::string> out;
    for (const auto& [key, value] : object.items()) {
        out.insert(key);
    }
    return out;
}

void expect_stream(const json& j, const stream_view& s) {
    EXPECT_EQ(keys(j), (std::set<std::string>{"id", "client", "file", "start", "end", "position", "bytes_sent",
                                              "rate", "burst", "state", "speed", "loop", "send_path"}));
    EXPECT_EQ(j.at("id").get<std::uint64_t>(), s.id);
    EXPECT_EQ(j.at("client").get<std::string>(), s.client);
    EXPECT_EQ(j.at("file").get<std::string>(), s.file);
    EXPECT_EQ(j.at("start").get<std::uint64_t>(), s.start);
    EXPECT_EQ(j.at("end").get<std::uint64_t>(), s.end);
    EXPECT_EQ(j.at("position").get<std::uint64_t>(), s.position);
    EXPECT_EQ(j.at("bytes_sent").get<std::uint64_t>(), s.bytes_sent);
    EXPECT_EQ(j.at("rate").get<std::uint64_t>(), s.rate);
    EXPECT_EQ(j.at("burst").get<std::uint64_t>(), s.burst);
    EXPECT_EQ(j.at("state").get<std::string>(), s.state);
    EXPECT_EQ(j.at("speed").get<std::uint32_t>(), s.speed);
    EXPECT_EQ(j.at("loop").get<unsigned>(), s.loop);
    EXPECT_EQ(j.at("send_path").get<std::string>(), s.send_path);
}

TEST(views_json, stream_round_trips_with_the_documented_fields) {
    const stream_view s = sample_stream();
    expect_stream(json::parse(stream_json(s)), s);
}

TEST(views_json, streams_list) {
    stream_view a = sample_stream();
    stream_view b = sample_stream();
    b.id = 13;
    b.state = "playing";
    const json j = json::parse(streams_json({a, b}));
    EXPECT_EQ(keys(j), std::set<std::string>{"streams"});
    ASSERT_EQ(j.at("streams").size(), 2U);
    expect_stream(j["streams"][0], a);
    expect_stream(j["streams"][1], b);
    EXPECT_EQ(json::parse(streams_json({})), json::parse(R"({"streams":[]})"));
}

TEST(views_json, bytes_that_are_not_utf8_do_not_throw) {
    stream_view s = sample_stream();
    s.file = std::string("bad\xff\xfe name.bin");
    std::string text;
    ASSERT_NO_THROW(text = stream_json(s));
    const json j = json::parse(text);
    EXPECT_EQ(j.at("file").get<std::string>(), "bad\xEF\xBF\xBD\xEF\xBF\xBD name.bin");
    ASSERT_NO_THROW(text = control_reply(false, "no stream \xc3", nullptr));
    EXPECT_TRUE(json::parse(text).at("error").is_string());
}

TEST(views_json, status_has_every_field) {
    server_view s;
    s.version = "0.1.0";
    s.uptime_ms = 5000;
    s.provider = "direct";
    s.send_path = "send_zc";
    s.capacity = 1000;
    s.reserved = 500;
    s.connections = 3;
    s.active_streams = 2;
    s.admission_refusals = 1;
    s.requests_by_status = {{200, 9}, {503, 1}};
    s.bytes_sent = 4242;
    s.loops = {{0, 1, 2, 3, 4}, {1, 5, 6, 7, 8}};
    s.cache = {16, 262144, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    s.cache.huge_page_bytes = 2097152;
    s.sends = {11, 12, 13, 14, 15, 16, 17};
    s.rt.connections = 2;
    s.rt.refusals = 3;
    s.rt.deadline_misses = 4;
    s.rt.overruns = 5;
    s.rt.max_density = 0.5;
    s.rt.vps = {{0, 2, 0.25, "SCHED_FIFO"}};
    s.accept_errors = 6;
    s.per_ip_refused_streams = 7;
    const json j = json::parse(status_json(s));
    EXPECT_EQ(j["accept_errors"], 6);
    EXPECT_EQ(j["per_ip_refusals"], json::parse(R"({"connections":0,"streams":7,"rate":0})"));
    EXPECT_EQ(keys(j), (std::set<std::string>{"version", "uptime_ms", "provider", "send_path", "capacity", "reserved",
                                              "connections", "active_streams", "admission_refusals",
                                              "requests_by_status", "bytes_sent", "loops", "cache", "sends",
                                              "ingest", "rt",
                                              // hostile network: nothing held forever
                                              "send_timeouts", "pause_timeouts", "stall_releases",
                                              // hostile network: accept back-off, per-address limits
                                              "accept_errors", "accept_shed", "per_ip_refusals"}));
    EXPECT_EQ(j["rt"], json::parse(R"({"connections":2,"refusals":3,"deadline_misses":4,"overruns":5,
        "max_density":0.5,"vps":[{"index":0,"connections":2,"density":0.25,"priority":"SCHED_FIFO"}]})"));
    EXPECT_EQ(j["ingest"]["received"], 0);
    EXPECT_EQ(j["ingest"].size(), 13U);
    EXPECT_EQ(j["ingest"]["publish_syncs"], 0);
    EXPECT_EQ(j["version"], "0.1.0");
    EXPECT_EQ(j["uptime_ms"], 5000);
    EXPECT_EQ(j["provider"], "direct");
    EXPECT_EQ(j["send_path"], "send_zc");
    EXPECT_EQ(j["capacity"], 1000);
    EXPECT_EQ(j["reserved"], 500);
    EXPECT_EQ(j["connections"], 3);
    EXPECT_EQ(j["active_streams"], 2);
    EXPECT_EQ(j["admission_refusals"], 1);
    EXPECT_EQ(j["requests_by_status"], json::parse(R"({"200":9,"503":1})"));
    EXPECT_EQ(j["bytes_sent"], 4242);
    EXPECT_EQ(j["loops"], json::parse(R"([{"index":0,"connections":1,"streams":2,"busy_ns":3,"wakeups":4},
                                          {"index":1,"connections":5,"streams":6,"busy_ns":7,"wakeups":8}])"));
    EXPECT_EQ(j["cache"], json::parse(R"({"buffers":16,"buffer_size":262144,"huge_page_bytes":2097152,"hits":1,"misses":2,"collisions":3,
        "fallbacks":4,"evictions":5,"disk_reads":6,"disk_bytes":7,"loans_out":8,"prefetch_posted":9,
        "prefetch_dropped":10})"));
    EXPECT_EQ(j["sends"], json::parse(R"({"sendfile_bytes":11,"splice_bytes":12,"send_zc_bytes":13,
        "send_zc_sends":14,"send_zc_copied":15,"send_bytes":16,"readahead_advice":17})"));
}

TEST(views_json, control_reply_shapes) {
    const stream_view s = sample_stream();
    json j = json::parse(control_reply(true, "", &s));
    EXPECT_EQ(keys(j), (std::set<std::string>{"ok", "stream"}));
    EXPECT_EQ(j["ok"], true);
    expect_stream(j["stream"], s);

    j = json::parse(control_reply(false, "no stream 12", nullptr));
    EXPECT_EQ(j, json::parse(R"({"ok":false,"error":"no stream 12"})"));
    // The stream is not shown with an error, and the error text is escaped.
    j = json::parse(control_reply(false, "bad \"offset\"\n", &s));
    EXPECT_EQ(j, json::parse(R"({"ok":false,"error":"bad \"offset\"\n"})"));
    EXPECT_EQ(json::parse(control_reply(true, "", nullptr)), json::parse(R"({"ok":true})"));
}

}  // namespace
}  // namespace datapump::http
