#include "datapump/http/proto/response_head.hpp"

#include <gtest/gtest.h>
#include <string>

namespace datapump::http {
namespace {

TEST(response_head, builds_status_line_fields_and_blank_line) {
    response_head head(206);
    head.add("Content-Type", "video/mp4").add("Content-Length", std::uint64_t{500}).add_date(784111777);
    EXPECT_EQ(head.text(),
              "HTTP/1.1 206 Partial Content\r\nContent-Type: video/mp4\r\nContent-Length: 500\r\n"
              "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
    const std::string text = std::move(head).finish();
    EXPECT_EQ(text,
              "HTTP/1.1 206 Partial Content\r\nContent-Type: video/mp4\r\nContent-Length: 500\r\n"
              "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n");
}

TEST(response_head, status_only) {
    EXPECT_EQ(response_head(304).finish(), "HTTP/1.1 304 Not Modified\r\n\r\n");
    EXPECT_EQ(response_head(299).finish(), "HTTP/1.1 299 Unknown\r\n\r\n");
}

TEST(response_head, values_cannot_split_the_head) {
    response_head head(301);
    head.add("Location", std::string_view("/a\r\nSet-Cookie: x\0y\n", 20));
    EXPECT_EQ(std::move(head).finish(),
              std::string("HTTP/1.1 301 Moved Permanently\r\nLocation: /a  Set-Cookie: x y \r\n\r\n"));
}

TEST(response_head, empty_value) {
    response_head head(200);
    head.add("X-Empty", "");
    EXPECT_EQ(head.text(), "HTTP/1.1 200 OK\r\nX-Empty: \r\n");
}

TEST(response_head, bad_arguments_are_bugs) {
    EXPECT_DEATH(static_cast<void>(response_head(99)), "");
    EXPECT_DEATH(static_cast<void>(response_head(1000)), "");
    EXPECT_DEATH(
        {
            response_head head(200);
            head.add("Bad Name", "x");
        },
        "");
    EXPECT_DEATH(
        {
            response_head head(200);
            head.add("", "x");
        },
        "");
}

TEST(reason_phrase, every_status_the_server_sends) {
    const std::pair<int, std::string_view> cases[] = {
        {200, "OK"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {416, "Range Not Satisfiable"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    for (const auto& [status, reason] : cases) {
        EXPECT_EQ(reason_phrase(status), reason) << status;
        EXPECT_EQ(response_head(status).finish(),
                  "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n\r\n");
    }
    EXPECT_EQ(reason_phrase(418), "Unknown");
    EXPECT_EQ(reason_phrase(0), "Unknown");
}

}  // namespace
}  // namespace datapump::http
