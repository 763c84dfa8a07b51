#include "datapump/http/proto/accept_encoding.hpp"

#include "text.hpp"

#include <algorithm>

namespace datapump::http {
namespace {

// The weight of one entry's parameters ("q=0.5"): 1 without a q, 0 when malformed. qvalue is
// "0" ["." 0*3DIGIT] or "1" ["." 0*3("0")]; only whether it is above 0 matters here.
bool weight_above_zero(std::string_view params) {
    while (!params.empty()) {
        const std::size_t semi = params.find(';');
        const std::string_view p = text::trim_ows(params.substr(0, semi));
        params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
        if (p.size() < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') {
            continue;
        }
        const std::string_view q = p.substr(2);
        if (q.empty() || q.size() > 5 || (q[0] != '0' && q[0] != '1')) {
            return false;
        }
        if (q.size() > 1 && (q[1] != '.' || !std::all_of(q.begin() + 2, q.end(), [](char c) { return c >= '0' && c <= '9'; }))) {
            return false;
        }
        return q[0] == '1' || std::any_of(q.begin() + 1, q.end(), [](char c) { return c >= '1' && c <= '9'; });
    }
    return true;
}

}  // namespace

bool accepts_coding(std::string_view header, std::string_view coding) {
    bool named = false;
    bool named_ok = false;
    bool star_ok = false;
    while (!header.empty()) {
        const std::size_t comma = header.find(',');
        const std::string_view entry = text::trim_ows(header.substr(0, comma));
        header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
        const std::size_t semi = entry.find(';');
        const std::string_view token = text::trim_ows(entry.substr(0, semi));
        const std::string_view params = semi == std::string_view::npos ? std::string_view{} : entry.substr(semi + 1);
        if (text::iequals(token, coding) || (text::iequals(coding, "gzip") && text::iequals(token, "x-gzip"))) {
            named = true;
            named_ok = named_ok || weight_above_zero(params);
        } else if (token == "*") {
            star_ok = weight_above_zero(params);
        }
    }
    return named ? named_ok : star_ok;
}

}  // namespace datapump::http
