// Inter-machine rt links over TCP (docs/rt.md "Across processes and machines").
//
//   machine A (connects)                            machine B (serves)
//   src -> … -> [out link] ==frames over TCP==>  reader thread -> B's pool buffer -> [fed] -> … -> sink
//                 sender thread (never the VP)
//
// A's buffer leaves A's chain once its bytes are in A's socket (the bytes cross machines: there
// is nothing to share); B copies each frame into a buffer of its own pool and releases it to its
// handlers at arrival, with its own deadline (arrival + the delay bound): clocks of two machines
// are not compared. Back-pressure is TCP's: B's reader waits for a free buffer before it reads the
// next frame. Everything B reads is checked (magic, sizes, the names): a bad peer loses its link,
// nothing else.
#include "remote.hpp"

#include "pool.hpp"
#include "system_state.hpp"
#include "wire.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/base/unique_fd.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <thread>

namespace datapump::rt::detail {

namespace {

// Writes all of `iov` (blocking socket). False on any failure.
bool write_all(int fd, std::span<iovec> iov) {
    std::size_t first = 0;
    while (first < iov.size()) {
        msghdr msg{};
        msg.msg_iov = iov.data() + first;
        msg.msg_iovlen = iov.size() - first;
        ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        auto left = static_cast<std::size_t>(n);
        while (first < iov.size() && left >= iov[first].iov_len) {
            left -= iov[first].iov_len;
            ++first;
        }
        if (first < iov.size()) {
            iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
            iov[first].iov_len -= left;
        }
    }
    return true;
}

// Reads exactly `out.size()` bytes. False on EOF, error or shutdown.
bool read_all(int fd, std::span<std::byte> out) {
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::recv(fd, out.data() + done, out.size() - done, MSG_WAITALL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

template <class T>
bool read_record(int fd, T& value) {
    std::array<std::byte, sizeof(T)> raw{};
    if (!read_all(fd, raw)) {
        return false;
    }
    std::memcpy(&value, raw.data(), sizeof(T));
    return true;
}

template <class T>
bool write_record(int fd, const T& value, std::span<const std::byte> tail = {}) {
    std::array<iovec, 2> iov{iovec{const_cast<T*>(&value), sizeof(T)},
                             iovec{const_cast<std::byte*>(tail.data()), tail.size()}};
    return write_all(fd, std::span<iovec>(iov.data(), tail.empty() ? 1 : 2));
}

result<unique_fd> dial(const std::string& host_port) {
    auto colon = host_port.rfind(':');
    std::string host = host_port.substr(0, colon);
    std::string service = host_port.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0 || found == nullptr) {
        return fail(errc::not_found, "rt: tcp: cannot resolve the host");
    }
    int last = ECONNREFUSED;
    unique_fd fd;
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        unique_fd s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
        if (!s) {
            last = errno;
            continue;
        }
        if (::connect(s.get(), a->ai_addr, a->ai_addrlen) == 0) {
            fd = std::move(s);
            break;
        }
        last = errno;
    }
    ::freeaddrinfo(found);
    if (!fd) {
        return fail(last == ECONNREFUSED ? errc::not_found : errc::io_error, "rt: tcp: connect", last);
    }
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Connecting side (A).

namespace {

class tcp_link final : public outbound_link, public std::enable_shared_from_this<tcp_link> {
public:
    tcp_link(system_state& st, unique_fd fd, std::uint64_t id) : st_(st), fd_(std::move(fd)), id_(id) {}
    tcp_link(const tcp_link&) = delete;
    tcp_link& operator=(const tcp_link&) = delete;
    ~tcp_link() override { close(); }

    void start(const std::shared_ptr<connection_state>& c) {
        conn_ = c;
        sender_ = std::thread([this] { run(); });
    }

    void send(const job& j) override { queue(item{j, false}); }
    void end() override { queue(item{job{}, true}); }

    void close() override {
        {
            std::lock_guard lock(mutex_);
            if (closed_) {
                return;
            }
            closed_ = true;
        }
        cv_.notify_all();
        ::shutdown(fd_.get(), SHUT_RDWR);  // a sender blocked in sendmsg returns
        if (sender_.joinable()) {
            sender_.join();
        }
    }

private:
    struct item {
        job j{};
        bool end = false;
    };

    void queue(item it) {
        {
            std::lock_guard lock(mutex_);
            if (!closed_ && !failed_) {
                items_.push_back(it);
                cv_.notify_one();
                return;
            }
        }
        if (!it.end) {
            resume(it.j, true);
        }
    }

    void run() {
        while (true) {
            item it;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [this] { return closed_ || !items_.empty(); });
                if (closed_) {
                    return;  // disconnected: what is queued is abandoned with the connection
                }
                it = items_.front();
                items_.pop_front();
            }
            wire::tcp_frame frame{.magic = wire::frame_magic,
                                  .flags = it.end ? wire::frame_end : 0U,
                                  .sequence = it.j.sequence,
                                  .length = it.end ? 0 : it.j.length};
            std::span<const std::byte> bytes;
            if (!it.end) {
                bytes = std::span<const std::byte>(it.j.slot.address, it.j.length);
            }
            bool ok = write_record(fd_.get(), frame, bytes);
            if (it.end) {
                return;
            }
            if (!ok) {
                fail_all(it.j);
                return;
            }
            resume(it.j, false);
        }
    }

    void fail_all(const job& first) {
        std::deque<item> rest;
        {
            std::lock_guard lock(mutex_);
            if (!failed_) {
                spdlog::warn("rt: tcp link {}: the peer is gone; the connection ends", id_);
            }
            failed_ = true;
            rest.swap(items_);
        }
        resume(first, true);
        for (const item& it : rest) {
            if (!it.end) {
                resume(it.j, true);
            }
        }
    }

    void resume(const job& j, bool failed) { resume_from_link(st_, conn_, j, failed, "rt: tcp peer"); }

    system_state& st_;
    unique_fd fd_;
    std::uint64_t id_;
    std::weak_ptr<connection_state> conn_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<item> items_;  // guarded by mutex_
    bool closed_ = false;     // guarded by mutex_
    bool failed_ = false;     // guarded by mutex_
    std::thread sender_;
};

}  // namespace

std::expected<connection, refusal> remote::connect_tcp(system& s, std::span<const std::string_view> chain,
                                                       std::size_t first_remote, const remote_name& where,
                                                       const std::vector<std::string>& names, const qos& q) {
    system_state& st = *s.state_;
    auto no = [](errc code, std::string why) { return std::unexpected(refusal{code, std::move(why)}); };
    if (q.buffer_size > wire::max_tcp_buffer || q.buffer_count > wire::max_tcp_count) {
        return no(errc::invalid_argument, fmt::format("a TCP link carries buffers of at most {} bytes, {} of them",
                                                      wire::max_tcp_buffer, wire::max_tcp_count));
    }
    std::string joined = join_names(names);
    if (joined.size() > wire::max_names) {
        return no(errc::invalid_argument, "the remote port names are too long");
    }
    auto prepared = s.claim_with_pool(chain.subspan(0, first_remote), q);
    if (!prepared) {
        return std::unexpected(std::move(prepared.error()));
    }
    std::shared_ptr<connection_state> c = std::move(*prepared);
    c->stages.push_back(nullptr);
    duration budget = s.budgets(*c, c->buffers->calibration_buffer());

    auto fd = dial(where.endpoint);
    if (!fd) {
        s.release_ports(*c);
        return no(fd.error().code, fmt::format("cannot reach '{}': {}", where.endpoint, describe(fd.error())));
    }
    wire::tcp_hello hello{.magic = wire::tcp_magic,
                          .version = wire::version,
                          .rate = q.rate,
                          .delay_ns = q.delay.count(),
                          .jitter_ns = q.jitter.count(),
                          .buffer_size = q.buffer_size,
                          .count = q.buffer_count,
                          .on_late = static_cast<std::uint32_t>(q.on_late),
                          .names_len = static_cast<std::uint32_t>(joined.size())};
    wire::tcp_welcome welcome{};
    if (!write_record(fd->get(), hello, std::as_bytes(std::span<const char>(joined.data(), joined.size()))) ||
        !read_record(fd->get(), welcome) || welcome.text_len > wire::max_reason) {
        s.release_ports(*c);
        return no(errc::peer_gone, fmt::format("'{}' did not answer the rt handshake", where.endpoint));
    }
    if (welcome.status != 0) {
        std::string why(welcome.text_len, '\0');
        read_all(fd->get(), std::as_writable_bytes(std::span<char>(why.data(), why.size())));
        s.release_ports(*c);
        return no(errc::full, fmt::format("the machine at '{}' refused: {}", where.endpoint, why));
    }
    auto link = std::make_shared<tcp_link>(st, std::move(*fd), welcome.link);
    c->out = link;
    if (auto refused = s.admit(c, q, budget, [&link, &c](connection_state&) -> std::optional<refusal> {
            link->start(c);  // before the VP can send: the connection is added to it after this
            return std::nullopt;
        })) {
        link->close();
        s.release_ports(*c);
        return std::unexpected(std::move(*refused));
    }
    return connection(&s, std::move(c));
}

// ---------------------------------------------------------------------------------------------
// Serving side (B).

struct tcp_server {
    system* s = nullptr;
    unique_fd listener;
    std::thread acceptor;
    std::mutex mutex;  // guards readers
    struct reader {
        unique_fd fd;
        std::thread thread;
        bool done = false;
    };
    std::list<reader> readers;
    std::atomic<bool> stopping{false};

