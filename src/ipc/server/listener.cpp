// A server's endpoint and listener thread: bind (a stale socket file replaced, the mode set before
// listen), accept with back-off, the peer rule and max_clients, joining finished connections, and
// destroy.
#include "datapump/base/internal/log.hpp"

#include "server_impl.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

namespace datapump::ipc {

result<void> server::impl::listen() {
    auto addr = internal::parse_endpoint(shared_.endpoint);
    if (!addr) {
        return std::unexpected(addr.error());
    }
    path_ = std::string(addr->path);
    listener_ = unique_fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!listener_) {
        return fail_errno("ipc server: socket");
    }
    const auto* sa = reinterpret_cast<const sockaddr*>(addr->bytes.data());
    if (::bind(listener_.get(), sa, addr->length) != 0) {
        if (errno != EADDRINUSE || addr->abstract) {
            return errno == EADDRINUSE ? fail(errc::busy, "ipc server: endpoint in use", errno)
                                       : fail_errno("ipc server: bind");
        }
        if (auto stale = remove_stale_socket(); !stale) {
            return stale;
        }
        if (::bind(listener_.get(), sa, addr->length) != 0) {
            return fail_errno("ipc server: bind");
        }
    }
    bound_ = true;
    if (!addr->abstract) {
        // The mode is set between bind and listen: until listen() every connect() is refused
        // (ECONNREFUSED), so no peer can ever connect while the file has the mode the umask
        // gave it. (A umask around bind would do the same, but the umask is per process and
        // would change the mode of files other threads create meanwhile.) chmod follows the
        // path: the directory must be one only the server's user can change (docs/ipc.md).
        if (::chmod(path_.c_str(), shared_.options.endpoint_mode) != 0) {
            return fail_errno("ipc server: chmod of the endpoint's socket file");
        }
    }
    if (::listen(listener_.get(), 128) != 0) {
        return fail_errno("ipc server: listen");
    }
    wake_ = unique_fd(::eventfd(0, EFD_CLOEXEC));
    reap_ = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_ || !reap_) {
        return fail_errno("ipc server: eventfd");
    }
    shared_.reap_fd = reap_.get();
    accept_guard_ = std::make_unique<accept_guard>(accept_guard_options{
        .name = "ipc server " + shared_.endpoint,
        .pause = std::chrono::milliseconds(250),
        .log_every = std::chrono::seconds(10),
        .farewell = {},  // the client's init fails with peer_gone, as over max_clients
        .advice = "raise the descriptor limit (LimitNOFILE=, ulimit -n) or lower max_clients"});
    listener_thread_ = std::thread([this] { accept_loop(); });
    return {};
}

result<void> server::impl::remove_stale_socket() {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) != 0) {
        return errno == ENOENT ? result<void>{} : fail_errno("ipc server: lstat of the endpoint");
    }
    if (!S_ISSOCK(st.st_mode)) {
        return fail(errc::busy, "ipc server: the endpoint path exists and is not a socket (not removed)",
                    EEXIST);
    }
    auto probe = internal::connect_endpoint(shared_.endpoint);
    if (probe) {
        return fail(errc::busy, "ipc server: another server answers on the endpoint", EADDRINUSE);
    }
    if (probe.error().code != errc::not_found) {
        return fail(errc::io_error, "ipc server: cannot tell whether the endpoint's socket is live (not removed)",
                    probe.error().sys);
    }
    if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
        return fail_errno("ipc server: removing the stale endpoint socket");
    }
    return {};
}

void server::impl::destroy() {
    std::call_once(destroyed_, [this] { do_destroy(); });
}

void server::impl::accept_loop() {
    std::chrono::steady_clock::time_point paused_until{};
    for (;;) {
        // After a failed accept (EMFILE...) the listener is left out of the poll until the
        // pause ends: retrying at once would spin (docs/ipc.md, "The accept loop").
        const int wait_ms = accept_pause_left(paused_until);
        pollfd fds[3] = {{wait_ms < 0 ? listener_.get() : -1, POLLIN, 0},
                         {wake_.get(), POLLIN, 0},
                         {reap_.get(), POLLIN, 0}};
        if (::poll(fds, 3, wait_ms) < 0) {
            if (errno == EINTR) {
                continue;
            }
            spdlog::error("ipc server {}: poll failed: {}", shared_.endpoint, errno_text(errno));
            return;
        }
        if ((fds[1].revents & POLLIN) != 0) {
            return;
        }
        if ((fds[2].revents & POLLIN) != 0) {
            std::uint64_t n = 0;
            (void)!::read(reap_.get(), &n, sizeof(n));
            reap();
        }
        if ((fds[0].revents & POLLIN) == 0) {
            continue;
        }
        unique_fd sock(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!sock) {
            const auto pause = accept_guard_->failed(listener_.get(), errno);
            paused_until = std::chrono::steady_clock::now() + pause;
            continue;
        }
        const internal::peer_credentials cred = internal::read_peer_credentials(sock.get());
        if (!admit_peer(sock, cred)) {
            continue;
        }
        std::lock_guard lock(mu_);
        if (shared_.counters.clients_now.load(std::memory_order_relaxed) >= shared_.options.max_clients) {
            spdlog::warn("ipc server {}: {} clients already; refusing pid {}", shared_.endpoint,
                      shared_.options.max_clients, cred.pid);
            continue;  // closing the socket: the client's init fails with peer_gone
        }
        internal::size_socket_buffers(sock.get(), std::size_t{shared_.options.max_message} * 4 + 4096);
        auto c = std::make_shared<socket_connection>(shared_, std::move(sock), cred.pid);
        shared_.counters.clients_accepted.fetch_add(1, std::memory_order_relaxed);
        shared_.counters.clients_now.fetch_add(1, std::memory_order_relaxed);
        connections_.push_back(c);
        c->start();
    }
}

int server::impl::accept_pause_left(std::chrono::steady_clock::time_point until) {
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
        return -1;
    }
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

bool server::impl::admit_peer(unique_fd& sock, const internal::peer_credentials& cred) {
    if (internal::peer_allowed(cred, shared_.options.peers, ::geteuid())) {
        return true;
    }
    shared_.counters.peers_refused.fetch_add(1, std::memory_order_relaxed);
    internal::send_refusal(sock.get());
    refusals_.refused(shared_.endpoint, cred);
    sock.reset();
    return false;
}

void server::impl::reap() {
    std::lock_guard lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
        if ((*it)->finished()) {
            (*it)->join();
            it = connections_.erase(it);
        } else {
            ++it;
        }
    }
}

void server::impl::do_destroy() {
    unregister();
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    if (listener_thread_.joinable()) {
        const std::uint64_t one = 1;
        (void)!::write(wake_.get(), &one, sizeof(one));
        listener_thread_.join();
    }
    std::list<std::shared_ptr<socket_connection>> conns;
    std::vector<std::shared_ptr<direct_connection>> direct;
    {
        std::lock_guard lock(mu_);
        conns.swap(connections_);
        direct.swap(direct_);
    }
    for (auto& c : conns) {
        c->disconnect();
    }
    for (auto& c : conns) {
        c->join();
    }
    for (auto& c : direct) {
        c->end();
    }
    listener_.reset();
    if (bound_ && !path_.empty()) {
        ::unlink(path_.c_str());
    }
}

}  // namespace datapump::ipc
