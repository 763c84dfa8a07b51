// The shared key and the HMAC proofs of inter-machine rt links (tcp_auth.hpp).
#include "tcp_auth.hpp"

#include "datapump/base/internal/log.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace datapump::rt::detail {

namespace {

// Names the protocol, its version and the direction: a proof made for one never verifies as the
// other (see the banner).
std::string_view context(direction d) {
    return d == direction::to_server ? "datapump rt tcp v2 client->server" : "datapump rt tcp v2 server->client";
}

}  // namespace

tcp_key::tcp_key(tcp_key&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }

tcp_key& tcp_key::operator=(tcp_key&& other) noexcept {
    if (this != &other) {
        OPENSSL_cleanse(bytes_.data(), bytes_.size());
        bytes_ = std::move(other.bytes_);
        other.bytes_.clear();
    }
    return *this;
}

tcp_key::~tcp_key() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

result<tcp_key> tcp_key::load(std::string_view bytes, const std::string& file) {
    tcp_key key;
    if (!bytes.empty() && !file.empty()) {
        return fail(errc::invalid_argument, "rt: tcp: give the key or a key file, not both");
    }
    if (!file.empty()) {
        std::ifstream in(file, std::ios::binary);
        if (!in) {
            int err = errno;
            spdlog::error("rt: tcp: cannot read the key file '{}': {}", file, errno_text(err));
            return fail(errc::invalid_argument, "rt: tcp: cannot read the key file (check tcp.key_file and its permissions)",
                        err);
        }
        key.bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        if (!key.bytes_.empty() && key.bytes_.back() == '\n') {
            key.bytes_.pop_back();
        }
        struct stat st {};
        if (::stat(file.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
            spdlog::warn("rt: tcp: the key file '{}' may be read by others than its owner (chmod 600 it)", file);
        }
    } else {
        key.bytes_.assign(bytes.begin(), bytes.end());
    }
    if (!key.bytes_.empty() && key.bytes_.size() < min_key_bytes) {
        spdlog::error("rt: tcp: the key has {} bytes; it needs at least {}", key.bytes_.size(), min_key_bytes);
        return fail(errc::invalid_argument,
                    "rt: tcp: the key is shorter than 32 bytes (make one with `openssl rand -hex 32`)");
    }
    return key;
}

result<nonce> fresh_nonce() {
    nonce n{};
    std::size_t got = 0;
    while (got < n.size()) {
        ssize_t r = ::getrandom(n.data() + got, n.size() - got, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(errc::io_error, "rt: tcp: getrandom", errno);
        }
        got += static_cast<std::size_t>(r);
    }
    return n;
}

mac prove(const tcp_key& key, std::span<const std::uint8_t, wire::nonce_size> their_nonce, direction d) {
    std::string_view ctx = context(d);
    std::array<std::uint8_t, wire::nonce_size + 64> message{};
    std::memcpy(message.data(), their_nonce.data(), their_nonce.size());
    std::memcpy(message.data() + their_nonce.size(), ctx.data(), ctx.size());
    mac out{};
    unsigned int len = 0;
    // HMAC() is OpenSSL 3's one-shot MAC (not among the deprecated HMAC_CTX calls).
    ::HMAC(EVP_sha256(), key.bytes().data(), static_cast<int>(key.bytes().size()), message.data(),
           their_nonce.size() + ctx.size(), out.data(), &len);
    return out;
}

bool verify(const tcp_key& key, std::span<const std::uint8_t, wire::nonce_size> our_nonce, direction d,
            std::span<const std::uint8_t, wire::mac_size> got) {
    if (key.empty()) {
        return false;
    }
    mac want = prove(key, our_nonce, d);
    bool same = CRYPTO_memcmp(want.data(), got.data(), want.size()) == 0;
    OPENSSL_cleanse(want.data(), want.size());
    return same;
}

}  // namespace datapump::rt::detail
