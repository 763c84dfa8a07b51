#include "datapump/http/proto/cors.hpp"

#include "text.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

namespace datapump::http {
namespace {

// host[:port]: a DNS name or IPv4 address (letters, digits, '-', '.'), or an IPv6 literal in
// brackets, then an optional port of 1 to 5 digits.
bool valid_authority(std::string_view a) {
    std::string_view host = a;
    std::string_view port;
    if (!a.empty() && a.front() == '[') {
        const std::size_t close = a.find(']');
        if (close == std::string_view::npos || close == 1) {
            return false;
        }
        const std::string_view inside = a.substr(1, close - 1);
        if (!std::all_of(inside.begin(), inside.end(), [](unsigned char c) { return std::isxdigit(c) != 0 || c == ':' || c == '.'; })) {
            return false;
        }
        host = a.substr(0, close + 1);
        const std::string_view rest = a.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                return false;
            }
            port = rest.substr(1);
            if (port.empty()) {
                return false;
            }
        }
    } else {
        const std::size_t colon = a.rfind(':');
        if (colon != std::string_view::npos) {
            host = a.substr(0, colon);
            port = a.substr(colon + 1);
            if (port.empty()) {
                return false;
            }
        }
        if (host.empty() || !std::all_of(host.begin(), host.end(), [](unsigned char c) {
                return std::isalnum(c) != 0 || c == '-' || c == '.';
            })) {
            return false;
        }
    }
    return port.size() <= 5 && std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

}  // namespace

std::string_view cors_policy::allow_origin(std::string_view origin) const {
    if (any) {
        return "*";
    }
    for (const std::string& o : origins) {
        if (text::iequals(o, origin)) {
            return o;
        }
    }
    return {};
}

std::expected<cors_policy, std::string> parse_cors_origins(std::string_view text) {
    cors_policy policy;
    if (text::trim_ows(text).empty() || text::trim_ows(text) == "none") {
        return policy;
    }
    while (true) {
        const std::size_t comma = text.find(',');
        const std::string_view entry = text::trim_ows(text.substr(0, comma));
        if (entry == "*") {
            policy.any = true;
        } else {
            const std::string lower = text::ascii_lowercase(entry);
            const std::string_view e = lower;
            const std::size_t sep = e.find("://");
            const std::string_view scheme = sep == std::string_view::npos ? std::string_view{} : e.substr(0, sep);
            if ((scheme != "http" && scheme != "https") || !valid_authority(e.substr(sep + 3))) {
                std::string why = "'";
                why.append(entry);
                why.append("' is not an origin: give scheme://host[:port] with http or https and no path (e.g. "
                           "https://player.example.com), or * for any");
                return std::unexpected(std::move(why));
            }
            policy.origins.push_back(lower);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        text.remove_prefix(comma + 1);
    }
    if (policy.any && !policy.origins.empty()) {
        return std::unexpected(std::string("'*' allows every origin: give it alone, or a list of origins without it"));
    }
    return policy;
}

}  // namespace datapump::http
