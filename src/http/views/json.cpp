// The JSON of the control API. Field names are the contract of docs/daemon.md and of the status
// page: change them together.
#include "datapump/http/views.hpp"

#include <nlohmann/json.hpp>

namespace datapump::http {
namespace {

using json = nlohmann::json;

// File names and client text are bytes, not necessarily UTF-8: replace bad sequences with U+FFFD
// instead of letting dump() throw.
std::string dump(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json to_json(const stream_view& s) {
    return json{
        {"id", s.id},
        {"client", s.client},
        {"file", s.file},
        {"start", s.start},
        {"end", s.end},
        {"position", s.position},
        {"bytes_sent", s.bytes_sent},
        {"rate", s.rate},
        {"burst", s.burst},
        {"state", s.state},
        {"speed", s.speed},
        {"loop", s.loop},
        {"send_path", s.send_path},
    };
}

json to_json(const loop_view& l) {
    return json{
        {"index", l.index},
        {"connections", l.connections},
        {"streams", l.streams},
        {"busy_ns", l.busy_ns},
        {"wakeups", l.wakeups},
    };
}

json to_json(const cache_view& c) {
    return json{
        {"buffers", c.buffers},
        {"buffer_size", c.buffer_size},
        {"huge_page_bytes", c.huge_page_bytes},
        {"hits", c.hits},
        {"misses", c.misses},
        {"collisions", c.collisions},
        {"fallbacks", c.fallbacks},
        {"evictions", c.evictions},
        {"disk_reads", c.disk_reads},
        {"disk_bytes", c.disk_bytes},
        {"loans_out", c.loans_out},
        {"prefetch_posted", c.prefetch_posted},
        {"prefetch_dropped", c.prefetch_dropped},
    };
}

json to_json(const send_view& s) {
    return json{
        {"sendfile_bytes", s.sendfile_bytes},
        {"splice_bytes", s.splice_bytes},
        {"send_zc_bytes", s.send_zc_bytes},
        {"send_zc_sends", s.send_zc_sends},
        {"send_zc_copied", s.send_zc_copied},
        {"send_bytes", s.send_bytes},
        {"readahead_advice", s.readahead_advice},
    };
}

json to_json(const rt_view& r) {
    json vps = json::array();
    for (const auto& v : r.vps) {
        vps.push_back(json{
            {"index", v.index},
            {"connections", v.connections},
            {"density", v.density},
            {"priority", v.priority},
        });
    }
    return json{
        {"connections", r.connections},
        {"refusals", r.refusals},
        {"deadline_misses", r.deadline_misses},
        {"overruns", r.overruns},
        {"max_density", r.max_density},
        {"vps", std::move(vps)},
    };
}

}  // namespace

std::string stream_json(const stream_view& stream) {
    return dump(to_json(stream));
}

std::string streams_json(const std::vector<stream_view>& streams) {
    json list = json::array();
    for (const auto& s : streams) {
        list.push_back(to_json(s));
    }
    return dump(json{{"streams", std::move(list)}});
}

std::string status_json(const server_view& server) {
    json requests = json::object();
    for (const auto& [status, count] : server.requests_by_status) {
        requests[std::to_string(status)] = count;
    }
    json loops = json::array();
    for (const auto& l : server.loops) {
        loops.push_back(to_json(l));
    }
    return dump(json{
        {"version", server.version},
        {"uptime_ms", server.uptime_ms},
        {"provider", server.provider},
        {"send_path", server.send_path},
        {"capacity", server.capacity},
        {"reserved", server.reserved},
        {"connections", server.connections},
        {"active_streams", server.active_streams},
        {"admission_refusals", server.admission_refusals},
        {"requests_by_status", std::move(requests)},
        {"bytes_sent", server.bytes_sent},
        {"loops", std::move(loops)},
        {"cache", to_json(server.cache)},
        {"sends", to_json(server.sends)},
        {"ingest",
         {{"received", server.ingest.received},
          {"copied", server.ingest.copied},
          {"written", server.ingest.written},
          {"writes", server.ingest.writes},
          {"rmw_reads", server.ingest.rmw_reads},
          {"zero_filled", server.ingest.zero_filled},
          {"uploads_started", server.ingest.uploads_started},
          {"uploads_completed", server.ingest.uploads_completed},
          {"uploads_failed", server.ingest.uploads_failed},
          {"uploads_in_progress", server.ingest.uploads_in_progress},
          {"leftovers_removed", server.ingest.leftovers_removed},
          {"publish_batches", server.ingest.publish_batches},
          {"publish_syncs", server.ingest.publish_syncs}}},
        {"rt", to_json(server.rt)},
        // hostile network: nothing held forever
        {"send_timeouts", server.send_timeouts},
        {"pause_timeouts", server.pause_timeouts},
        {"stall_releases", server.stall_releases},
        // hostile network: accept back-off and per-client-address limits
        {"accept_errors", server.accept_errors},
        {"accept_shed", server.accept_shed},
        {"per_ip_refusals",
         {{"connections", server.per_ip_refused_connections},
          {"streams", server.per_ip_refused_streams},
          {"rate", server.per_ip_refused_rate}}},
    });
}

std::string control_reply(bool ok, std::string_view error_or_empty, const stream_view* stream) {
    json reply{{"ok", ok}};
    if (!ok) {
        reply["error"] = std::string(error_or_empty);
    } else if (stream != nullptr) {
        reply["stream"] = to_json(*stream);
    }
    return dump(reply);
}

}  // namespace datapump::http
