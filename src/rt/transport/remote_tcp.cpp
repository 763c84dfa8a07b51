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
//
// Before any of that both sides prove the shared key (tcp_auth.hpp; the exchange is drawn in
// wire.hpp): a peer that does not is closed before it reaches the port lookup or a pool. B caps
// its links and its handshakes in progress (over a cap: closed right after accept), gives a
// handshake handshake_timeout in all and an established link idle_timeout between two frames;
// A sends a heartbeat frame after a silence of `heartbeat` so that a slow stream is not taken for
// a dead one.
#include "remote.hpp"

#include "pool.hpp"
#include "system_state.hpp"
#include "tcp_auth.hpp"
#include "tcp_wire.hpp"
#include "wire.hpp"

#include "datapump/base/accept_guard.hpp"
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
#include <limits>
#include <list>
#include <utility>
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

using steady = std::chrono::steady_clock;

// How long a read may wait: never past `until` (a handshake's deadline), and at most `idle` for
// each piece (an established link's silence; negative: no bound).
struct read_limit {
    steady::time_point until = steady::time_point::max();
    duration idle{-1};
};

enum class read_end : std::uint8_t { ok, closed, timed_out };

int wait_ms(const read_limit& limit) {
    using std::chrono::ceil;
    using std::chrono::milliseconds;
    long long ms = -1;
    if (limit.until != steady::time_point::max()) {
        ms = std::max<long long>(0, ceil<milliseconds>(limit.until - steady::now()).count());
    }
    if (limit.idle.count() >= 0) {
        long long idle = ceil<milliseconds>(limit.idle).count();
        ms = ms < 0 ? idle : std::min(ms, idle);
    }
    return static_cast<int>(std::min<long long>(ms, std::numeric_limits<int>::max()));
}

// Reads exactly `out.size()` bytes within `limit`: closed on EOF, error or shutdown. The
// receive goes first (no poll while bytes are there); poll waits only when the socket is empty.
read_end read_all(int fd, std::span<std::byte> out, const read_limit& limit = {}) {
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::recv(fd, out.data() + done, out.size() - done, MSG_DONTWAIT);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n == 0) {
            return read_end::closed;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return read_end::closed;
        }
        pollfd pfd{fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, wait_ms(limit));
        if (ready < 0 && errno != EINTR) {
            return read_end::closed;
        }
        if (ready == 0) {
            return read_end::timed_out;
        }
    }
    return read_end::ok;
}

// Reads one record's bytes (parsed by tcp_wire.hpp).
template <class T>
read_end read_raw(int fd, std::array<std::byte, sizeof(T)>& raw, const read_limit& limit = {}) {
    return read_all(fd, raw, limit);
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
    tcp_link(system_state& st, unique_fd fd, std::uint64_t id)
        : st_(st), fd_(std::move(fd)), id_(id), heartbeat_(st.config.tcp.heartbeat) {}
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
                if (!cv_.wait_for(lock, heartbeat_, [this] { return closed_ || !items_.empty(); })) {
                    // A silence (a slow rate, a source starved): the peer times out silent links.
                    lock.unlock();
                    wire::tcp_frame beat{.magic = wire::frame_magic, .flags = wire::frame_heartbeat, .sequence = 0,
                                         .length = 0};
                    if (!write_record(fd_.get(), beat)) {
                        std::unique_lock check(mutex_);
                        if (closed_) {
                            return;  // close() shut the socket under the heartbeat: not the peer's doing
                        }
                        check.unlock();
                        fail_all_queued();
                        return;
                    }
                    continue;
                }
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
        std::deque<item> rest = give_up();
        resume(first, true);
        fail(rest);
    }

    void fail_all_queued() { fail(give_up()); }

    // Marks the link failed (later sends fail at once) and takes what is queued.
    std::deque<item> give_up() {
        std::deque<item> rest;
        std::lock_guard lock(mutex_);
        if (!failed_) {
            spdlog::warn("rt: tcp link {}: the peer is gone; the connection ends", id_);
        }
        failed_ = true;
        rest.swap(items_);
        return rest;
    }

    void fail(const std::deque<item>& rest) {
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
    duration heartbeat_;
    std::weak_ptr<connection_state> conn_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<item> items_;  // guarded by mutex_
    bool closed_ = false;     // guarded by mutex_
    bool failed_ = false;     // guarded by mutex_
    std::thread sender_;
};

