#include "datapump/http/server.hpp"

#include "connection.hpp"

#include "datapump/ingest/upload_names.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/io/features.hpp"
#include "server_state.hpp"

#include <arpa/inet.h>
#include <liburing.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <future>
#include <latch>

namespace datapump::http {

const char* to_string(send_path p) {
    switch (p) {
        case send_path::automatic:
            return "auto";
        case send_path::sendfile:
            return "sendfile";
        case send_path::splice:
            return "splice";
        case send_path::send_zc:
            return "send_zc";
        case send_path::send:
            return "send";
    }
    return "unknown";
}

namespace {

struct bound_address {
    sockaddr_storage storage{};
    socklen_t length = 0;
    int family = AF_INET;
};

result<bound_address> parse_address(const std::string& host, std::uint16_t port) {
    bound_address a;
    std::string h = host;
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
        h = h.substr(1, h.size() - 2);
    }
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    if (h.empty() || h == "0.0.0.0") {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        v4->sin_addr.s_addr = htonl(INADDR_ANY);
        a.length = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        a.length = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        a.length = sizeof(sockaddr_in6);
        a.family = AF_INET6;
    } else {
        return fail(errc::invalid_argument, "the listen host is not an IPv4 or IPv6 address");
    }
    return a;
}

result<unique_fd> make_listener(const bound_address& a, bool reuse_port = true) {
    unique_fd fd(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return fail_errno("socket");
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Every loop listens on the same address: the kernel spreads connections across them. The
    // admin listener is one socket: without SO_REUSEPORT no other socket can share its port.
    if (reuse_port) {
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.length) != 0) {
        return fail_errno(reuse_port ? "bind" : "bind the admin listener (--admin-listen)");
    }
    if (::listen(fd.get(), 1024) != 0) {
        return fail_errno("listen");
    }
    return fd;
}

// pkg: socket activation
// The inherited listening socket (server_config::inherited_listeners) bound to exactly `a`: same
// family, address and port, a listening stream socket. -1 when none is.
int find_inherited(const bound_address& a, const std::vector<int>& fds) {
    for (const int fd : fds) {
        sockaddr_storage bound{};
        socklen_t len = sizeof bound;
        int listening = 0;
        int type = 0;
        socklen_t int_len = sizeof listening;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0 || bound.ss_family != a.family ||
            ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &int_len) != 0 || listening == 0) {
            continue;
        }
        int_len = sizeof type;
        if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &int_len) != 0 || type != SOCK_STREAM) {
            continue;
        }
        if (a.family == AF_INET) {
            const auto* want = reinterpret_cast<const sockaddr_in*>(&a.storage);
            const auto* have = reinterpret_cast<const sockaddr_in*>(&bound);
            if (want->sin_port == have->sin_port && want->sin_addr.s_addr == have->sin_addr.s_addr) {
                return fd;
            }
        } else {
            const auto* want = reinterpret_cast<const sockaddr_in6*>(&a.storage);
            const auto* have = reinterpret_cast<const sockaddr_in6*>(&bound);
            if (want->sin6_port == have->sin6_port &&
                std::memcmp(&want->sin6_addr, &have->sin6_addr, sizeof want->sin6_addr) == 0) {
                return fd;
            }
        }
    }
    return -1;
}

result<unique_fd> dup_listener(int fd) {
    unique_fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy) {
        return fail_errno("dup an inherited listening socket");
    }
    return copy;
}

std::uint16_t bound_port(int fd) {
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    return bound.ss_family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port)
                                      : ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
}

void set_port(bound_address& a, std::uint16_t port) {
    if (a.family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
    } else {
        reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
    }
}

// The admin listener on a unix socket at `path`: a socket file left by a dead instance (nobody
// accepts on it) is replaced; a live one, or a file that is not a socket, is an error. The mode
// is set to 0660 before listen(), so no connection is ever accepted under the umask's mode.
result<unique_fd> make_unix_listener(const std::string& path, ino_t& inode) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) {
        return fail(errc::invalid_argument, "the admin socket path is empty or longer than 107 bytes");
    }
    std::memcpy(a.sun_path, path.data(), path.size());
    const auto* address = reinterpret_cast<const sockaddr*>(&a);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return fail(errc::invalid_argument, "the admin socket path exists and is not a socket (remove it)");
        }
        unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), address, sizeof a) == 0) {
            return fail(errc::busy, "another process listens on the admin socket");
        }
        ::unlink(path.c_str());  // stale: its listener is gone
    }
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return fail_errno("socket");
    }
    if (::bind(fd.get(), address, sizeof a) != 0) {
        return fail_errno("bind the admin socket (--admin-listen unix:PATH)");
    }
    if (::chmod(path.c_str(), 0660) != 0 || ::lstat(path.c_str(), &st) != 0) {
        const int sys = errno;
        ::unlink(path.c_str());
        return fail_errno("chmod the admin socket", sys);
    }
    inode = st.st_ino;
    if (::listen(fd.get(), 64) != 0) {
        const int sys = errno;
        ::unlink(path.c_str());
        return fail_errno("listen", sys);
    }
    return fd;
}

