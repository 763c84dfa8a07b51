#include "access_line.hpp"

#include <ctime>
#include <fmt/format.h>

namespace datapump::http {
namespace {

std::tm local_time(std::chrono::system_clock::time_point t) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::localtime_r(&seconds, &tm);
    return tm;
}

// "+0100" as nginx's $time_local writes it, or "+01:00" (ISO 8601).
std::string utc_offset(const std::tm& tm, bool colon) {
    const long offset = tm.tm_gmtoff;
    const long minutes = (offset < 0 ? -offset : offset) / 60;
    return fmt::format("{}{:02}{}{:02}", offset < 0 ? '-' : '+', minutes / 60, colon ? ":" : "", minutes % 60);
}

std::string or_dash(std::string_view v) { return v.empty() ? std::string("-") : std::string(v); }

// The values are log_escape()d already: printable ASCII and well-formed UTF-8 without '"', so
// only the '\' of their \xHH escapes needs JSON's escaping.
void json_string(std::string& out, std::string_view v) {
    out += '"';
    for (const char c : v) {
        if (c == '\\') {
            out += "\\\\";
        } else {
            out += c;
        }
    }
    out += '"';
}

void json_or_null(std::string& out, std::string_view v) {
    if (v.empty()) {
        out += "null";
    } else {
        json_string(out, v);
    }
}

std::string seconds(std::chrono::microseconds d, int decimals) {
    const double s = static_cast<double>(d.count()) / 1e6;
    return fmt::format("{:.{}f}", s, decimals);
}

}  // namespace

std::string_view address_of(std::string_view peer) {
    if (peer.starts_with('[')) {
        const auto close = peer.find(']');
        return close == std::string_view::npos ? peer : peer.substr(1, close - 1);
    }
    const auto colon = peer.rfind(':');
    return colon == std::string_view::npos ? peer : peer.substr(0, colon);
}

std::string format_access_line(const access_record& r, access_log_format format) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.time.time_since_epoch()).count() % 1000;
    const std::tm tm = local_time(r.time);
    const bool parsed = !r.method.empty();
    if (format == access_log_format::combined) {
        char when[32];
        std::strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S", &tm);
        const std::string request =
            parsed ? fmt::format("{} {} {}", r.method, r.target, r.protocol) : std::string("-");
        return fmt::format("{} - - [{} {}] \"{}\" {} {} \"{}\" \"{}\" \"{}\" {}", r.remote_addr, when,
                           utc_offset(tm, false), request, r.status, r.body_bytes, or_dash(r.referer),
                           or_dash(r.user_agent), or_dash(r.range), seconds(r.duration, 3));
    }
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    std::string out = fmt::format("{{\"time\":\"{}.{:03}{}\",\"remote_addr\":", when, ms, utc_offset(tm, true));
    json_string(out, r.remote_addr);
    out += ",\"method\":";
    json_or_null(out, r.method);
    out += ",\"target\":";
    json_or_null(out, r.target);
    out += ",\"protocol\":";
    json_or_null(out, r.protocol);
    out += fmt::format(",\"status\":{},\"body_bytes_sent\":{},\"referer\":", r.status, r.body_bytes);
    json_or_null(out, r.referer);
    out += ",\"user_agent\":";
    json_or_null(out, r.user_agent);
    out += ",\"range\":";
    json_or_null(out, r.range);
    out += fmt::format(",\"duration_s\":{},\"first_byte_s\":{},\"completed\":{}}}", seconds(r.duration, 6),
                       r.first_byte.count() < 0 ? std::string("null") : seconds(r.first_byte, 6),
                       r.completed ? "true" : "false");
    return out;
}

}  // namespace datapump::http