    void accept_loop();
    void serve_one(reader& r);
    void reap();  // joins the readers that ended (mutex held)
};

void tcp_server::reap() {
    for (auto it = readers.begin(); it != readers.end();) {
        if (it->done && it->thread.joinable()) {
            it->thread.join();
            it = readers.erase(it);
        } else {
            ++it;
        }
    }
}

void tcp_server::accept_loop() {
    while (!stopping.load(std::memory_order_acquire)) {
        pollfd pfd{listener.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, 100);
        if (ready <= 0) {
            continue;
        }
        unique_fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!fd) {
            continue;
        }
        int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::lock_guard lock(mutex);
        reap();
        readers.emplace_back();
        reader& r = readers.back();
        r.fd = std::move(fd);
        r.thread = std::thread([this, &r] {
            serve_one(r);
            // The peer sees the end now; the descriptor closes when the reader is reaped.
            ::shutdown(r.fd.get(), SHUT_RDWR);
            std::lock_guard done_lock(mutex);
            r.done = true;
        });
    }
}

void tcp_server::serve_one(reader& r) {
    int fd = r.fd.get();
    auto refuse = [fd](std::string_view why) {
        wire::tcp_welcome w{.status = wire::refused,
                            .text_len = static_cast<std::uint32_t>(std::min(why.size(), wire::max_reason)),
                            .link = 0};
        write_record(fd, w, std::as_bytes(std::span<const char>(why.data(), w.text_len)));
    };
    wire::tcp_hello hello{};
    if (!read_record(fd, hello) || hello.magic != wire::tcp_magic || hello.version != wire::version ||
        hello.names_len > wire::max_names) {
        spdlog::warn("rt: tcp: a peer sent no valid hello; closed");
        return;
    }
    std::string joined(hello.names_len, '\0');
    if (!read_all(fd, std::as_writable_bytes(std::span<char>(joined.data(), joined.size())))) {
        return;
    }
    if (hello.buffer_size > wire::max_tcp_buffer || hello.count > wire::max_tcp_count) {
        refuse("buffers too large or too many for a TCP link");
        return;
    }
    std::vector<std::string> names;
    for (std::size_t from = 0; from <= joined.size();) {
        auto to = std::min(joined.find('\n', from), joined.size());
        names.push_back(joined.substr(from, to - from));
        from = to + 1;
    }
    std::vector<std::string_view> views(names.begin(), names.end());
    qos q{.rate = hello.rate,
          .jitter = duration(hello.jitter_ns),
          .delay = duration(hello.delay_ns),
          .buffer_size = hello.buffer_size,
          .buffer_count = hello.count,
          .on_late = hello.on_late == static_cast<std::uint32_t>(late_policy::drop) ? late_policy::drop
                                                                                   : late_policy::deliver_late};
    if (auto bad = check_qos(q, false)) {
        refuse(bad->reason);
        return;
    }
    if (auto full = remote::pool_room_of(*s, q)) {
        refuse(full->reason);
        return;
    }
    system_state& st = remote::state(*s);
    auto c = std::make_shared<connection_state>();
    c->fed = true;
    c->stages.push_back(nullptr);
    if (auto refused = remote::claim(*s, *c, views)) {
        refuse(refused->reason);
        return;
    }
    auto buffers = pool::create(pool_options{.buffer_size = q.buffer_size,
                                             .count = q.buffer_count,
                                             .lock_memory = st.config.lock_memory});
    if (!buffers) {
        remote::release(*s, *c);
        refuse(describe(buffers.error()));
        return;
    }
    c->buffers = std::move(*buffers);
    std::mutex free_mutex;
    std::condition_variable free_cv;
    c->buffers->set_on_free([&free_cv] { free_cv.notify_one(); });
    duration budget = remote::budgets(*s, *c, c->buffers->calibration_buffer());
    if (auto refused = remote::admit(*s, c, q, budget)) {
        remote::release(*s, *c);
        refuse(refused->reason);
        return;
    }
    wire::tcp_welcome welcome{.status = 0, .text_len = 0, .link = c->id};
    bool ok = write_record(fd, welcome);
    vp& target = *st.vps[c->vp];
    while (ok && !stopping.load(std::memory_order_acquire)) {
        wire::tcp_frame frame{};
        if (!read_record(fd, frame)) {
            spdlog::warn("rt: tcp link {}: the peer went away mid-stream", c->id);
            break;
        }
        if (frame.magic != wire::frame_magic || frame.length > q.buffer_size || (frame.flags & ~wire::frame_end) != 0) {
            spdlog::warn("rt: tcp link {}: a malformed frame; the link is closed", c->id);
            break;
        }
        if ((frame.flags & wire::frame_end) != 0) {
            target.end_of_stream(c);
            // Wait for the chain to drain, then let go (bounded by the stream's own buffers).
            std::unique_lock lock(c->finished_mutex);
            c->finished_cv.wait_for(lock, std::chrono::seconds(60),
                                    [&c] { return c->finished.load(std::memory_order_acquire); });
            break;
        }
        std::optional<pool::slot_ref> slot;
        {
            std::unique_lock lock(free_mutex);
            while (!(slot = c->buffers->acquire()) && !stopping.load(std::memory_order_acquire)) {
                free_cv.wait_for(lock, std::chrono::milliseconds(100));
            }
        }
        if (!slot) {
            break;
        }
        if (!read_all(fd, std::span<std::byte>(slot->address, frame.length))) {
            c->buffers->finish(slot->index);
            break;
        }
        time_point now = st.time->now();
        job j{.c = c.get(),
              .stage = 0,
              .slot = *slot,
              .sequence = frame.sequence,
              .ideal = now,
              .deadline = now + c->admitted.delay,
              .length = frame.length};
        std::shared_ptr<pool> pool_ref = c->buffers;
        unsigned index = slot->index;
        target.arrive(c, j, [pool_ref, index] { pool_ref->finish(index); });
    }
    c->buffers->set_on_free(nullptr);
    remote::disconnect(*s, *c);
}