// The connecting side's half of the proof (wire.hpp draws it): answers B's challenge with the
// key and checks that B knows it too. A refusal names what to do; nullopt: both proved the key
// (or neither has one and B is an insecure_no_auth server).
std::optional<refusal> prove_to_server(int fd, const tcp_key& key, std::string_view where, const read_limit& limit) {
    auto no = [where](errc code, std::string_view why) {
        return refusal{code, fmt::format("'{}': {}", where, why)};
    };
    std::array<std::byte, sizeof(wire::tcp_challenge)> raw{};
    read_end got = read_raw<wire::tcp_challenge>(fd, raw, limit);
    if (got != read_end::ok) {
        return no(errc::peer_gone, got == read_end::timed_out
                                       ? "no rt handshake before the handshake timeout"
                                       : "closed before the rt handshake (at its link cap, or not an rt server)");
    }
    auto challenge = wire::parse_challenge(raw);
    if (!challenge) {
        return no(errc::invalid_argument, challenge.error());
    }
    if ((challenge->flags & wire::auth_required) == 0) {
        if (!key.empty()) {
            return no(errc::invalid_argument,
                      "serves without a key (insecure_no_auth): a system with a key connects only to machines "
                      "that prove it");
        }
        return std::nullopt;
    }
    if (key.empty()) {
        return no(errc::invalid_argument, "requires the shared key: set system_config.tcp.key or key_file");
    }
    auto ours = fresh_nonce();
    if (!ours) {
        return no(errc::io_error, describe(ours.error()));
    }
    wire::tcp_answer answer{.magic = wire::auth_magic, .version = wire::tcp_version, .mac = {}, .nonce = {}};
    mac proof = prove(key, std::span<const std::uint8_t, wire::nonce_size>(challenge->nonce), direction::to_server);
    std::memcpy(answer.mac, proof.data(), proof.size());
    std::memcpy(answer.nonce, ours->data(), ours->size());
    std::array<std::byte, sizeof(wire::tcp_proof)> raw_proof{};
    if (!write_record(fd, answer)) {
        return no(errc::peer_gone, "closed during the rt handshake");
    }
    got = read_raw<wire::tcp_proof>(fd, raw_proof, limit);
    if (got != read_end::ok) {
        return no(errc::peer_gone, got == read_end::timed_out ? "no proof of the key before the handshake timeout"
                                                              : "closed during the rt handshake");
    }
    auto theirs = wire::parse_proof(raw_proof);
    if (!theirs) {
        return no(errc::invalid_argument, theirs.error());
    }
    if (theirs->status != 0) {
        return no(errc::invalid_argument, "refused our key: the two systems' tcp keys differ");
    }
    if (!verify(key, *ours, direction::to_client, std::span<const std::uint8_t, wire::mac_size>(theirs->mac))) {
        return no(errc::invalid_argument, "did not prove the shared key (another key, or not the machine meant)");
    }
    return std::nullopt;
}

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
    auto handshake = [&st] { return read_limit{.until = steady::now() + st.config.tcp.handshake_timeout}; };
    if (auto refused = prove_to_server(fd->get(), remote_of(st).key, where.endpoint, handshake())) {
        s.release_ports(*c);
        return std::unexpected(std::move(*refused));
    }
    wire::tcp_hello hello{.magic = wire::tcp_magic,
                          .version = wire::tcp_version,
                          .rate = q.rate,
                          .delay_ns = q.delay.count(),
                          .jitter_ns = q.jitter.count(),
                          .buffer_size = q.buffer_size,
                          .count = q.buffer_count,
                          .on_late = static_cast<std::uint32_t>(q.on_late),
                          .names_len = static_cast<std::uint32_t>(joined.size())};
    std::array<std::byte, sizeof(wire::tcp_welcome)> raw_welcome{};
    if (!write_record(fd->get(), hello, std::as_bytes(std::span<const char>(joined.data(), joined.size()))) ||
        read_raw<wire::tcp_welcome>(fd->get(), raw_welcome, handshake()) != read_end::ok) {
        s.release_ports(*c);
        return no(errc::peer_gone, fmt::format("'{}' did not answer the rt handshake", where.endpoint));
    }
    auto welcome = wire::parse_welcome(raw_welcome);
    if (!welcome) {
        s.release_ports(*c);
        return no(errc::peer_gone, fmt::format("'{}': {}", where.endpoint, welcome.error()));
    }
    if (welcome->status != 0) {
        std::string why(welcome->text_len, '\0');
        static_cast<void>(read_all(fd->get(), std::as_writable_bytes(std::span<char>(why.data(), why.size())),
                                   handshake()));
        s.release_ports(*c);
        return no(errc::full, fmt::format("the machine at '{}' refused: {}", where.endpoint, why));
    }
    auto link = std::make_shared<tcp_link>(st, std::move(*fd), welcome->link);
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

