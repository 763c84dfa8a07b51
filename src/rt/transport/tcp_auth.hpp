// File: src/rt/transport/tcp_auth.hpp
//
// The shared key of inter-machine rt links and the proofs made with it (wire.hpp draws the
// exchange). Each side proves the key by an HMAC-SHA256 over the other side's fresh random nonce
// and a context string naming the protocol, its version and the direction, so that a proof is
// never valid twice nor the other way round (a peer cannot reflect the server's own proof back).
// OpenSSL 3 computes the HMAC and compares in constant time (CRYPTO_memcmp); the nonces come from
// getrandom(2).
//
// Thread-safety: a tcp_key is immutable after load; any thread may use it.
#pragma once

#include "wire.hpp"

#include "datapump/base/error.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace datapump::rt::detail {

inline constexpr std::size_t min_key_bytes = 32;

using nonce = std::array<std::uint8_t, wire::nonce_size>;
using mac = std::array<std::uint8_t, wire::mac_size>;

enum class direction : std::uint8_t {
    to_server,  // the connecting side's answer (over the server's nonce)
    to_client,  // the serving side's proof (over the client's nonce)
};

// The key's bytes; wiped (OPENSSL_cleanse) when destroyed. Empty: no key configured.
class tcp_key {
public:
    tcp_key() = default;
    tcp_key(const tcp_key&) = delete;
    tcp_key& operator=(const tcp_key&) = delete;
    tcp_key(tcp_key&& other) noexcept;
    tcp_key& operator=(tcp_key&& other) noexcept;
    ~tcp_key();

    // From the bytes, or from a file (one trailing newline dropped); neither: an empty key.
    // Errors: invalid_argument (both given, shorter than min_key_bytes, the file unreadable), with
    // what to do.
    [[nodiscard]] static result<tcp_key> load(std::string_view bytes, const std::string& file);

    [[nodiscard]] bool empty() const { return bytes_.empty(); }
    [[nodiscard]] std::span<const std::uint8_t> bytes() const { return bytes_; }

private:
    std::vector<std::uint8_t> bytes_;
};

// A fresh nonce from getrandom(2). Errors: io_error (no entropy source).
[[nodiscard]] result<nonce> fresh_nonce();
// HMAC-SHA256(key, their_nonce || context(d)).
[[nodiscard]] mac prove(const tcp_key& key, std::span<const std::uint8_t, wire::nonce_size> their_nonce,
                        direction d);
// Whether `got` is the proof of the key over our nonce in direction d (constant time).
[[nodiscard]] bool verify(const tcp_key& key, std::span<const std::uint8_t, wire::nonce_size> our_nonce, direction d,
                          std::span<const std::uint8_t, wire::mac_size> got);

}  // namespace datapump::rt::detail
