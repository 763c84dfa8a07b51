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
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <future>

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

result<unique_fd> make_listener(const bound_address& a) {
    unique_fd fd(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return fail_errno("socket");
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Every loop listens on the same address: the kernel spreads connections across them.
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.length) != 0) {
        return fail_errno("bind");
    }
    if (::listen(fd.get(), 1024) != 0) {
        return fail_errno("listen");
    }
    return fd;
}

std::string peer_name(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
        return "?";
    }
    char text[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
        return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
    }
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
}

void refuse_connection(int fd) {
    const response_plan plan = error_response(503, "too many connections", true);
    const std::string bytes = plan.head + plan.body;
    // Best effort on a fresh socket, whose buffer is empty: it never blocks (O_NONBLOCK).
    [[maybe_unused]] const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
}

}  // namespace

void acceptor::complete(int result, std::uint32_t flags) {
    if ((flags & IORING_CQE_F_MORE) == 0) {
        ctx->accepting_armed = false;
    }
    server::state& s = *ctx->owner;
    if (result >= 0) {
        const int fd = result;
        if (s.draining.load(std::memory_order_relaxed)) {
            ::close(fd);
        } else if (s.connections.load(std::memory_order_relaxed) >= s.config.max_connections) {
            refuse_connection(fd);
        } else {
            const int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            auto* c = new connection(*ctx, unique_fd(fd), peer_name(fd), ctx->next_conn_id++);
            c->start();
            connection::settle(c);
        }
    } else if (result != -ECANCELED) {
        spdlog::warn("loop {}: accept failed: {}", ctx->index, errno_text(-result));
    }
    if (!ctx->accepting_armed && !s.draining.load(std::memory_order_relaxed)) {
        ctx->arm_accept();
    }
}

void loop_context::arm_accept() {
    accepting_armed = true;
    loop->accept_multishot(listener.get(), &accepting);
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
    loop->cancel(&accepting);
    listener.reset();
    for_each_connection([](connection& c) { c.drain(); });
}

void loop_context::cut_all() {
    for_each_connection([](connection& c) { c.cut(); });
}

server::server(std::unique_ptr<state> s) : state_(std::move(s)) {}

server::~server() { shutdown(std::chrono::milliseconds(0)); }

std::uint16_t server::port() const { return state_->port; }
send_path server::path() const { return state_->path; }
stream::stream_table& server::streams_table() { return state_->table; }

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
    auto cache = cache::file_cache::create(cc);
    if (!cache) {
        return std::unexpected(cache.error());
    }
    s->cache = std::move(*cache);

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
    if (config.writable) {
        // Uploads a crash interrupted left their temp files: they never became anyone's file.
        auto removed = ingest::remove_leftovers(config.root);
        if (!removed) {
            return std::unexpected(removed.error());
        }
        s->leftovers_removed = *removed;
        if (*removed > 0) {
            spdlog::info("removed {} temp files of interrupted uploads", *removed);
        }
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

    auto address = parse_address(config.listen_host, config.listen_port);
    if (!address) {
        return std::unexpected(address.error());
    }
    for (unsigned i = 0; i < config.loops; ++i) {
        auto listener = make_listener(*address);
        if (!listener) {
            return std::unexpected(listener.error());
        }
        if (i == 0) {
            sockaddr_storage bound{};
            socklen_t len = sizeof bound;
            ::getsockname(listener->get(), reinterpret_cast<sockaddr*>(&bound), &len);
            const std::uint16_t port = bound.ss_family == AF_INET
                                           ? ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port)
                                           : ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
            s->port = port;
            // The other loops bind the port the first one got (it matters when asked for port 0).
            if (address->family == AF_INET) {
                reinterpret_cast<sockaddr_in*>(&address->storage)->sin_port = htons(port);
            } else {
                reinterpret_cast<sockaddr_in6*>(&address->storage)->sin6_port = htons(port);
            }
        }
        auto ctx = std::make_unique<loop_context>();
        ctx->owner = s.get();
        ctx->index = i;
        ctx->accepting.ctx = ctx.get();
        ctx->listener = std::move(*listener);
        s->loops.push_back(std::move(ctx));
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
            c->arm_accept();
            ready.set_value({});
            c->loop->run();
        });
        auto ok = started.get();
        if (!ok) {
            c->thread.join();
            return std::unexpected(ok.error());
        }
    }
    spdlog::info("datapumpd serving {} on {}:{} ({} loops, provider {}, send path {}, capacity {} B/s, paced "
                 "streams on {} rt VPs up to density {})",
                 config.root, config.listen_host, s->port, config.loops, config.provider, to_string(s->path),
                 config.capacity, s->rt_system->vps(), config.rt_max_density);
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
    s.stopped = true;
    if (cut > 0) {
        spdlog::info("shutdown: {} streams cut after the grace period", cut);
    }
    return cut;
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

server_view make_view(const server::state& s) {
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
    return v;
}

server_view server::view() const { return make_view(*state_); }
std::vector<stream_view> server::streams() const { return stream_views(*state_); }

}  // namespace datapump::http