namespace {

// At most one line a second for what an unauthenticated peer can cause at will (a failed proof,
// a refusal over a cap): the lines held back are counted in the next one. Any thread.
class log_limiter {
public:
    // Whether to log now; `held` is then the number of lines suppressed since the last one.
    bool allow(std::uint64_t& held) {
        std::lock_guard lock(mutex_);
        auto now = steady::now();
        if (now < next_) {
            ++held_;
            return false;
        }
        next_ = now + std::chrono::seconds(1);
        held = std::exchange(held_, 0);
        return true;
    }

private:
    std::mutex mutex_;
    steady::time_point next_{};  // guarded by mutex_
    std::uint64_t held_ = 0;     // guarded by mutex_
};

// The peer's address for the log ("?" when it has none).
std::string peer_of(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return "?";
    }
    std::array<char, NI_MAXHOST> host{};
    std::array<char, NI_MAXSERV> serv{};
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host.data(), host.size(), serv.data(), serv.size(),
                      NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return "?";
    }
    return fmt::format("{}:{}", host.data(), serv.data());
}

bool is_loopback(const sockaddr* addr) {
    if (addr->sa_family == AF_INET) {
        return (ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->sa_family == AF_INET6) {
        const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(&a) ||
               (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);  // NOLINT: the mapped IPv4 address
    }
    return false;
}

}  // namespace

struct tcp_server {
    system* s = nullptr;
    tcp_serve_options options;
    unique_fd listener;
    std::thread acceptor;
    std::mutex mutex;  // guards readers, links, handshakes
    struct reader {
        unique_fd fd;
        std::thread thread;
        bool done = false;
        bool established = false;  // counted in links (else in handshakes)
    };
    std::list<reader> readers;
    std::size_t links = 0;
    std::size_t handshakes = 0;
    std::atomic<bool> stopping{false};
    // Counters (relaxed: monitoring only, read by system::tcp_stats).
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> over_cap{0};
    std::atomic<std::uint64_t> auth_failures{0};
    std::atomic<std::uint64_t> handshake_timeouts{0};
    std::atomic<std::uint64_t> idle_timeouts{0};
    log_limiter refusals;

    void accept_loop();
    // A connection just accepted: closed at once over a cap, else handed to a reader thread.
    void take(unique_fd fd);
    // The serving side's half of the proof (wire.hpp): true when the peer proved the key (or the
    // server is insecure_no_auth); false: refused and logged, the caller closes.
    bool authenticate(int fd, const read_limit& limit);
    // The peer finished its handshake: it becomes a link unless max_links are there.
    bool promote(reader& r);
    void back_off(accept_guard& guard, int err);
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

// After a failed accept (EMFILE...): the guard's pause, slept in steps that watch `stopping`;
// retrying at once would spin (docs/rt.md, "Remote ports over TCP").
void tcp_server::back_off(accept_guard& guard, int err) {
    const auto until = std::chrono::steady_clock::now() + guard.failed(listener.get(), err);
    while (!stopping.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            until - std::chrono::steady_clock::now(), std::chrono::milliseconds(100)));
    }
}

