// File: src/http/server/access_line.hpp
//
// logs: one access-log line from what a connection knows when its response ends, in the formats
// of server_config::access_format (include/datapump/http/server.hpp says each field).
// Pure function; any thread.
#pragma once

#include "datapump/http/server.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace datapump::http {

struct access_record {
    std::string_view remote_addr;  // the client's address without its port ("unix" on the admin socket)
    std::chrono::system_clock::time_point time;  // when the response ended
    // The request, log_escape()d; "-" for a request that never parsed (its method, target empty).
    std::string_view method;
    std::string_view target;
    std::string_view protocol;  // "HTTP/1.1"
    int status = 0;
    std::uint64_t body_bytes = 0;  // body bytes actually sent
    // Request headers, log_escape()d; empty: absent ("-" in combined, null in JSON).
    std::string_view referer;
    std::string_view user_agent;
    std::string_view range;
    std::chrono::microseconds duration{0};
    std::chrono::microseconds first_byte{-1};  // negative: no byte was sent
    bool completed = true;  // false: cut before its last byte
};

[[nodiscard]] std::string format_access_line(const access_record& r, access_log_format format);

// "192.0.2.1:5000" -> "192.0.2.1", "[2001:db8::1]:80" -> "2001:db8::1", "unix" stays.
[[nodiscard]] std::string_view address_of(std::string_view peer);

}  // namespace datapump::http
