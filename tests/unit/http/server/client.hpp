// File: tests/unit/http/server/client.hpp
//
// A deliberately plain HTTP/1.1 client over a blocking loopback socket, for tests that need to
// control every byte on the wire (pipelining, malformed requests, half-read streams). Every read
// has a timeout, so a test that waits for bytes that never come fails instead of hanging.
//
// Thread-safety: one client per thread.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace datapump::test {

struct http_response {
    int status = 0;
    std::map<std::string, std::string> headers;  // lowercase names
    std::string body;
    [[nodiscard]] std::string header(const std::string& name) const {
        const auto it = headers.find(name);
        return it == headers.end() ? std::string{} : it->second;
    }
};

class http_client {
public:
    explicit http_client(std::uint16_t port, int timeout_ms = 10000) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    }
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;
    ~http_client() { close(); }

    [[nodiscard]] bool connected() const { return connected_; }
    void close() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    // Closes with a reset (SO_LINGER 0): a client that vanishes.
    void abort() {
        linger l{1, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close();
    }

    bool send(const std::string& bytes) {
        std::size_t off = 0;
        while (off < bytes.size()) {
            const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return false;
            }
            off += static_cast<std::size_t>(n);
        }
        return true;
    }

    // Reads one response head (and its body, unless `head_only` or there is none). Empty
    // optional on timeout or EOF before a complete head.
    std::optional<http_response> read_response(bool head_only = false) {
        std::size_t end = 0;
        while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
            if (!fill()) {
                return std::nullopt;
            }
        }
        http_response r;
        const std::string head = buffer_.substr(0, end);
        buffer_.erase(0, end + 4);
        std::size_t line_end = head.find("\r\n");
        const std::string status_line = head.substr(0, line_end);
        if (status_line.size() < 12) {
            return std::nullopt;
        }
        if (std::from_chars(status_line.data() + 9, status_line.data() + 12, r.status).ec != std::errc{}) {
            return std::nullopt;  // not a status line: the caller's assertion reports it
        }
        std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
        while (pos < head.size()) {
            std::size_t next = head.find("\r\n", pos);
            if (next == std::string::npos) {
                next = head.size();
            }
            const std::string line = head.substr(pos, next - pos);
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = line.substr(0, colon);
                for (char& c : name) {
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                }
                std::size_t v = colon + 1;
                while (v < line.size() && line[v] == ' ') {
                    ++v;
                }
                r.headers[name] = line.substr(v);
            }
            pos = next + 2;
        }
        if (head_only || r.status == 304 || r.status == 204) {
            return r;
        }
        const std::string cl = r.header("content-length");
        std::size_t want = 0;
        if (!cl.empty() && std::from_chars(cl.data(), cl.data() + cl.size(), want).ec != std::errc{}) {
            return std::nullopt;
        }
        if (!read_body(want, r.body)) {
            return std::nullopt;
        }
        return r;
    }

    // Reads up to `n` body bytes (fewer at EOF or timeout) into `out`; true when all arrived.
    bool read_body(std::size_t n, std::string& out) {
        while (buffer_.size() < n) {
            if (!fill()) {
                break;
            }
        }
        const std::size_t take = std::min(n, buffer_.size());
        out.append(buffer_, 0, take);
        buffer_.erase(0, take);
        return take == n;
    }

    // True when the server closed the connection (EOF) within the timeout.
    bool closed_by_server() {
        while (true) {
            char c[4096];
            const ssize_t n = ::recv(fd_, c, sizeof c, 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n == 0) {
                return true;
            }
            if (n < 0) {
                return errno == ECONNRESET;
            }
        }
    }

    [[nodiscard]] int fd() const { return fd_; }

private:
    bool fill() {
        char chunk[65536];
        ssize_t n = 0;
        do {
            n = ::recv(fd_, chunk, sizeof chunk, 0);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            return false;
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
    }

    int fd_ = -1;
    bool connected_ = false;
    std::string buffer_;
};

inline std::string get_request(const std::string& target, const std::string& extra = {}) {
    return "GET " + target + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

}  // namespace datapump::test