result<std::uint16_t> remote::serve_tcp(system& s, std::string_view host, std::uint16_t port) {
    system_state& st = *s.state_;
    {
        std::lock_guard lock(st.mutex);
        if (!st.remote) {
            st.remote = std::make_unique<remote_state>();
        }
        if (st.remote->tcp) {
            return fail(errc::busy, "rt: serve_tcp: this system already serves over TCP");
        }
    }
    std::string h(host);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    std::string service = std::to_string(port);
    if (::getaddrinfo(h.empty() ? nullptr : h.c_str(), service.c_str(), &hints, &found) != 0 || found == nullptr) {
        return fail(errc::invalid_argument, "rt: serve_tcp: cannot resolve the address");
    }
    unique_fd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    bool ok = fd && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              ::bind(fd.get(), found->ai_addr, found->ai_addrlen) == 0 && ::listen(fd.get(), 64) == 0;
    int err = errno;
    ::freeaddrinfo(found);
    if (!ok) {
        return fail(err == EADDRINUSE ? errc::busy : errc::io_error, "rt: serve_tcp: bind/listen", err);
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    std::uint16_t bound = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                                     : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    auto server = std::make_shared<tcp_server>();
    server->s = &s;
    server->listener = std::move(fd);
    tcp_server* raw = server.get();
    server->acceptor = std::thread([raw] { raw->accept_loop(); });
    std::lock_guard lock(st.mutex);
    st.remote->tcp = std::move(server);
    spdlog::info("rt: serving ports over TCP on {}:{}", h.empty() ? "*" : h, bound);
    return bound;
}

void remote::stop_tcp(system& s) {
    system_state& st = *s.state_;
    std::shared_ptr<tcp_server> server;
    {
        std::lock_guard lock(st.mutex);
        if (!st.remote || !st.remote->tcp) {
            return;
        }
        server = std::move(st.remote->tcp);
    }
    server->stopping.store(true, std::memory_order_release);
    server->acceptor.join();
    std::list<tcp_server::reader> readers;  // the elements keep their addresses (the threads hold them)
    {
        std::lock_guard lock(server->mutex);
        readers.splice(readers.begin(), server->readers);
        for (auto& r : readers) {
            ::shutdown(r.fd.get(), SHUT_RDWR);  // a reader blocked in recv returns
        }
    }
    for (auto& r : readers) {
        if (r.thread.joinable()) {
            r.thread.join();  // the reader takes the mutex to say it is done: not held here
        }
    }
}

}  // namespace datapump::rt::detail