std::string peer_name(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_UNIX) {
        return "unix";  // the admin socket: its peers have no address
    }
    char text[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
        return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
    }
    if (ss.ss_family != AF_INET6) {
        return "?";
    }
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
}

std::string refusal_bytes(std::string_view why) {
    const response_plan plan = error_response(503, why, true);
    return plan.head + plan.body;
}

void refuse_connection(int fd, std::string_view why) {
    const std::string bytes = refusal_bytes(why);
    // Best effort on a fresh socket, whose buffer is empty: it never blocks (O_NONBLOCK).
    [[maybe_unused]] const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
}

// A connection the loop accepted: refused (draining, over --max-connections or its address's
// limit) or made a connection of this loop.
void admit_connection(loop_context& ctx, int fd, bool admin) {
    server::state& s = *ctx.owner;
    if (s.draining.load(std::memory_order_relaxed)) {
        ::close(fd);
        return;
    }
    if (s.connections.load(std::memory_order_relaxed) >= ctx.settings->max_connections) {
        refuse_connection(fd, "too many connections");
        return;
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
        ::close(fd);  // the peer is gone already
        return;
    }
    if (admin) {
        // The admin listener is the operator's (loopback or a unix socket, maybe a token): its
        // connections take no share of a client address's limits, so that a flood of public
        // connections from 127.0.0.1 cannot lock the operator out of the status page.
        auto* c = new connection(ctx, unique_fd(fd), peer_name(peer), ctx.next_conn_id++, true);
        c->start();
        connection::settle(c);
        return;
    }
    const auto from = stream::client_address::from(reinterpret_cast<const sockaddr*>(&peer));
    auto slot = s.clients.connect(from);
    if (!slot) {
        // Counted (datapump_per_ip_refusals_total), not logged: a flood of them must not flood the log.
        refuse_connection(fd, stream::describe(slot.error(), from));
        return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* c = new connection(ctx, unique_fd(fd), peer_name(peer), ctx.next_conn_id++, false);
    c->hold_client(from, std::move(*slot));
    c->start();
    connection::settle(c);
}

}  // namespace

void acceptor::complete(int result, std::uint32_t flags) {
    if ((flags & IORING_CQE_F_MORE) == 0) {
        armed = false;
    }
    server::state& s = *ctx->owner;
    if (result >= 0) {
        admit_connection(*ctx, result, admin);
    } else if (result != -ECANCELED && listener) {
        // EMFILE and the like: retrying at once would spin (docs/daemon.md, "Limits"). The pause
        // is the loop's: every listener of the process meets the same descriptor limit.
        const std::chrono::milliseconds pause = ctx->guard->failed(listener.get(), -result);
        if (pause.count() > 0) {
            ctx->pause_accepting(pause);
        }
    }
    if (!armed && !ctx->accept_paused && listener && !s.draining.load(std::memory_order_relaxed)) {
        arm();
    }
}

void accept_resumer::complete(int /*result*/, std::uint32_t /*flags*/) {
    ctx->accept_paused = false;
    if (!ctx->owner->draining.load(std::memory_order_relaxed)) {
        ctx->arm_accept();
    }
}

void acceptor::arm() {
    armed = true;
    ctx->loop->accept_multishot(listener.get(), this);
}

void loop_context::arm_accept() {
    for (auto& a : acceptors) {
        if (!a->armed && a->listener) {
            a->arm();
        }
    }
}

void loop_context::pause_accepting(std::chrono::milliseconds pause) {
    accept_paused = true;
    for (auto& a : acceptors) {
        if (a->armed) {
            loop->cancel(a.get());  // its -ECANCELED does not re-arm while paused
        }
    }
    loop->arm(resume_timer, io::clock::now() + pause);
}

// Calls `f` on every connection of this loop, then lets each one go if it is done. The list is
// copied first: a connection that closes removes itself from `conns`.
template <class F>
void loop_context::for_each_connection(F f) {
    std::vector<connection*> all;
    all.reserve(conns.size());
    for (const auto& [id, c] : conns) {
        all.push_back(c);
    }
    for (connection* c : all) {
        f(*c);
        connection::settle(c);
    }
}

void loop_context::drain() {
    // The ring holds its own reference to the socket: cancel the accept, then close it.
    for (auto& a : acceptors) {
        loop->cancel(a.get());
        a->listener.reset();
    }
    loop->disarm(resume_timer);
    accept_paused = false;
    for_each_connection([](connection& c) { c.drain(); });
}

