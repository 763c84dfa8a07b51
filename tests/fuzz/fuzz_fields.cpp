// libFuzzer target: the field-level pieces of http_proto on arbitrary text — Range evaluation,
// HTTP dates, path decoding and encoding, query parameters, rates, conditional requests, MIME
// lookup; and the newer header and setting parsers: Accept-Encoding, CORS origins, caching rules, a
// mime.types table. The first byte picks the piece; the rest is the text. Each call is checked against the
// promises its header makes (ranges inside the file, dates that round-trip, decoded paths that
// cannot leave the root, ...).
#include "datapump/http/proto/accept_encoding.hpp"
#include "datapump/http/proto/cache_rules.hpp"
#include "datapump/http/proto/cors.hpp"
#include "datapump/http/proto/mime.hpp"
#include "datapump/http/proto/path.hpp"
#include "datapump/http/proto/query.hpp"
#include "datapump/http/proto/range.hpp"
#include "datapump/http/proto/validators.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace datapump::http;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_fields: broken promise: %s\n", what);
        std::abort();
    }
}

constexpr std::int64_t min_time = -62135596800;  // 0001-01-01T00:00:00Z
constexpr std::int64_t max_time = 253402300799;  // 9999-12-31T23:59:59Z

void fuzz_range(std::string_view text) {
    for (const std::uint64_t size :
         {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{500}, std::uint64_t{10000}, UINT64_MAX}) {
        const range_result r = evaluate_range(text, size);
        check(r.kind != range_kind::none, "a present header is never none");
        if (r.kind == range_kind::partial) {
            check(r.first <= r.last && r.last < size, "partial range inside the file");
            const std::string cr = content_range(r.first, r.last, size);
            check(cr.starts_with("bytes ") && cr.find('/') != std::string::npos, "content_range shape");
        }
        if (size == 0) {
            check(r.kind != range_kind::partial, "nothing is partial of an empty file");
        }
    }
}

void fuzz_date(std::string_view text) {
    const auto t = parse_http_date(text);
    if (t && *t >= min_time && *t <= max_time) {
        const std::string formatted = http_date(*t);
        check(formatted.size() == 29, "IMF-fixdate is 29 characters");
        check(parse_http_date(formatted) == t, "http_date round-trips");
    }
    if (text.size() >= 8) {
        std::int64_t raw = 0;
        for (std::size_t i = 0; i < 8; ++i) {
            raw =
                static_cast<std::int64_t>((static_cast<std::uint64_t>(raw) << 8U) | static_cast<std::uint8_t>(text[i]));
        }
        const std::string formatted = http_date(raw);
        check(formatted.size() == 29, "IMF-fixdate is 29 characters");
        const auto back = parse_http_date(formatted);
        check(back.has_value(), "http_date parses back");
        if (raw >= min_time && raw <= max_time) {
            check(back == raw, "http_date round-trips in range");
        }
    }
}

void fuzz_path(std::string_view text) {
    const auto path = decode_path(text);
    if (!path) {
        check(
            path.error().code == datapump::errc::escapes_root || path.error().code == datapump::errc::invalid_argument ||
                path.error().code == datapump::errc::out_of_range,  // a name over NAME_MAX, a path over PATH_MAX (414)
            "decode_path errors");
        return;
    }
    check(!path->starts_with('/') && !path->ends_with('/'), "relative, no trailing slash");
    check(path->find("//") == std::string::npos, "no empty segments");
    std::string_view rest = *path;
    while (!rest.empty()) {
        const std::size_t slash = rest.find('/');
        const std::string_view segment = rest.substr(0, slash);
        check(segment != ".." && segment != "." && !segment.empty(), "no dot segments");
        rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    }
    check(path->find('\0') == std::string::npos && path->find('\\') == std::string::npos, "no NUL or backslash");
    const std::string encoded = url_encode_path(*path);
    const auto again = decode_path(encoded);
    check(again && *again == *path, "url_encode_path round-trips");
    check(html_escape(*path).find_first_of("<>\"'") == std::string::npos, "html_escape escapes");
    check(!content_type_for(*path).empty(), "a content type");
}

void fuzz_query(std::string_view text) {
    for (const std::string_view name : {"rate", "burst", "offset", ""}) {
        if (const auto value = query_param(text, name)) {
            const auto rate = parse_rate(*value);
            if (rate) {
                const auto plain = parse_rate(std::to_string(*rate));
                check(plain && *plain == *rate, "a parsed rate re-parses from its digits");
            }
            const auto n = parse_uint(*value);
            if (n) {
                check(rate && *rate == *n, "a plain number is also a rate");
            }
        }
    }
    const auto direct = parse_rate(text);
    if (!direct) {
        check(direct.error().code == datapump::errc::invalid_argument, "rate errors are invalid_argument");
    }
}

void fuzz_conditions(std::string_view text) {
    // The text is split into three header values at '\n'.
    request req;
    const char* names[] = {"if-none-match", "if-modified-since", "if-range"};
    std::size_t i = 0;
    while (i < 3) {
        const std::size_t nl = text.find('\n');
        req.headers.emplace_back(names[i], std::string(text.substr(0, nl)));
        ++i;
        if (nl == std::string_view::npos) {
            break;
        }
        text.remove_prefix(nl + 1);
    }
    for (const method verb : {method::get, method::head, method::post}) {
        req.verb = verb;
        const conditional_result c = evaluate_conditions(req, make_etag(1, 2, 3), 784111777);
        check(!c.not_modified || verb != method::post, "304 only for GET/HEAD");
    }
}

bool has_control_byte(std::string_view s) {
    for (const char c : s) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

// Accept-Encoding from a client, and the settings' parsers: whatever they take, what they give
// back to go into a response head has no control byte (no header injection).
void fuzz_codings_and_settings(std::string_view text) {
    static_cast<void>(accepts_coding(text, "br"));
    static_cast<void>(accepts_coding(text, "gzip"));
    check(!accepts_coding({}, "gzip"), "no header accepts no coding");
    if (auto cors = parse_cors_origins(text)) {
        const std::string_view allowed = cors->allow_origin(text);
        check(!has_control_byte(allowed), "an allowed origin has no control byte");
        for (const std::string& o : cors->origins) {
            check(!has_control_byte(o) && o.find(',') == std::string::npos, "a parsed origin is one clean token");
        }
    }
    if (auto rules = parse_cache_rules(text)) {
        for (const cache_rule& r : *rules) {
            check(!r.value.empty() && !has_control_byte(r.value) && !has_control_byte(r.pattern),
                  "a caching rule's value is printable");
        }
        static_cast<void>(match_cache_rule(*rules, "/a/b.ts"));
    }
    mime_types table;
    table.add_system(text);
    for (const std::string_view name : {"a.odt", "a.ts", "a.md", "a.x"}) {
        const std::string_view type = table.lookup(name);
        check(!type.empty() && !has_control_byte(type) && type.find(' ') == std::string_view::npos,
              "a looked-up type is one printable token");
    }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the entry point libFuzzer calls, by its name.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 8) {
        case 0:
            fuzz_range(text);
            break;
        case 1:
            fuzz_date(text);
            break;
        case 2:
            fuzz_path(text);
            break;
        case 3:
            fuzz_query(text);
            break;
        case 4:
            fuzz_conditions(text);
            break;
        case 6:
        case 7:
            fuzz_codings_and_settings(text);
            break;
        default:
            static_cast<void>(content_type_for(text));
            break;
    }
    return 0;
}
