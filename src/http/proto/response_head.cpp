#include "datapump/http/proto/response_head.hpp"

#include "datapump/base/check.hpp"
#include "datapump/http/proto/validators.hpp"

namespace datapump::http {

namespace {

// RFC 9110 tchar.
bool is_token_char(char c) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        return true;
    }
    constexpr std::string_view specials = "!#$%&'*+-.^_`|~";
    return specials.find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (const char c : s) {
        if (!is_token_char(c)) {
            return false;
        }
    }
    return true;
}

}  // namespace

std::string_view reason_phrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 204:
            return "No Content";
        case 206:
            return "Partial Content";
        case 301:
            return "Moved Permanently";
        case 304:
            return "Not Modified";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 411:
            return "Length Required";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 416:
            return "Range Not Satisfiable";
        case 417:
            return "Expectation Failed";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 503:
            return "Service Unavailable";
        case 505:
            return "HTTP Version Not Supported";
        case 507:
            return "Insufficient Storage";
        default:
            return "Unknown";
    }
}

response_head::response_head(int status) {
    DP_CHECK(status >= 100 && status <= 999);
    const std::string_view reason = reason_phrase(status);
    text_.reserve(256);
    text_ += "HTTP/1.1 ";
    text_ += std::to_string(status);
    text_ += ' ';
    text_ += reason;
    text_ += "\r\n";
}

response_head& response_head::add(std::string_view name, std::string_view value) {
    DP_CHECK(is_token(name));
    text_ += name;
    text_ += ": ";
    for (const char c : value) {
        text_.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
    }
    text_ += "\r\n";
    return *this;
}

response_head& response_head::add(std::string_view name, std::uint64_t value) {
    return add(name, std::string_view(std::to_string(value)));
}

response_head& response_head::add_date(std::int64_t now_unix_seconds) {
    return add("Date", std::string_view(http_date(now_unix_seconds)));
}

std::string response_head::finish() && {
    text_ += "\r\n";
    return std::move(text_);
}

}  // namespace datapump::http
