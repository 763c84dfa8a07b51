#include "config/values.hpp"

#include "datapump/http/proto/query.hpp"

#include <charconv>

namespace datapump::daemon::detail {
namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool all_digits(std::string_view text) {
    for (const char c : text) {
        if (!is_digit(c)) {
            return false;
        }
    }
    return true;
}

std::string quoted(std::string_view text) {
    std::string out = "'";
    out += text;
    out += "'";
    return out;
}

}  // namespace

parsed<std::uint64_t> parse_unsigned(std::string_view text, std::uint64_t max) {
    if (text.empty() || !all_digits(text)) {
        return std::unexpected(quoted(text) + " is not a whole number (digits only, e.g. 8)");
    }
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value > max) {
        return std::unexpected(quoted(text) + " is too large (at most " + std::to_string(max) + ")");
    }
    return value;
}

parsed<double> parse_decimal(std::string_view text) {
    const std::size_t point = text.find('.');
    const std::string_view whole = text.substr(0, point);
    const std::string_view fraction = point == std::string_view::npos ? std::string_view{} : text.substr(point + 1);
    if (whole.empty() || !all_digits(whole) || (point != std::string_view::npos && fraction.empty()) ||
        !all_digits(fraction)) {
        return std::unexpected(quoted(text) + " is not a decimal number (digits and one point, e.g. 0.9)");
    }
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed);
    if (ec != std::errc{} || end != text.data() + text.size()) {
        return std::unexpected(quoted(text) + " is out of range");
    }
    return value;
}

parsed<std::uint64_t> parse_rate(std::string_view text) {
    auto value = http::parse_rate(text);
    if (!value) {
        std::string_view why = value.error().what;
        if (why.starts_with("rate: ")) {
            why.remove_prefix(6);
        }
        return std::unexpected(quoted(text) + " is not a rate: " + std::string(why));
    }
    return *value;
}

parsed<bool> parse_switch(std::string_view text) {
    if (text == "on" || text == "true" || text == "yes" || text == "1") {
        return true;
    }
    if (text == "off" || text == "false" || text == "no" || text == "0") {
        return false;
    }
    return std::unexpected(quoted(text) + " is not a switch: write on or off");
}

parsed<listen_address> parse_listen(std::string_view text, bool allow_port_zero) {
    const std::string form = " (write HOST:PORT, [IPv6]:PORT or :PORT, e.g. 127.0.0.1:8080)";
    listen_address out;
    std::string_view rest;
    if (text.starts_with('[')) {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos) {
            return std::unexpected(quoted(text) + ": the IPv6 address has no closing ']'" + form);
        }
        out.host = std::string(text.substr(1, close - 1));
        rest = text.substr(close + 1);
        if (out.host.empty()) {
            return std::unexpected(quoted(text) + ": the address between [ and ] is empty" + form);
        }
    } else {
        const std::size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return std::unexpected(quoted(text) + " has no port" + form);
        }
        out.host = std::string(text.substr(0, colon));
        rest = text.substr(colon);
        if (out.host.find(':') != std::string::npos) {
            return std::unexpected(quoted(text) + ": put an IPv6 address in brackets, e.g. [::1]:8080");
        }
        if (out.host.empty()) {
            out.host = "0.0.0.0";
        }
    }
    if (!rest.starts_with(':') || rest.size() == 1) {
        return std::unexpected(quoted(text) + " has no port" + form);
    }
    const std::string_view port_text = rest.substr(1);
    const auto port = parse_unsigned(port_text, 65535);
    if (!port || (*port == 0 && !allow_port_zero)) {
        return std::unexpected(quoted(text) + ": the port must be a number from " + (allow_port_zero ? "0" : "1") +
                               " to 65535" + form);
    }
    out.port = static_cast<std::uint16_t>(*port);
    return out;
}

parsed<admin_listen> parse_admin_listen(std::string_view text) {
    admin_listen out;
    if (text == "off") {
        out.off = true;
        return out;
    }
    constexpr std::string_view unix_prefix = "unix:";
    if (text.starts_with(unix_prefix)) {
        out.socket = std::string(text.substr(unix_prefix.size()));
        if (!out.socket.starts_with('/')) {
            return std::unexpected(quoted(text) + ": give an absolute path after unix:, e.g. unix:/run/datapumpd/admin.sock");
        }
        if (out.socket.size() > 107) {
            return std::unexpected(quoted(text) + ": a unix socket path has at most 107 bytes (this one has " +
                                   std::to_string(out.socket.size()) + ")");
        }
        return out;
    }
    auto address = parse_listen(text, true);
    if (!address) {
        return std::unexpected(address.error() + "; or unix:/PATH, or off");
    }
    out.address = std::move(*address);
    return out;
}

}  // namespace datapump::daemon::detail
