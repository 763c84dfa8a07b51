// loan_checksum ENDPOINT PATH [--chunk-mib N] [--verify LOCAL_FILE]
//
// Checksums PATH (beneath the loan_server's root) through zero-copy loans: borrows up to N MiB
// (default 4) at a time, reads the pieces straight out of the server's cache, gives them back.
// With --verify, checksums LOCAL_FILE (the same file as this process sees it) with plain pread()
// and fails when the two differ.
#include <datapump/loan/client.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace {

// Order-dependent 64-bit checksum over a byte stream, independent of how the stream is cut into
// pieces (a partial word is carried over to the next piece).
class checksum {
public:
    void add(std::span<const std::byte> bytes) {
        std::size_t i = 0;
        for (; carried_ != 0 && i < bytes.size(); ++i) {
            push(bytes[i]);
        }
        for (; i + 8 <= bytes.size(); i += 8) {
            std::uint64_t w = 0;
            std::memcpy(&w, bytes.data() + i, 8);
            mix(w);
        }
        for (; i < bytes.size(); ++i) {
            push(bytes[i]);
        }
        bytes_ += bytes.size();
    }
    [[nodiscard]] std::uint64_t value() const {
        return carried_ == 0 ? h_ : step(h_, carry_ ^ (std::uint64_t{carried_} << 56));
    }
    [[nodiscard]] std::uint64_t bytes() const { return bytes_; }

private:
    static std::uint64_t step(std::uint64_t h, std::uint64_t w) { return (h ^ w) * 0x100000001b3ULL + (h >> 29); }
    void mix(std::uint64_t w) { h_ = step(h_, w); }
    void push(std::byte b) {
        carry_ |= static_cast<std::uint64_t>(b) << (8 * carried_);
        if (++carried_ == 8) {
            mix(carry_);
            carry_ = 0;
            carried_ = 0;
        }
    }

    std::uint64_t h_ = 0xcbf29ce484222325ULL;
    std::uint64_t carry_ = 0;
    unsigned carried_ = 0;
    std::uint64_t bytes_ = 0;
};

int usage() {
    std::fprintf(stderr, "usage: loan_checksum ENDPOINT PATH [--chunk-mib N] [--verify LOCAL_FILE]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace datapump;
    if (argc < 3 || argc % 2 == 0) {
        return usage();
    }
    const std::string endpoint = argv[1];
    const std::string path = argv[2];
    std::uint64_t chunk = std::uint64_t{4} << 20;
    std::string verify;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--chunk-mib") == 0) {
            const long mib = std::strtol(argv[i + 1], nullptr, 10);
            if (mib <= 0) {
                return usage();
            }
            chunk = static_cast<std::uint64_t>(mib) << 20;
        } else if (std::strcmp(argv[i], "--verify") == 0) {
            verify = argv[i + 1];
        } else {
            return usage();
        }
    }
    auto c = loan::client::connect(endpoint);
    if (!c) {
        std::fprintf(stderr, "loan_checksum: cannot connect: %s\n", describe(c.error(), endpoint).c_str());
        return 1;
    }
    auto f = (*c)->open(path);
    if (!f) {
        std::fprintf(stderr, "loan_checksum: cannot open: %s\n", describe(f.error(), path).c_str());
        return 1;
    }
    const auto t0 = std::chrono::steady_clock::now();
    checksum sum;
    std::uint64_t leases = 0;
    for (std::uint64_t offset = 0;;) {
        auto l = (*c)->borrow(*f, offset, chunk);
        if (!l) {
            std::fprintf(stderr, "loan_checksum: borrow at %llu failed: %s\n",
                         static_cast<unsigned long long>(offset), describe(l.error(), path).c_str());
            return 1;
        }
        if (l->empty()) {
            break;
        }
        for (const auto piece : l->pieces()) {
            sum.add(piece);
        }
        offset += l->size();
        ++leases;
        if (auto back = l->give_back(); !back) {
            std::fprintf(stderr, "loan_checksum: give back failed: %s\n", describe(back.error(), path).c_str());
            return 1;
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("checksum %016llx bytes %llu (%llu leases, %.3f s, %.0f MB/s, %llu reclaims seen)\n",
                static_cast<unsigned long long>(sum.value()), static_cast<unsigned long long>(sum.bytes()),
                static_cast<unsigned long long>(leases), seconds,
                seconds > 0 ? static_cast<double>(sum.bytes()) / seconds / 1e6 : 0.0,
                static_cast<unsigned long long>((*c)->stats().reclaims_seen));
    if (verify.empty()) {
        return 0;
    }
    const int fd = ::open(verify.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        std::fprintf(stderr, "loan_checksum: cannot open %s: %s\n", verify.c_str(), std::strerror(errno));
        return 1;
    }
    checksum plain;
    std::vector<std::byte> buf(std::size_t{1} << 20);
    for (off_t at = 0;;) {
        const ssize_t n = ::pread(fd, buf.data(), buf.size(), at);
        if (n < 0) {
            std::fprintf(stderr, "loan_checksum: pread %s: %s\n", verify.c_str(), std::strerror(errno));
            ::close(fd);
            return 1;
        }
        if (n == 0) {
            break;
        }
        plain.add(std::span(buf).first(static_cast<std::size_t>(n)));
        at += n;
    }
    ::close(fd);
    const bool same = plain.value() == sum.value() && plain.bytes() == sum.bytes();
    std::printf("verify   %016llx bytes %llu by pread: %s\n", static_cast<unsigned long long>(plain.value()),
                static_cast<unsigned long long>(plain.bytes()), same ? "match" : "MISMATCH");
    return same ? 0 : 1;
}
