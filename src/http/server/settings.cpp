// conf: the server's settings as data: the spellings of their enums, and what a reload may change
// (one rule per member of server_config; keep_fixed follows the rules).
#include "datapump/http/server.hpp"

#include <array>

namespace datapump::http {
namespace {

// Who sets a member: the operator (datapumpd has an option for it), or only the program that
// embeds the server.
constexpr bool user = true;
constexpr bool program = false;

// Every member of server_config, in declaration order: its reload rule, and who sets it. The list expands into
// setting_rules(), keep_fixed() and a mirror struct whose size must equal server_config's, so a member added without a
// line here fails the build (unless padding hides it: then the daemon's table test still misses a row).
#define DATAPUMP_SERVER_SETTINGS(X)       \
    X(root, fixed_when_writable, user)    \
    X(listen_host, fixed, user)           \
    X(listen_port, fixed, user)           \
    X(loops, fixed, user)                 \
    X(provider, fixed, user)              \
    X(path, fixed, user)                  \
    X(cache_mib, fixed, user)             \
    X(buffer_kib, fixed, user)            \
    X(huge_pages, fixed, user)            \
    X(capacity, live, user)               \
    X(default_rate, live, user)           \
    X(max_rate, live, user)               \
    X(default_burst, live, user)          \
    X(rt_vps, fixed, user)                \
    X(rt_max_density, fixed, user)        \
    X(max_connections, live, user)        \
    X(idle_timeout_ms, live, user)        \
    X(header_timeout_ms, live, user)      \
    X(max_header_bytes, live, user)       \
    X(max_request_line, live, user)       \
    X(directory_listing, live, user)      \
    X(precompressed, live, user)          \
    X(open_file_cache, fixed, user)       \
    X(open_file_cache_valid_ms, fixed, user) \
    X(direct_min_size, fixed, user)       \
    X(mime_types_file, fixed, user)       \
    X(cors_origins, live, user)           \
    X(cache_control, live, user)          \
    X(access_log, live, user)             \
    X(writable, fixed, user)              \
    X(upload_token, live, user)           \
    X(max_upload, live, user)             \
    X(upload_windows, fixed, user)        \
    X(durability, fixed, user)            \
    X(durability_window, fixed, user)     \
    X(more_listen, fixed, user)           \
    X(admin, fixed, user)                 \
    X(admin_address, fixed, user)         \
    X(admin_socket, fixed, user)          \
    X(admin_token, live, user)            \
    X(serve_dotfiles, live, user)         \
    X(max_uploads, fixed, user)           \
    X(max_uploads_per_ip, live, user)     \
    X(upload_min_rate, live, user)        \
    X(upload_rate_window_ms, live, user)  \
    X(follow_uploads, live, user)         \
    X(send_timeout_ms, live, user)        \
    X(max_pause_ms, live, user)           \
    X(stall_release_ms, live, program)    \
    X(max_connections_per_ip, live, user) \
    X(max_streams_per_ip, live, user)     \
    X(max_rate_per_ip, live, user)        \
    X(accept_pause, fixed, program)       \
    X(accept_log_every, fixed, program)   \
    X(access_format, live, user)          \
    X(access_sink, live, program)         \
    X(inherited_listeners, fixed, program)

#define DATAPUMP_AS_RULE(member, rule, who) setting_rule{#member, reload_rule::rule, who},
constexpr auto rules = std::to_array<setting_rule>({DATAPUMP_SERVER_SETTINGS(DATAPUMP_AS_RULE)});
#undef DATAPUMP_AS_RULE

// The declarator is the member's name, which parentheses would not make safer.
// NOLINTNEXTLINE(bugprone-macro-parentheses)
#define DATAPUMP_AS_MEMBER(member, rule, who) decltype(server_config::member) member;
struct mirror {
    DATAPUMP_SERVER_SETTINGS(DATAPUMP_AS_MEMBER)
};
#undef DATAPUMP_AS_MEMBER
static_assert(sizeof(mirror) == sizeof(server_config),
              "a member of server_config has no line in DATAPUMP_SERVER_SETTINGS: give it its reload rule");

}  // namespace

std::string_view option_name(send_path p) {
    return p == send_path::send_zc ? std::string_view("send-zc") : std::string_view(to_string(p));
}

std::optional<send_path> parse_send_path(std::string_view text) {
    for (const send_path p :
         {send_path::automatic, send_path::sendfile, send_path::splice, send_path::send_zc, send_path::send}) {
        if (text == option_name(p) || text == to_string(p)) {
            return p;
        }
    }
    return std::nullopt;
}

std::string_view to_string(follow_policy p) {
    switch (p) {
        case follow_policy::public_:
            return "public";
        case follow_policy::token:
            return "token";
        case follow_policy::off:
            return "off";
        case follow_policy::automatic:
            return "auto";
    }
    return "auto";
}

std::optional<follow_policy> parse_follow_policy(std::string_view text) {
    for (const follow_policy p :
         {follow_policy::public_, follow_policy::token, follow_policy::off, follow_policy::automatic}) {
        if (text == to_string(p)) {
            return p;
        }
    }
    return std::nullopt;
}

std::string_view to_string(access_log_format f) {
    return f == access_log_format::json ? "json" : "combined";
}

std::optional<access_log_format> parse_access_log_format(std::string_view text) {
    if (text == "combined") {
        return access_log_format::combined;
    }
    if (text == "json") {
        return access_log_format::json;
    }
    return std::nullopt;
}

std::string_view to_string(huge_pages h) {
    switch (h) {
        case huge_pages::off:
            return "off";
        case huge_pages::on:
            return "on";
        case huge_pages::try_:
            break;
    }
    return "try";
}

std::optional<huge_pages> parse_huge_pages(std::string_view text) {
    if (text == "off") {
        return huge_pages::off;
    }
    if (text == "try") {
        return huge_pages::try_;
    }
    if (text == "on") {
        return huge_pages::on;
    }
    return std::nullopt;
}

std::span<const setting_rule> setting_rules() {
    return rules;
}

server_config keep_fixed(server_config next, const server_config& started) {
#define DATAPUMP_KEEP(member, rule, who)                                                               \
    if constexpr (reload_rule::rule == reload_rule::fixed) {                                           \
        next.member = started.member;                                                                  \
    } else if constexpr (reload_rule::rule == reload_rule::fixed_when_writable) {                      \
        if (started.writable) {                                                                        \
            next.member = started.member; /* uploads, their temp files and the publisher live there */ \
        }                                                                                              \
    }
    DATAPUMP_SERVER_SETTINGS(DATAPUMP_KEEP)
#undef DATAPUMP_KEEP
    return next;
}

#undef DATAPUMP_SERVER_SETTINGS

}  // namespace datapump::http