void tcp_server::accept_loop() {
    accept_guard guard({.name = "rt: tcp",
                        .pause = std::chrono::milliseconds(250),
                        .log_every = std::chrono::seconds(10),
                        .farewell = {},  // the peer's connect sees the link close before its welcome
                        .advice = "raise the descriptor limit (LimitNOFILE=, ulimit -n)"});
    while (!stopping.load(std::memory_order_acquire)) {
        pollfd pfd{listener.get(), POLLIN, 0};
        int ready = ::poll(&pfd, 1, 100);
        if (ready <= 0) {
            continue;
        }
        unique_fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!fd) {
            back_off(guard, errno);
            continue;
        }
        take(std::move(fd));
    }
}

void tcp_server::take(unique_fd fd) {
    std::lock_guard lock(mutex);
    reap();
    if (handshakes >= options.max_handshakes || links >= options.max_links) {
        over_cap.fetch_add(1, std::memory_order_relaxed);
        std::uint64_t held = 0;
        if (refusals.allow(held)) {
            spdlog::warn("rt: tcp: {} closed: {} links and {} handshakes (caps {} and {}); {} more not logged",
                         peer_of(fd.get()), links, handshakes, options.max_links, options.max_handshakes, held);
        }
        return;  // closed here: no thread, no byte read
    }
    accepted.fetch_add(1, std::memory_order_relaxed);
    ++handshakes;
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // What B writes is small (challenge, proof, welcome): a peer that reads nothing cannot hold
    // the reader in a send longer than a handshake.
    auto send_limit = std::chrono::duration_cast<std::chrono::microseconds>(remote::state(*s).config.tcp.handshake_timeout);
    timeval tv{.tv_sec = static_cast<time_t>(send_limit.count() / 1'000'000),
               .tv_usec = static_cast<suseconds_t>(send_limit.count() % 1'000'000)};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    readers.emplace_back();
    reader& r = readers.back();
    r.fd = std::move(fd);
    r.thread = std::thread([this, &r] {
        serve_one(r);
        // The peer sees the end now; the descriptor closes when the reader is reaped.
        ::shutdown(r.fd.get(), SHUT_RDWR);
        std::lock_guard done_lock(mutex);
        if (r.established) {
            --links;
        } else {
            --handshakes;
        }
        r.done = true;
    });
}

bool tcp_server::authenticate(int fd, const read_limit& limit) {
    const tcp_key& key = remote_of(remote::state(*s)).key;
    auto refused = [this, fd](std::string_view why, bool timed_out) {
        if (stopping.load(std::memory_order_acquire)) {
            return false;  // stop_tcp shut the socket: not the peer's failure
        }
        (timed_out ? handshake_timeouts : auth_failures).fetch_add(1, std::memory_order_relaxed);
        std::uint64_t held = 0;
        if (refusals.allow(held)) {
            spdlog::warn("rt: tcp: {} refused: {}; {} more not logged", peer_of(fd), why, held);
        }
        return false;
    };
    auto ours = fresh_nonce();
    if (!ours) {
        spdlog::error("rt: tcp: {}", describe(ours.error()));
        return false;
    }
    wire::tcp_challenge challenge{.magic = wire::auth_magic,
                                  .version = wire::tcp_version,
                                  .flags = key.empty() ? 0U : wire::auth_required,
                                  .reserved = 0,
                                  .nonce = {}};
    std::memcpy(challenge.nonce, ours->data(), ours->size());
    if (!write_record(fd, challenge)) {
        return false;
    }
    if (key.empty()) {
        return true;  // insecure_no_auth: serve_tcp allowed it on loopback only
    }
    // The magic first: an old (version 1) or unauthenticated client's hello is refused at once,
    // not after the deadline.
    std::array<std::byte, sizeof(wire::tcp_answer)> raw{};
    constexpr std::size_t head = 2 * sizeof(std::uint32_t);
    read_end got = read_all(fd, std::span<std::byte>(raw).first(head), limit);
    if (got == read_end::ok) {
        std::uint32_t magic = 0;
        std::memcpy(&magic, raw.data(), sizeof magic);
        if (magic != wire::auth_magic) {
            return refused("no answer to the challenge (an unauthenticated or version 1 client)", false);
        }
        got = read_all(fd, std::span<std::byte>(raw).subspan(head), limit);
    }
    if (got != read_end::ok) {
        return refused(got == read_end::timed_out ? "no answer before the handshake timeout"
                                                  : "closed before answering the challenge",
                       got == read_end::timed_out);
    }
    auto answer = wire::parse_answer(raw);
    if (!answer) {
        return refused(answer.error(), false);
    }
    wire::tcp_proof proof{.status = 0, .reserved = 0, .mac = {}};
    if (!verify(key, *ours, direction::to_server, std::span<const std::uint8_t, wire::mac_size>(answer->mac))) {
        proof.status = wire::refused;
        static_cast<void>(write_record(fd, proof));
        return refused("a wrong key", false);
    }
    mac mine = prove(key, std::span<const std::uint8_t, wire::nonce_size>(answer->nonce), direction::to_client);
    std::memcpy(proof.mac, mine.data(), mine.size());
    return write_record(fd, proof);
}

