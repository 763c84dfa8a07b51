// The parsing of a TCP peer's records (tcp_wire.hpp). Each record is copied out of the peer's
// bytes before a field is read (no alignment is assumed of the caller's buffer).
#include "tcp_wire.hpp"

#include <cstring>

namespace datapump::rt::detail::wire {

namespace {

template <class T>
std::expected<T, malformed> load(std::span<const std::byte> raw) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (raw.size() != sizeof(T)) {
        return std::unexpected(malformed{"a record of the wrong size"});
    }
    T value{};
    std::memcpy(&value, raw.data(), sizeof(T));
    return value;
}

}  // namespace

std::expected<tcp_challenge, malformed> parse_challenge(std::span<const std::byte> raw) {
    auto c = load<tcp_challenge>(raw);
    if (!c) {
        return c;
    }
    if (c->magic != auth_magic) {
        return std::unexpected(malformed{"not an rt TCP server (bad challenge magic)"});
    }
    if (c->version != tcp_version) {
        return std::unexpected(malformed{"another version of the rt TCP protocol"});
    }
    if ((c->flags & ~auth_required) != 0 || c->reserved != 0) {
        return std::unexpected(malformed{"unknown challenge flags"});
    }
    return c;
}

std::expected<tcp_answer, malformed> parse_answer(std::span<const std::byte> raw) {
    auto a = load<tcp_answer>(raw);
    if (!a) {
        return a;
    }
    if (a->magic != auth_magic) {
        return std::unexpected(malformed{"no answer to the challenge (an unauthenticated or old client)"});
    }
    if (a->version != tcp_version) {
        return std::unexpected(malformed{"another version of the rt TCP protocol"});
    }
    return a;
}

std::expected<tcp_proof, malformed> parse_proof(std::span<const std::byte> raw) {
    auto p = load<tcp_proof>(raw);
    if (!p) {
        return p;
    }
    if ((p->status != 0 && p->status != refused) || p->reserved != 0) {
        return std::unexpected(malformed{"a malformed proof"});
    }
    return p;
}

std::expected<tcp_hello, malformed> parse_hello(std::span<const std::byte> raw) {
    auto h = load<tcp_hello>(raw);
    if (!h) {
        return h;
    }
    if (h->magic != tcp_magic || h->version != tcp_version) {
        return std::unexpected(malformed{"no valid hello"});
    }
    if (h->names_len > max_names) {
        return std::unexpected(malformed{"the port names are too long"});
    }
    return h;
}

std::expected<tcp_welcome, malformed> parse_welcome(std::span<const std::byte> raw) {
    auto w = load<tcp_welcome>(raw);
    if (!w) {
        return w;
    }
    if (w->status != 0 && w->status != refused) {
        return std::unexpected(malformed{"a welcome with an unknown status"});
    }
    if (w->text_len > max_reason || (w->status == 0 && w->text_len != 0)) {
        return std::unexpected(malformed{"a welcome with a bad reason length"});
    }
    return w;
}

std::optional<std::string_view> hello_out_of_bounds(const tcp_hello& hello) {
    if (hello.buffer_size > max_tcp_buffer || hello.count > max_tcp_count) {
        return "buffers too large or too many for a TCP link";
    }
    return std::nullopt;
}

qos qos_of(const tcp_hello& hello) {
    return qos{.rate = hello.rate,
               .jitter = duration(hello.jitter_ns),
               .delay = duration(hello.delay_ns),
               .buffer_size = hello.buffer_size,
               .buffer_count = hello.count,
               .on_late = hello.on_late == static_cast<std::uint32_t>(late_policy::drop) ? late_policy::drop
                                                                                          : late_policy::deliver_late};
}

std::vector<std::string> split_names(std::string_view joined) {
    std::vector<std::string> names;
    for (std::size_t from = 0; from <= joined.size();) {
        auto to = std::min(joined.find('\n', from), joined.size());
        names.emplace_back(joined.substr(from, to - from));
        from = to + 1;
    }
    return names;
}

std::expected<frame_kind, malformed> parse_frame(std::span<const std::byte> raw, std::uint64_t buffer_size) {
    auto f = load<tcp_frame>(raw);
    if (!f) {
        return std::unexpected(f.error());
    }
    if (f->magic != frame_magic) {
        return std::unexpected(malformed{"a frame with a bad magic"});
    }
    switch (f->flags) {
    case 0:
        if (f->length > buffer_size) {
            return std::unexpected(malformed{"a frame longer than the link's buffers"});
        }
        return frame_kind::data;
    case frame_end:
    case frame_heartbeat:
        if (f->length != 0) {
            return std::unexpected(malformed{"an end or heartbeat frame with bytes"});
        }
        return f->flags == frame_end ? frame_kind::end : frame_kind::heartbeat;
    default:
        return std::unexpected(malformed{"a frame with unknown flags"});
    }
}

}  // namespace datapump::rt::detail::wire