void loop_context::cut_all() {
    for_each_connection([](connection& c) { c.cut(); });
}

std::uint64_t descriptors_needed(const server_config& config) {
    const std::uint64_t per_connection = config.path == send_path::splice ? 4 : 2;
    constexpr std::uint64_t per_loop = 4;
    constexpr std::uint64_t fixed = 64;
    return config.max_connections * per_connection + std::uint64_t{config.loops} * per_loop + fixed;
}

server::server(std::unique_ptr<state> s) : state_(std::move(s)) {}

server::~server() { shutdown(std::chrono::milliseconds(0)); }

std::uint16_t server::port() const { return state_->port; }
std::vector<std::uint16_t> server::ports() const { return state_->ports; }
std::uint16_t server::admin_port() const { return state_->admin_port; }
send_path server::path() const { return state_->path; }
stream::stream_table& server::streams_table() { return state_->table; }

namespace {

// Adds `file` (mime.types format) to the built-in table; empty: the built-in table only. A file
// that cannot be read is logged and left out: a Content-Type is never worth refusing to serve.
void load_mime_types(http::mime_types& mime, const std::string& file) {
    if (file.empty()) {
        return;
    }
    constexpr std::streamsize most = std::streamsize{16} << 20;  // Debian's is 60 KB
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    if (in) {
        text << in.rdbuf();
    }
    if (!in || in.bad() || text.tellp() > most) {
        spdlog::warn("content types: cannot read {} ({}); only the built-in table of media and web types is used", file,
                     in ? "larger than 16 MiB" : errno_text(errno));
        return;
    }
    const std::size_t added = mime.add_system(text.view());
    spdlog::info("content types: the built-in table, and {} more extensions from {}", added, file);
}

// The open-file cache of a served root (null when off). Each kept file holds a descriptor: the
// cache gets at most half of the descriptor limit, so that connections keep the other half.
std::unique_ptr<fs::open_cache> make_open_cache(const server_config& config, bool loans_path,
                                                fs::provider_instance& instance, int root_fd) {
    // On the loan paths only the files that go from the page cache (below direct_min_size): a
    // kept file sent from the arena would keep its cache view, and with more small files than
    // arena buffers that cost the direct provider 0.4x of its req/s (docs/benchmarks.md, "Small
    // files"); those opens already share a file's cached blocks.
    fs::open_cache_config kept{.valid = std::chrono::milliseconds(config.open_file_cache_valid_ms)};
    if (loans_path) {
        if (config.direct_min_size == 0 || instance.ops().send_fd == nullptr) {
            return nullptr;
        }
        kept.max_size = std::min(kept.max_size, config.direct_min_size - 1);
    }
    if (config.open_file_cache == 0) {
        return nullptr;
    }
    std::uint64_t max_files = config.open_file_cache;
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && max_files > lim.rlim_cur / 2) {
        max_files = std::max<std::uint64_t>(1, lim.rlim_cur / 2);
        spdlog::warn("open-file cache: {} files asked, {} kept (half of the descriptor limit {}; raise it with "
                     "ulimit -n or LimitNOFILE=)",
                     config.open_file_cache, max_files, static_cast<std::uint64_t>(lim.rlim_cur));
    }
    kept.max_files = max_files;
    auto made = fs::open_cache::create(instance, root_fd, kept);
    if (!made) {
        spdlog::warn("open-file cache off: {}", describe(made.error()));
        return nullptr;
    }
    return std::move(*made);
}

}  // namespace