bool tcp_server::promote(reader& r) {
    std::lock_guard lock(mutex);
    if (links >= options.max_links) {
        return false;
    }
    --handshakes;
    ++links;
    r.established = true;
    return true;
}

void tcp_server::serve_one(reader& r) {
    int fd = r.fd.get();
    const tcp_link_config& config = remote::state(*s).config.tcp;
    const read_limit handshake{.until = steady::now() + config.handshake_timeout};
    if (!authenticate(fd, handshake)) {
        return;  // before the hello: no port lookup, no pool
    }
    auto refuse = [fd](std::string_view why) {
        wire::tcp_welcome w{.status = wire::refused,
                            .text_len = static_cast<std::uint32_t>(std::min(why.size(), wire::max_reason)),
                            .link = 0};
        write_record(fd, w, std::as_bytes(std::span<const char>(why.data(), w.text_len)));
    };
    std::array<std::byte, sizeof(wire::tcp_hello)> raw_hello{};
    read_end got = read_raw<wire::tcp_hello>(fd, raw_hello, handshake);
    auto hello = wire::parse_hello(raw_hello);
    std::string joined;
    if (got == read_end::ok && hello) {
        joined.assign(hello->names_len, '\0');
        got = read_all(fd, std::as_writable_bytes(std::span<char>(joined.data(), joined.size())), handshake);
    }
    if (got != read_end::ok || !hello) {
        if (got == read_end::timed_out) {
            handshake_timeouts.fetch_add(1, std::memory_order_relaxed);
        }
        spdlog::warn("rt: tcp: {} sent no valid hello ({}); closed", peer_of(fd),
                     got == read_end::timed_out ? "the handshake timed out" : !hello ? hello.error() : "closed");
        return;
    }
    if (!promote(r)) {
        refuse(fmt::format("this machine serves at most {} links", options.max_links));
        return;
    }
    if (auto bounds = wire::hello_out_of_bounds(*hello)) {
        refuse(*bounds);
        return;
    }
    std::vector<std::string> names = wire::split_names(joined);
    std::vector<std::string_view> views(names.begin(), names.end());
    qos q = wire::qos_of(*hello);
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
    const read_limit idle{.idle = config.idle_timeout};
    while (ok && !stopping.load(std::memory_order_acquire)) {
        std::array<std::byte, sizeof(wire::tcp_frame)> raw_frame{};
        got = read_raw<wire::tcp_frame>(fd, raw_frame, idle);
        if (got == read_end::timed_out) {
            idle_timeouts.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("rt: tcp link {}: nothing heard from {} for {} ms; the link is closed", c->id, peer_of(fd),
                         std::chrono::duration_cast<std::chrono::milliseconds>(config.idle_timeout).count());
            break;
        }
        if (got != read_end::ok) {
            spdlog::warn("rt: tcp link {}: the peer went away mid-stream", c->id);
            break;
        }
        auto kind = wire::parse_frame(raw_frame, q.buffer_size);
        if (!kind) {
            spdlog::warn("rt: tcp link {}: {}; the link is closed", c->id, kind.error());
            break;
        }
        if (*kind == wire::frame_kind::heartbeat) {
            continue;
        }
        wire::tcp_frame frame{};
        std::memcpy(&frame, raw_frame.data(), sizeof frame);
        if (*kind == wire::frame_kind::end) {
            target.end_of_stream(c);
            // Wait for the chain to drain, then let go (bounded by the stream's own buffers). A
            // port closed meanwhile (the connection detached) or the server stopping never
            // signals finished_cv: looked at every 100 ms rather than waited out for a minute.
            auto give_up = steady::now() + std::chrono::seconds(60);
            std::unique_lock lock(c->finished_mutex);
            while (!c->finished_cv.wait_for(lock, std::chrono::milliseconds(100), [&c, this] {
                return c->finished.load(std::memory_order_acquire) || c->detached.load(std::memory_order_acquire) ||
                       stopping.load(std::memory_order_acquire);
            }) && steady::now() < give_up) {
            }
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
        if (read_all(fd, std::span<std::byte>(slot->address, frame.length), idle) != read_end::ok) {
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

result<std::uint16_t> remote::serve_tcp(system& s, const tcp_serve_options& options) {
    system_state& st = *s.state_;
    remote_state& rs = remote_of(st);
    if (options.max_links == 0 || options.max_handshakes == 0) {
        return fail(errc::invalid_argument, "rt: serve_tcp: max_links and max_handshakes must be at least 1");
    }
    if (rs.key.empty() && !options.insecure_no_auth) {
        return fail(errc::invalid_argument,
                    "rt: serve_tcp: no key: set system_config.tcp.key or key_file (insecure_no_auth serves "
                    "without one, on loopback only)");
    }
    {
        std::lock_guard lock(st.mutex);
        if (rs.tcp) {
            return fail(errc::busy, "rt: serve_tcp: this system already serves over TCP");
        }
    }
    const std::string& h = options.host;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    std::string service = std::to_string(options.port);
    if (::getaddrinfo(h.empty() ? nullptr : h.c_str(), service.c_str(), &hints, &found) != 0 || found == nullptr) {
        return fail(errc::invalid_argument, "rt: serve_tcp: cannot resolve the address");
    }
    if (rs.key.empty() && !is_loopback(found->ai_addr)) {
        ::freeaddrinfo(found);
        return fail(errc::invalid_argument,
                    "rt: serve_tcp: without a key only a loopback address is served (set system_config.tcp.key "
                    "or key_file)");
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
    server->options = options;
    server->listener = std::move(fd);
    tcp_server* raw = server.get();
    server->acceptor = std::thread([raw] { raw->accept_loop(); });
    std::lock_guard lock(st.mutex);
    rs.tcp = std::move(server);
    if (rs.key.empty()) {
        spdlog::warn("rt: serving ports over TCP on {}:{} WITHOUT authentication (insecure_no_auth): any local "
                     "process may feed them",
                     h, bound);
    } else {
        spdlog::info("rt: serving ports over TCP on {}:{} (peers prove the shared key; at most {} links)",
                     h.empty() ? "*" : h, bound, options.max_links);
    }
    return bound;
}

tcp_serve_stats remote::tcp_stats(const system& s) {
    system_state& st = *s.state_;
    std::shared_ptr<tcp_server> server;
    {
        std::lock_guard lock(st.mutex);
        if (!remote_of(st).tcp) {
            return {};
        }
        server = remote_of(st).tcp;
    }
    tcp_serve_stats out;
    {
        std::lock_guard lock(server->mutex);
        out.links = server->links;
        out.handshakes = server->handshakes;
    }
    out.accepted = server->accepted.load(std::memory_order_relaxed);
    out.over_cap = server->over_cap.load(std::memory_order_relaxed);
    out.auth_failures = server->auth_failures.load(std::memory_order_relaxed);
    out.handshake_timeouts = server->handshake_timeouts.load(std::memory_order_relaxed);
    out.idle_timeouts = server->idle_timeouts.load(std::memory_order_relaxed);
    return out;
}

void remote::stop_tcp(system& s) {
    system_state& st = *s.state_;
    std::shared_ptr<tcp_server> server;
    {
        std::lock_guard lock(st.mutex);
        if (!remote_of(st).tcp) {
            return;
        }
        server = std::move(remote_of(st).tcp);
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
