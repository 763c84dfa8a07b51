// libFuzzer target: rt's TCP wire format (src/rt/transport/tcp_wire.hpp) on arbitrary bytes.
//
// The input is a peer's byte stream, read as each side reads it. As the serving side: an answer to
// the challenge, a hello, its port names, then frame headers (and their bytes) until the input
// ends or a record is refused. As the connecting side: a challenge, a proof, a welcome. Each
// parse is checked against the record's promises (what it accepts has the fields it must have;
// nothing is read past the record); every record is parsed again from an unaligned copy and must
// give the same answer; the names split and joined give the bytes back. The first 32 bytes also
// serve as a nonce: a proof verifies in its own direction only.
#include "tcp_auth.hpp"
#include "tcp_wire.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace datapump::rt::detail;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_rt_tcp_wire: broken promise: %s\n", what);
        std::abort();
    }
}

// The input read front to back, as a socket would give it.
struct stream {
    std::span<const std::byte> bytes;
    std::size_t at = 0;

    // The next n bytes, or an empty span when fewer are left (the peer closed).
    std::span<const std::byte> take(std::size_t n) {
        if (bytes.size() - at < n) {
            at = bytes.size();
            return {};
        }
        auto out = bytes.subspan(at, n);
        at += n;
        return out;
    }
};

// Parses `raw` with `parse` twice, once from an odd address: the answers must agree.
template <class Parse>
auto parse_both(std::span<const std::byte> raw, Parse parse) {
    std::vector<std::byte> shifted(raw.size() + 1);
    std::memcpy(shifted.data() + 1, raw.data(), raw.size());
    auto first = parse(raw);
    auto second = parse(std::span<const std::byte>(shifted).subspan(1));
    check(first.has_value() == second.has_value(), "parsing does not depend on alignment");
    if (!first) {
        check(first.error() == second.error() && !first.error().empty(), "the same non-empty reason");
    }
    return first;
}

template <class T>
bool same_bytes(const T& value, std::span<const std::byte> raw) {
    return raw.size() == sizeof(T) && std::memcmp(&value, raw.data(), sizeof(T)) == 0;
}

void serving_side(stream in) {
    auto raw_answer = in.take(sizeof(wire::tcp_answer));
    if (raw_answer.empty()) {
        return;
    }
    auto answer = parse_both(raw_answer, [](auto r) { return wire::parse_answer(r); });
    if (answer) {
        check(answer->magic == wire::auth_magic && answer->version == wire::tcp_version, "answer fields");
        check(same_bytes(*answer, raw_answer), "an answer is the bytes sent");
    }
    check(!wire::parse_answer(raw_answer.first(raw_answer.size() - 1)).has_value(), "a short answer is refused");

    auto raw_hello = in.take(sizeof(wire::tcp_hello));
    if (raw_hello.empty()) {
        return;
    }
    auto hello = parse_both(raw_hello, [](auto r) { return wire::parse_hello(r); });
    if (!hello) {
        return;  // the server closes here
    }
    check(hello->magic == wire::tcp_magic && hello->version == wire::tcp_version, "hello fields");
    check(hello->names_len <= wire::max_names, "names_len bounded before the names are read");
    auto names_raw = in.take(hello->names_len);
    if (names_raw.empty() && hello->names_len > 0) {
        return;
    }
    std::string_view joined(reinterpret_cast<const char*>(names_raw.data()), names_raw.size());
    auto names = wire::split_names(joined);
    std::string back;
    for (std::size_t i = 0; i < names.size(); ++i) {
        back += (i == 0 ? "" : "\n") + names[i];
        check(names[i].find('\n') == std::string::npos, "a name holds no separator");
    }
    check(back == joined, "the names joined again are the bytes sent");
    bool out_of_bounds = wire::hello_out_of_bounds(*hello).has_value();
    check(out_of_bounds == (hello->buffer_size > wire::max_tcp_buffer || hello->count > wire::max_tcp_count),
          "bounds exactly as documented");
    if (out_of_bounds) {
        return;  // refused in the welcome
    }
    auto q = wire::qos_of(*hello);
    check(q.buffer_size == hello->buffer_size && q.buffer_count == hello->count, "qos carries the sizes");
    const std::uint64_t buffer_size = hello->buffer_size;
    while (true) {
        auto raw_frame = in.take(sizeof(wire::tcp_frame));
        if (raw_frame.empty()) {
            return;
        }
        auto kind = parse_both(raw_frame, [buffer_size](auto r) { return wire::parse_frame(r, buffer_size); });
        if (!kind) {
            return;  // the link is closed
        }
        wire::tcp_frame frame{};
        std::memcpy(&frame, raw_frame.data(), sizeof frame);
        check(frame.magic == wire::frame_magic, "frame magic");
        if (*kind == wire::frame_kind::data) {
            check(frame.flags == 0 && frame.length <= buffer_size, "data fits the link's buffers");
            if (in.take(static_cast<std::size_t>(frame.length)).empty() && frame.length > 0) {
                return;
            }
        } else {
            check(frame.length == 0, "end and heartbeat carry no bytes");
            check((*kind == wire::frame_kind::end) == (frame.flags == wire::frame_end), "end is frame_end");
            if (*kind == wire::frame_kind::end) {
                return;
            }
        }
    }
}

