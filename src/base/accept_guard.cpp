#include "datapump/base/accept_guard.hpp"

#include "datapump/base/error.hpp"
#include "datapump/base/internal/log.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <utility>

namespace datapump {

bool accept_exhausted(int err) { return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM; }

namespace {

// accept(2): these are the peer's or the network's, already gone; accepting again is right.
bool accept_transient(int err) {
    switch (err) {
        case EAGAIN:
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:  // a firewall rule refused this one connection
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            return true;
        default:
            return false;
    }
}

unique_fd open_spare() { return unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

}  // namespace

accept_guard::accept_guard(accept_guard_options options) : options_(std::move(options)), spare_(open_spare()) {}

std::chrono::milliseconds accept_guard::failed(int listener, int err) {
    failures_.fetch_add(1, std::memory_order_relaxed);
    const bool exhausted = accept_exhausted(err);
    const std::chrono::milliseconds pause =
        accept_transient(err) ? std::chrono::milliseconds(0) : options_.pause;
    if (exhausted) {
        shed_one(listener);
    }
    log(err, pause);
    return pause;
}

void accept_guard::shed_one(int listener) {
    if (!spare_) {
        spare_ = open_spare();  // a descriptor freed since the last try may be free now
        return;
    }
    spare_.reset();
    // The listener may be blocking and the connection that failed may be gone already: this one
    // accept must not wait.
    const int flags = ::fcntl(listener, F_GETFL);
    const bool was_blocking = flags >= 0 && (flags & O_NONBLOCK) == 0;
    if (was_blocking) {
        ::fcntl(listener, F_SETFL, flags | O_NONBLOCK);
    }
    unique_fd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (was_blocking) {
        ::fcntl(listener, F_SETFL, flags);
    }
    if (conn) {
        shed_.fetch_add(1, std::memory_order_relaxed);
        if (!options_.farewell.empty()) {
            // Read what the client sent first: closing with unread bytes resets the connection,
            // and the reset could overtake the answer. Best effort, never waiting.
            std::array<std::byte, 4096> sink{};
            [[maybe_unused]] const ssize_t got = ::recv(conn.get(), sink.data(), sink.size(), MSG_DONTWAIT);
            [[maybe_unused]] const ssize_t n = ::send(conn.get(), options_.farewell.data(), options_.farewell.size(),
                                                      MSG_DONTWAIT | MSG_NOSIGNAL);
            ::shutdown(conn.get(), SHUT_WR);
        }
        conn.reset();
    }
    spare_ = open_spare();
}

void accept_guard::log(int err, std::chrono::milliseconds pause) {
    const clock::time_point now = clock::now();
    if (logged_once_ && now - last_line_ < options_.log_every) {
        return;
    }
    const std::uint64_t failures = failures_.load(std::memory_order_relaxed);
    const std::uint64_t shed = shed_.load(std::memory_order_relaxed);
    const bool exhausted = accept_exhausted(err);
    const std::string what = pause.count() == 0
                                 ? std::string("accepting again at once")
                                 : "not accepting for " + std::to_string(pause.count()) + " ms after each";
    if (!logged_once_) {
        spdlog::warn("{}: accept failed: {}; {}{}{} (this is logged at most every {} s)", options_.name,
                     errno_text(err), what, exhausted ? "; one waiting connection is shed each time" : "",
                     exhausted && !options_.advice.empty() ? "; " + options_.advice : std::string(),
                     options_.log_every.count() / 1000);
    } else {
        const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now - last_line_).count();
        spdlog::warn("{}: accept failed {} times in the last {} s (the last: {}); {} waiting connections shed; {}{}",
                     options_.name, failures - failures_logged_, seconds, errno_text(err), shed - shed_logged_, what,
                     exhausted && !options_.advice.empty() ? "; " + options_.advice : std::string());
    }
    log_lines_.fetch_add(1, std::memory_order_relaxed);
    logged_once_ = true;
    last_line_ = now;
    failures_logged_ = failures;
    shed_logged_ = shed;
}

}  // namespace datapump
