// File: datapump/http/proto/response_head.hpp
//
// Builds the head of an HTTP/1.1 response (status line, fields, blank line) into one string, the
// buffer the connection sends before the body:
//
//   response_head head(206);
//   head.add("Content-Type", "video/mp4").add("Content-Length", 500).add_date(now);
//   std::string text = std::move(head).finish();   // "HTTP/1.1 206 Partial Content\r\n...\r\n\r\n"
//
// Field values are written as given except CR, LF and NUL, which become spaces: a value built
// from request data (a path in a Location) can never split the head.
//
// Ownership: owns its text until finish() moves it out. Thread-safety: none (a plain value).
#pragma once

#include "datapump/base/export.hpp"

#include <cstdint>
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

// The reason phrase for the statuses the server sends (200 204 206 301 304 400 403 404 405 408
// 411 413 414 416 431 500 501 503 505), RFC 9110 wording; "Unknown" for any other. Static storage.
[[nodiscard]] std::string_view reason_phrase(int status);

class response_head {
public:
    // Writes the status line. `status` must be 100..999 (a bug otherwise: aborts).
    explicit response_head(int status);

    // Appends "name: value\r\n". `name` must be a non-empty token (a bug otherwise: aborts).
    response_head& add(std::string_view name, std::string_view value);
    // Appends "name: <decimal value>\r\n" (Content-Length and the like).
    response_head& add(std::string_view name, std::uint64_t value);
    // Appends "Date: <IMF-fixdate of now_unix_seconds>\r\n".
    response_head& add_date(std::int64_t now_unix_seconds);

    // The text so far, without the closing blank line (for logs and tests).
    [[nodiscard]] std::string_view text() const { return text_; }

    // Appends the blank line and hands the whole head over.
    [[nodiscard]] std::string finish() &&;

private:
    std::string text_;
};

}  // namespace datapump::http
DATAPUMP_API_END