result<std::unique_ptr<server>> server::start(const server_config& config) {
    // sendfile() and splice() have no MSG_NOSIGNAL: a client that resets would raise SIGPIPE and, by default,
    // end the process. Ignore it, unless the embedding program installed its own handler.
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
        std::signal(SIGPIPE, SIG_IGN);
    }
    auto s = std::make_unique<state>(config);
    s->started = io::clock::now();
    const auto& features = io::detect_features();
    io::log_features_once(features);
    if (!features.io_uring) {
        return fail(errc::unsupported, "datapumpd needs io_uring (is kernel.io_uring_disabled set?)");
    }
    if (config.loops == 0) {
        return fail(errc::invalid_argument, "at least one loop is needed");
    }

    // The send path: auto picks by provider; an explicit one must suit the provider.
    send_path path = config.path;
    if (path == send_path::automatic) {
        path = config.provider == "posix" ? send_path::sendfile : send_path::send_zc;
    }
    if (path == send_path::send_zc && !features.send_zc) {
        spdlog::warn("the kernel has no IORING_OP_SEND_ZC: sending arena buffers with plain send (copied)");
        path = send_path::send;
    }
    s->path = path;

    cache::file_cache_config cc;
    cc.buffers.buffer_size = std::size_t{config.buffer_kib} * 1024;
    if (cc.buffers.buffer_size == 0 || cc.buffers.buffer_size % 4096 != 0) {
        return fail(errc::invalid_argument, "the buffer size must be a multiple of 4 KiB");
    }
    // The page-cache paths send from the kernel's page cache: the arena would sit unused (and
    // pre-faulting it delayed start-up by seconds), so they keep only a token one.
    cc.buffers.buffer_count = s->arena_used()
                                  ? std::max<std::size_t>(16, std::size_t{config.cache_mib} * 1024 / config.buffer_kib)
                                  : 16;
    cc.readahead_blocks = 8;
    // Many streams read ahead at once: their batches go to four workers (demand reads first),
    // not one after another on the prefetch thread.
    cc.fallback_workers = 4;
    cc.prefetch_on_workers = true;
    // Huge pages only for an arena that is used (the token one stays a small memfd).
    cc.buffers.huge_pages = s->arena_used() && config.huge_pages != huge_pages::off;
    auto cache = cache::file_cache::create(cc);
    if (!cache) {
        return std::unexpected(cache.error());
    }
    s->cache = std::move(*cache);
    if (cc.buffers.huge_pages) {
        const buffer::arena& arena = s->cache->buffers().arena();
        s->arena_huge_bytes = arena.huge_page_bytes();
        constexpr double mib = 1024.0 * 1024.0;
        if (config.huge_pages == huge_pages::on && s->arena_huge_bytes < arena.bytes()) {
            spdlog::error("--huge-pages on: only {:.0f} of the arena's {:.0f} MiB got huge pages (are transparent "
                          "huge pages off in /sys/kernel/mm/transparent_hugepage/enabled, or memory fragmented?); "
                          "use --huge-pages try to start with small pages",
                          static_cast<double>(s->arena_huge_bytes) / mib, static_cast<double>(arena.bytes()) / mib);
            return fail(errc::no_buffers, "--huge-pages on: the arena did not get huge pages throughout");
        }
        spdlog::info("cache arena: {:.0f} MiB, {:.0f} MiB of it in huge pages",
                     static_cast<double>(arena.bytes()) / mib, static_cast<double>(s->arena_huge_bytes) / mib);
    }

    // The cache only serves the loan paths; the page-cache paths open files without it (no cache
    // view, no change watch: sendfile/splice read whatever the file holds when it runs).
    auto instance = s->registry.instantiate(
        config.provider, {.root = config.root, .cache = s->loans_path() ? s->cache.get() : nullptr, .flags = 0});
    if (!instance) {
        return std::unexpected(instance.error());
    }
    s->instance = std::move(*instance);
    if (!s->loans_path() && s->instance.ops().send_fd == nullptr) {
        return fail(errc::invalid_argument,
                    "this provider cannot send from the page cache: use --send-path send-zc or send");
    }
    s->root_fd = unique_fd(::open(config.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!s->root_fd) {
        return fail_errno("open root");
    }
    load_mime_types(s->mime, config.mime_types_file);
    if (config.writable) {
        if (config.upload_min_rate != 0 && config.upload_rate_window_ms == 0) {
            return fail(errc::invalid_argument, "an upload minimum rate needs a window to measure it over");
        }
        // At most half the arena for uploads (each pins up to upload_windows + 1 buffers), so
        // that readers of the loan paths and followers always find buffers too.
        const std::size_t buffers = s->cache->buffers().arena().count();
        s->max_uploads = config.max_uploads != 0
                             ? config.max_uploads
                             : static_cast<unsigned>(std::max<std::size_t>(1, buffers / 2 / (config.upload_windows + 1)));
        auto pub = ingest::publisher::start(
            s->instance, {.mode = config.durability, .batch_window = config.durability_window, .max_batch = 256});
        if (!pub) {
            return std::unexpected(pub.error());
        }
        s->publishing = std::move(*pub);
    }

    // Paced streams are ticked by rt's VPs (docs/daemon.md, "Pacing and admission"). Their timer
    // connections have no buffers (nothing to lock), and a tick need not be timed to the
    // microsecond: the VPs sleep to each instant and never spin on the clock (a spin would burn
    // CPU at real-time priority for nothing a network stream can see). No engine: the ticks post
    // to the daemon's own loops.
    rt::system_config rc;
    rc.vps = config.rt_vps;
    rc.max_density = config.rt_max_density;
    rc.priority = rt::kernel_priority::fifo;
    rc.spin_window = rt::duration(0);
    rc.max_spin_window = rt::duration(0);
    rc.lock_memory = false;
    rc.engine = false;
    rc.name = "rt";
    auto made_rt = rt::system::create(rc);
    if (!made_rt) {
        return std::unexpected(made_rt.error());
    }
    s->rt_system = std::move(*made_rt);
    s->pacing = std::make_unique<stream::rt_pacing>(*s->rt_system);

    // Every loop listens on every public address; the first loop binds each one first, so that
    // the others bind the port it got (it matters when asked for port 0).
    std::vector<listen_address> wanted{{config.listen_host, config.listen_port}};
    wanted.insert(wanted.end(), config.more_listen.begin(), config.more_listen.end());
    std::vector<bound_address> addresses;
    // pkg: socket activation: per address, the inherited socket serving it (-1: bind one).
    std::vector<int> inherited;
    for (const auto& w : wanted) {
        auto address = parse_address(w.host, w.port);
        if (!address) {
            return std::unexpected(address.error());
        }
        addresses.push_back(*address);
        inherited.push_back(w.port == 0 ? -1 : find_inherited(*address, config.inherited_listeners));
    }
    for (const int fd : config.inherited_listeners) {
        if (std::find(inherited.begin(), inherited.end(), fd) == inherited.end()) {
            spdlog::warn("inherited socket (fd {}) is bound to no --listen address: not served (make the socket "
                         "unit's ListenStream= and --listen name the same host and port)",
                         fd);
        }
    }
    const auto settings = std::make_shared<const server_config>(config);
    const auto rules = make_answer_rules(config);
    auto started_root = std::make_shared<served_root>();
    started_root->path = config.root;
    started_root->instance = &s->instance;
    started_root->fd = s->root_fd.get();
    started_root->files = make_open_cache(config, s->loans_path(), s->instance, started_root->fd);
    s->served_path = config.root;
    s->roots.push_back(started_root);
    for (unsigned i = 0; i < config.loops; ++i) {
        auto ctx = std::make_unique<loop_context>();
        ctx->owner = s.get();
        ctx->index = i;
        ctx->settings = settings;
        ctx->rules = rules;
        ctx->root = started_root;
        for (std::size_t j = 0; j < addresses.size(); ++j) {
            auto& address = addresses[j];
            // An inherited socket is shared by every loop (one duplicate each): another socket
            // could not join its port with SO_REUSEPORT (its owner, systemd, is another user).
            auto listener = inherited[j] >= 0 ? dup_listener(inherited[j]) : make_listener(address);
            if (!listener) {
                return std::unexpected(listener.error());
            }
            if (i == 0) {
                const std::uint16_t port = bound_port(listener->get());
                s->ports.push_back(port);
                set_port(address, port);
            }
            auto a = std::make_unique<acceptor>();
            a->ctx = ctx.get();
            a->listener = std::move(*listener);
            ctx->acceptors.push_back(std::move(a));
        }
        ctx->resuming.ctx = ctx.get();
        ctx->guard = std::make_unique<accept_guard>(accept_guard_options{
            .name = "loop " + std::to_string(i),
            .pause = config.accept_pause,
            .log_every = config.accept_log_every,
            .farewell = refusal_bytes("the server is out of file descriptors"),
            .advice = "raise the descriptor limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower "
                      "--max-connections (docs/daemon.md, \"Limits\")"});
        s->loops.push_back(std::move(ctx));
    }
    s->port = s->ports.front();

    // The admin listener (docs/daemon.md, "Control plane"): one socket, on loop 0.
    if (config.admin != admin_kind::off) {
        result<unique_fd> listener = fail(errc::invalid_argument, "no admin listener");
        if (config.admin == admin_kind::tcp) {
            auto address = parse_address(config.admin_address.host, config.admin_address.port);
            if (!address) {
                return std::unexpected(address.error());
            }
            listener = make_listener(*address, false);
            if (listener) {
                s->admin_port = bound_port(listener->get());
            }
        } else {
            listener = make_unix_listener(config.admin_socket, s->admin_socket_inode);
            if (listener) {
                s->admin_socket = config.admin_socket;
            }
        }
        if (!listener) {
            return std::unexpected(listener.error());
        }
        auto a = std::make_unique<acceptor>();
        a->ctx = s->loops.front().get();
        a->listener = std::move(*listener);
        a->admin = true;
        s->loops.front()->acceptors.push_back(std::move(a));
    }

    // Uploads a crash interrupted left their temp files: they never became anyone's file. Those
    // another live daemon sharing the root is writing are locked, and stay. Only now that every
    // listener is bound: a start-up that fails (a port in use) leaves the root as it found it.
    if (config.writable) {
        std::uint64_t kept = 0;
        auto removed = ingest::remove_leftovers(config.root, &kept);
        if (!removed) {
            return std::unexpected(removed.error());
        }
        s->leftovers_removed = *removed;
        if (*removed > 0) {
            spdlog::info("removed {} temp files of interrupted uploads", *removed);
        }
        if (kept > 0) {
            spdlog::info("left {} temp files of uploads another process is writing (locked)", kept);
        }
    }
    // Each loop creates its ring on its own thread (a single-issuer ring belongs to its creator).
    const buffer::arena* arena = s->arena_used() ? &s->cache->buffers().arena() : nullptr;
    for (auto& ctx : s->loops) {
        std::promise<result<void>> ready;
        auto started = ready.get_future();
        loop_context* c = ctx.get();
        c->thread = std::thread([c, arena, &ready] {
            auto loop = io::event_loop::create({.entries = 1024, .arena = arena, .index = c->index});
            if (!loop) {
                ready.set_value(std::unexpected(loop.error()));
                return;
            }
            c->loop = std::move(*loop);
            c->doorbell->attach(c->loop.get());
            if (arena != nullptr && !c->loop->has_fixed_buffers() && c->index == 0) {
                spdlog::warn("loop {}: the arena is not registered ({}): SEND_ZC sends without fixed buffers",
                          c->index, c->loop->fixed_buffers_error());
            }
            ready.set_value({});
            c->loop->run();
        });
        auto ok = started.get();
        if (!ok) {
            c->thread.join();
            return std::unexpected(ok.error());
        }
    }
    // Accepting starts once every loop exists: a request on one loop (the admin listener's
    // /metrics, say) reads every loop's state, and a loop still being made would race with it.
    // The post is the loop's way in from this thread; the listeners queue connections meanwhile.
    for (auto& ctx : s->loops) {
        loop_context* c = ctx.get();
        c->loop->post([c] {
            if (!c->owner->draining.load(std::memory_order_relaxed)) {
                c->arm_accept();
            }
        });
    }
    spdlog::info("datapumpd serving {} on {}:{} ({} loops, provider {}, send path {}, capacity {} B/s, paced "
                 "streams on {} rt VPs up to density {})",
                 config.root, config.listen_host, s->port, config.loops, config.provider, to_string(s->path),
                 config.capacity, s->rt_system->vps(), config.rt_max_density);
    for (std::size_t i = 0; i < config.more_listen.size(); ++i) {
        spdlog::info("also serving on {}:{}", config.more_listen[i].host, s->ports[i + 1]);
    }
    for (std::size_t j = 0; j < inherited.size(); ++j) {
        if (inherited[j] >= 0) {
            spdlog::info("{}:{} is an inherited socket (socket activation)", wanted[j].host, s->ports[j]);
        }
    }
    switch (config.admin) {
        case admin_kind::off:
            spdlog::info("admin listener off: no /metrics, status page or control API");
            break;
        case admin_kind::tcp:
            spdlog::info("admin (/metrics, /_datapump/) on {}:{}{}", config.admin_address.host, s->admin_port,
                         config.admin_token.empty() ? "" : " (bearer token required)");
            break;
        case admin_kind::unix_socket:
            spdlog::info("admin (/metrics, /_datapump/) on unix:{}{}", s->admin_socket,
                         config.admin_token.empty() ? "" : " (bearer token required)");
            break;
    }
    return std::unique_ptr<server>(new server(std::move(s)));
}