void connecting_side(stream in) {
    auto raw_challenge = in.take(sizeof(wire::tcp_challenge));
    if (raw_challenge.empty()) {
        return;
    }
    auto challenge = parse_both(raw_challenge, [](auto r) { return wire::parse_challenge(r); });
    if (challenge) {
        check(challenge->magic == wire::auth_magic && challenge->version == wire::tcp_version, "challenge fields");
        check((challenge->flags & ~wire::auth_required) == 0 && challenge->reserved == 0, "challenge flags");
    }
    auto raw_proof = in.take(sizeof(wire::tcp_proof));
    if (raw_proof.empty()) {
        return;
    }
    auto proof = parse_both(raw_proof, [](auto r) { return wire::parse_proof(r); });
    if (proof) {
        check(proof->status == 0 || proof->status == wire::refused, "proof status");
    }
    auto raw_welcome = in.take(sizeof(wire::tcp_welcome));
    if (raw_welcome.empty()) {
        return;
    }
    auto welcome = parse_both(raw_welcome, [](auto r) { return wire::parse_welcome(r); });
    if (welcome) {
        check(welcome->text_len <= wire::max_reason, "a bounded reason");
        check(welcome->status == 0 ? welcome->text_len == 0 : welcome->status == wire::refused, "welcome status");
    }
}

// A proof made over the input's first bytes verifies in its own direction, not the other, and not
// under another key; a proof with one bit flipped does not verify.
void proofs(std::span<const std::byte> bytes) {
    if (bytes.size() < wire::nonce_size) {
        return;
    }
    static const auto key = tcp_key::load("fuzz key: thirty-two bytes at the least", "");
    static const auto other = tcp_key::load("fuzz key: another one, just as long ....", "");
    check(key.has_value() && other.has_value(), "test keys load");
    nonce n{};
    std::memcpy(n.data(), bytes.data(), n.size());
    mac m = prove(*key, n, direction::to_server);
    check(verify(*key, n, direction::to_server, m), "a proof verifies");
    check(!verify(*key, n, direction::to_client, m), "not in the other direction");
    check(!verify(*other, n, direction::to_server, m), "not under another key");
    const std::size_t bit = bytes.size() > wire::nonce_size ? static_cast<std::size_t>(bytes[wire::nonce_size]) : 0;
    m[(bit / 8) % m.size()] ^= static_cast<std::uint8_t>(1U << (bit % 8));
    check(!verify(*key, n, direction::to_server, m), "a flipped bit does not verify");
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the entry point libFuzzer calls, by its name.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    serving_side(stream{bytes});
    connecting_side(stream{bytes});
    proofs(bytes);
    return 0;
}