std::size_t server::shutdown(std::chrono::milliseconds grace) {
    state& s = *state_;
    if (s.stopped) {
        return 0;
    }
    s.draining.store(true, std::memory_order_relaxed);
    for (auto& ctx : s.loops) {
        loop_context* c = ctx.get();
        c->loop->post([c] { c->drain(); });
    }
    const auto deadline = io::clock::now() + grace;
    while (s.connections.load(std::memory_order_relaxed) > 0 && io::clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const std::size_t cut = s.active_streams.load(std::memory_order_relaxed);
    for (auto& ctx : s.loops) {
        loop_context* c = ctx.get();
        c->loop->post([c] { c->cut_all(); });
    }
    // Cut connections finish when the kernel has completed their last operations.
    const auto hard = io::clock::now() + std::chrono::seconds(5);
    while (s.connections.load(std::memory_order_relaxed) > 0 && io::clock::now() < hard) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (auto& ctx : s.loops) {
        ctx->doorbell->close();  // controls held outside (the library's) no longer reach the loop
        ctx->loop->stop();
    }
    for (auto& ctx : s.loops) {
        ctx->thread.join();
    }
    // Uploads already received are published (the publisher runs what was posted, then stops).
    s.publishing.reset();
    // A fallback read still queued for a stream (even one long closed) posts its loans to the
    // stream's loop when it completes: wait for them before the loops are freed.
    s.cache->quiesce();
    if (s.connections.load(std::memory_order_relaxed) > 0) {
        spdlog::warn("{} connections had operations in flight at exit", s.connections.load(std::memory_order_relaxed));
    }
    s.loops.clear();
    for (const auto& root : s.roots) {
        if (root->files) {
            root->files->clear();
        }
    }
    // The admin socket's file goes with it, unless another process has bound that path since.
    struct stat st {};
    if (!s.admin_socket.empty() && ::lstat(s.admin_socket.c_str(), &st) == 0 && st.st_ino == s.admin_socket_inode) {
        ::unlink(s.admin_socket.c_str());
    }
    s.stopped = true;
    if (cut > 0) {
        spdlog::info("shutdown: {} streams cut after the grace period", cut);
    }
    return cut;
}

result<void> server::reconfigure(const server_config& next) {
    state& s = *state_;
    if (s.stopped || s.draining.load(std::memory_order_relaxed)) {
        return {};
    }
    auto fresh = std::make_shared<server_config>(keep_fixed(next, s.config));
    // A new root first: the only step that can fail, and nothing is applied when it does.
    std::shared_ptr<const served_root> root;
    if (fresh->root != s.served_path) {
        auto made = std::make_shared<served_root>();
        auto instance = s.registry.instantiate(
            s.config.provider, {.root = fresh->root, .cache = s.loans_path() ? s.cache.get() : nullptr, .flags = 0});
        if (!instance) {
            return std::unexpected(instance.error());
        }
        made->owned = std::move(*instance);
        made->owned_fd = unique_fd(::open(fresh->root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!made->owned_fd) {
            return fail_errno("open root");
        }
        made->path = fresh->root;
        made->instance = &made->owned;
        made->fd = made->owned_fd.get();
        made->files = make_open_cache(s.config, s.loans_path(), made->owned, made->fd);
        root = std::move(made);
        s.served_path = fresh->root;
        // The old root's kept files close as the streams still using them end.
        for (const auto& old : s.roots) {
            if (old->files) {
                old->files->clear();
            }
        }
        std::erase_if(s.roots, [](const std::shared_ptr<const served_root>& r) {
            return r.use_count() == 1 && r->instance->open_files() == 0;
        });
        s.roots.push_back(root);
    }
    // Shared by every loop; the last request that holds it frees it (on its loop).
    std::shared_ptr<const server_config> settings = std::move(fresh);
    std::shared_ptr<const answer_rules> rules = make_answer_rules(*settings);
    s.admission.set_capacity(settings->capacity);
    s.clients.set_config({.max_connections = settings->max_connections_per_ip,
                          .max_streams = settings->max_streams_per_ip,
                          .max_rate = settings->max_rate_per_ip});
    // Each loop swaps its pointer between two completions: a request is never half old, half new.
    auto applied = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(s.loops.size()));
    for (auto& ctx : s.loops) {
        loop_context* c = ctx.get();
        c->loop->post([c, settings, rules, root, applied] {
            c->settings = settings;
            c->rules = rules;
            if (root) {
                c->root = root;
            }
            applied->count_down();
        });
    }
    applied->wait();
    return {};
}

stream_view view_of(const stream::control& c) {
    stream_view v;
    v.id = c.id;
    v.client = c.client;
    v.file = c.file;
    v.start = c.start;
    v.end = c.end;
    v.position = c.position.load(std::memory_order_relaxed);
    v.bytes_sent = c.bytes_sent.load(std::memory_order_relaxed);
    v.rate = c.rate;
    v.burst = c.burst;
    v.state = stream::to_string(c.state.load(std::memory_order_relaxed));
    v.speed = c.speed.load(std::memory_order_relaxed);
    v.loop = c.loop;
    v.send_path = c.send_path;
    return v;
}

std::vector<stream_view> stream_views(const server::state& s) {
    std::vector<stream_view> out;
    for (const auto& c : s.table.list()) {
        out.push_back(view_of(*c));
    }
    return out;
}

server_view make_view(const server::state& s, const served_root& root) {
    server_view v;
    v.version = "0.1.0";
    v.uptime_ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(io::clock::now() - s.started).count());
    v.provider = s.config.provider;
    v.send_path = to_string(s.path);
    v.capacity = s.admission.capacity();
    v.reserved = s.admission.reserved();
    v.connections = s.connections.load(std::memory_order_relaxed);
    v.active_streams = s.active_streams.load(std::memory_order_relaxed);
    v.admission_refusals = s.admission.refusals();
    for (const auto& ctx : s.loops) {
        if (ctx->guard) {
            v.accept_errors += ctx->guard->failures();
            v.accept_shed += ctx->guard->shed();
        }
    }
    v.per_ip_refused_connections = s.clients.refusals(stream::client_refusal::kind::connections);
    v.per_ip_refused_streams = s.clients.refusals(stream::client_refusal::kind::streams);
    v.per_ip_refused_rate = s.clients.refusals(stream::client_refusal::kind::rate);
    // logs
    v.request_duration = s.request_duration.view();
    v.time_to_first_byte = s.first_byte.view();
    v.process = read_process_view();
    if (s.pacing) {
        v.rt.connections = s.pacing->connections();
        v.rt.refusals = s.pacing->refusals();
        v.rt.deadline_misses = s.pacing->deadline_misses();
        v.rt.overruns = s.pacing->overruns();
        v.rt.max_density = s.rt_system->config().max_density;
        for (unsigned i = 0; i < s.rt_system->vps(); ++i) {
            const rt::vp_info info = s.rt_system->vp(i);
            v.rt.vps.push_back(rt_vp_view{.index = info.index,
                                          .connections = info.connections,
                                          .density = info.density,
                                          .priority = std::string(rt::to_string(info.priority))});
        }
    }
    for (std::size_t code = 100; code < s.by_status.size(); ++code) {
        const std::uint64_t n = s.by_status[code].load(std::memory_order_relaxed);
        if (n != 0) {
            v.requests_by_status.emplace_back(static_cast<int>(code), n);
        }
    }
    v.bytes_sent = s.bytes_sent.load(std::memory_order_relaxed);
    for (const auto& ctx : s.loops) {
        loop_view l;
        l.index = ctx->index;
        l.connections = ctx->connections.load(std::memory_order_relaxed);
        l.streams = ctx->stream_count.load(std::memory_order_relaxed);
        if (ctx->loop) {
            l.busy_ns = ctx->loop->stats().busy_ns.load(std::memory_order_relaxed);
            l.wakeups = ctx->loop->stats().wakeups.load(std::memory_order_relaxed);
        }
        v.loops.push_back(l);
    }
    auto& cache = *s.cache;
    const auto snap = cache.counters().snapshot();
    v.cache.buffers = cache.buffers().arena().count();
    v.cache.buffer_size = cache.block_size();
    v.cache.huge_page_bytes = s.arena_huge_bytes;
    v.cache.hits = snap.hits;
    v.cache.misses = snap.misses;
    v.cache.collisions = snap.collisions;
    v.cache.fallbacks = snap.fallbacks;
    v.cache.evictions = snap.evictions;
    v.cache.disk_reads = snap.disk_reads;
    v.cache.disk_bytes = snap.disk_read_bytes;
    v.cache.loans_out = snap.loans_out;
    v.cache.prefetch_posted = snap.prefetch_posted;
    v.cache.prefetch_dropped = snap.prefetch_dropped;
    if (root.files) {
        const auto o = root.files->counters();
        v.cache.open_files = o.files;
        v.cache.open_hits = o.hits;
        v.cache.open_misses = o.misses;
        v.cache.open_forgotten = o.forgotten;
        v.cache.open_evicted = o.evicted;
        v.cache.open_unwatched = o.unwatched;
    }
    v.sends.sendfile_bytes = s.sends.sendfile_bytes.load(std::memory_order_relaxed);
    v.sends.splice_bytes = s.sends.splice_bytes.load(std::memory_order_relaxed);
    v.sends.send_zc_bytes = s.sends.send_zc_bytes.load(std::memory_order_relaxed);
    v.sends.send_zc_sends = s.sends.send_zc_sends.load(std::memory_order_relaxed);
    v.sends.send_zc_copied = s.sends.send_zc_copied.load(std::memory_order_relaxed);
    v.sends.readahead_advice = s.sends.readahead_advice.load(std::memory_order_relaxed);
    v.sends.send_bytes = s.sends.send_bytes.load(std::memory_order_relaxed);
    const auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    v.ingest.received = load(s.ingest.received);
    v.ingest.copied = load(s.ingest.copied);
    v.ingest.written = load(s.ingest.written);
    v.ingest.writes = load(s.ingest.writes);
    v.ingest.rmw_reads = load(s.ingest.rmw_reads);
    v.ingest.zero_filled = load(s.ingest.zero_filled);
    v.ingest.uploads_started = load(s.uploads_started);
    v.ingest.uploads_completed = load(s.uploads_completed);
    v.ingest.uploads_failed = load(s.uploads_failed);
    v.ingest.uploads_in_progress = s.uploads.size();
    v.ingest.leftovers_removed = s.leftovers_removed;
    if (s.publishing) {
        const ingest::publish_stats published = s.publishing->stats();
        v.ingest.publish_batches = published.batches;
        v.ingest.publish_syncs = published.syncs;
    }
    v.send_timeouts = load(s.limits.send_timeouts);
    v.pause_timeouts = load(s.limits.pause_timeouts);
    v.stall_releases = load(s.limits.stall_releases);
    return v;
}

server_view server::view() const { return make_view(*state_, *state_->roots.back()); }
std::vector<stream_view> server::streams() const { return stream_views(*state_); }

}  // namespace datapump::http
