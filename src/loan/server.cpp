// The loan server: a file cache served over the ipc command channel, leases with deadlines, the
// reclaim timer, pins held for stuck clients until their process exits. See loan/server.hpp and
// docs/ipc.md ("Loans across the process boundary").
#include "datapump/loan/server.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/fs/registry.hpp"
#include "protocol.hpp"
#include "put.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace datapump::loan {

namespace {

using clock = std::chrono::steady_clock;
namespace proto = protocol;

enum class lease_state : std::uint8_t {
    live,     // deadline = when the timer reclaims it
    pending,  // RECLAIM sent; deadline = when the client is declared stuck
};

struct lease_entry {
    std::vector<cache::read_loan> loans;  // the pins
    std::uint64_t charge = 0;             // bytes counted against the client's allowance
    clock::time_point deadline{};
    lease_state state = lease_state::live;
};

// One client connection. The ipc layer runs open, then execs (possibly several at once), then
// close once every exec has returned; the timer and the notify handler run alongside.
struct session {
    session(std::uint64_t connection_id, ipc::connection* c, pid_t peer, unique_fd peer_fd)
        : id(connection_id), conn(c), pid(peer), pidfd(std::move(peer_fd)) {}

    const std::uint64_t id;
    std::mutex mu;
    std::condition_variable idle;  // signalled when `users` drops
    // The connection, for the timer's notify and disconnect; null once close has begun.
    ipc::connection* conn;                                                 // guarded by mu
    // Timer threads calling into `conn` without holding mu (a notify may block on the socket,
    // and must not stall the handlers that take mu). close waits for it to drop to zero.
    std::uint32_t users = 0;                                               // guarded by mu
    bool stuck = false;                                                    // guarded by mu
    std::unordered_map<std::uint64_t, std::shared_ptr<fs::file>> files;    // guarded by mu
    std::unordered_map<std::uint64_t, lease_entry> leases;                 // guarded by mu
    // Leases reclaimed (unpinned) that the client has not given back yet: GIVE_BACK answers OK.
    std::unordered_set<std::uint64_t> reclaimed;                           // guarded by mu
    std::uint64_t charged = 0;        // guarded by mu: allowance used, borrows in flight included
    std::uint32_t borrows_in_flight = 0;                                   // guarded by mu
    // Per arena buffer, the epoch (arena::buffer_epoch) of the buffer memfd this client was sent
    // last; 0 = never. A borrow sends the memfd of each buffer whose epoch differs.
    std::vector<std::uint32_t> sent_epoch;                                 // guarded by mu
    const pid_t pid;
    unique_fd pidfd;                  // the client process, opened at connect; may be empty
};

// Pins kept for a disconnected client whose process may still read them.
struct held_pins {
    std::uint64_t connection_id = 0;
    pid_t pid = 0;
    unique_fd pidfd;
    std::vector<lease_entry> leases;
};

unique_fd open_pidfd(pid_t pid) {
    if (pid <= 0) {
        return {};
    }
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    return unique_fd(fd < 0 ? -1 : static_cast<int>(fd));
}

// True when the process behind `h` has exited (or cannot be watched and is gone).
bool process_gone(const held_pins& h) {
    if (h.pidfd) {
        pollfd p{h.pidfd.get(), POLLIN, 0};
        return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    }
    if (h.pid <= 0) {
        return false;  // unknown process: held until the server goes
    }
    return ::kill(h.pid, 0) != 0 && errno == ESRCH;
}

template <class T>
bool read_struct(std::span<const std::byte> input, T& out) {
    if (input.size() != sizeof(T)) {
        return false;
    }
    // The input may live in shared memory the client still writes: copy once, then check the copy.
    std::memcpy(&out, input.data(), sizeof(T));
    return true;
}

template <class T>
std::uint32_t write_struct(std::span<std::byte> output, std::size_t at, const T& value) {
    std::memcpy(output.data() + at, &value, sizeof(T));
    return static_cast<std::uint32_t>(at + sizeof(T));
}

}  // namespace

class server::impl {
public:
    explicit impl(server_config config) : config_(std::move(config)) {}

    ~impl() { shutdown(); }

    result<void> start() {
        const auto& c = config_;
        if (c.endpoint.empty() || c.root.empty()) {
            return fail(errc::invalid_argument, "loan server: endpoint and root are required");
        }
        if (c.lease_time.count() <= 0 || c.reclaim_grace.count() <= 0) {
            return fail(errc::invalid_argument, "loan server: lease_time and reclaim_grace must be positive");
        }
        if (c.cache.buffers.buffer_size == 0 || c.cache.buffers.buffer_size % 4096 != 0 ||
            c.max_loan_bytes < c.cache.buffers.buffer_size) {
            return fail(errc::invalid_argument,
                        "loan server: buffer size must be a multiple of 4096 and max_loan_bytes at least one buffer");
        }
        if (c.max_files_per_client == 0 || c.max_leases_per_client == 0 || c.workers == 0 || c.put_windows == 0 ||
            c.put_idle_timeout.count() <= 0) {
            return fail(errc::invalid_argument, "loan server: zero limit");
        }
        // One memfd per buffer: a client receives only those of the buffers it is lent, and a
        // buffer gets a fresh one before it holds other data (docs/ipc.md, "What a loan client can
        // read"). So the cache needs a descriptor per buffer.
        config_.cache.buffers.memfd_per_buffer = true;
        if (auto fds = ensure_descriptors(c.cache.buffers.buffer_count); !fds) {
            return fds;
        }
        auto made = cache::file_cache::create(c.cache);
        if (!made) {
            return std::unexpected(made.error());
        }
        cache_ = std::move(*made);
        block_size_ = cache_->block_size();
        buffer_count_ = cache_->buffers().arena().count();
        // No fixed buffers: io_uring would pin pages that a buffer's fresh memfd replaces.
        auto inst = registry_.instantiate(c.provider,
                                          {.root = c.root, .cache = cache_.get(), .flags = fs::config_no_fixed_buffers});
        if (!inst) {
            return std::unexpected(inst.error());
        }
        instance_ = std::move(*inst);
        if (c.writable) {
            auto puts = put_service::create(*cache_, instance_,
                                            {.max_bytes = c.max_put_bytes,
                                             .idle_timeout = c.put_idle_timeout,
                                             .windows_in_flight = c.put_windows},
                                            c.endpoint);
            if (!puts) {
                return std::unexpected(puts.error());
            }
            puts_ = std::move(*puts);
        }
        auto rt = ipc::server_runtime::init({c.workers});
        if (!rt) {
            return std::unexpected(rt.error());
        }
        runtime_ = std::move(*rt);
        ipc::server_handlers h;
        h.open = [this](ipc::connection& conn) { return on_open(conn); };
        h.exec = [this](ipc::connection& conn, std::uint32_t code, std::span<const std::byte> in,
                        std::span<std::byte> out) { return on_exec(conn, code, in, out); };
        h.close = [this](ipc::connection& conn) { on_close(conn); };
        h.notify = [this](ipc::connection& conn, std::uint32_t code, std::span<const std::byte> payload) {
            on_note(conn, code, payload);
        };
        auto srv = runtime_->create(c.endpoint, std::move(h), c.ipc);
        if (!srv) {
            return std::unexpected(srv.error());
        }
        ipc_ = std::move(*srv);
        const auto shortest = std::min(c.lease_time, c.reclaim_grace);
        tick_ = std::clamp<std::chrono::milliseconds>(shortest / 4, std::chrono::milliseconds(1),
                                                      std::chrono::milliseconds(100));
        timer_ = std::thread([this] { timer_main(); });
        return {};
    }

    void shutdown() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        timer_cv_.notify_all();
        if (timer_.joinable()) {
            timer_.join();
        }
        if (puts_) {
            puts_->stop();  // the puts in progress fail now: their execs return, so destroy can drain
        }
        if (ipc_) {
            ipc_->destroy();  // every connection's close handler has run when this returns
        }
        ipc_.reset();
        runtime_.reset();
        puts_.reset();  // no put runs any more: stops the put loop
        {
            std::lock_guard lock(mu_);
            for (auto& h : held_) {
                const std::size_t n = h.leases.size();
                h.leases.clear();
                leases_now_.fetch_sub(n, std::memory_order_relaxed);
            }
            held_.clear();
            sessions_.clear();
        }
        instance_ = fs::provider_instance{};
        cache_.reset();
    }

    server_stats stats() const {
        server_stats s;
        s.leases_now = leases_now_.load(std::memory_order_relaxed);
        s.borrows = borrows_.load(std::memory_order_relaxed);
        s.give_backs = give_backs_.load(std::memory_order_relaxed);
        s.reclaims = reclaims_.load(std::memory_order_relaxed);
        s.stuck_clients = stuck_clients_.load(std::memory_order_relaxed);
        s.refused = refused_.load(std::memory_order_relaxed);
        s.clients_now = clients_now_.load(std::memory_order_relaxed);
        s.puts_failed = puts_refused_.load(std::memory_order_relaxed);
        if (puts_) {
            const put_counters& p = puts_->counters();
            s.puts = p.puts.load(std::memory_order_relaxed);
            s.put_bytes = p.put_bytes.load(std::memory_order_relaxed);
            s.puts_failed += p.puts_failed.load(std::memory_order_relaxed);
        }
        {
            std::lock_guard lock(mu_);
            for (const auto& h : held_) {
                s.held_leases += h.leases.size();
            }
        }
        if (cache_) {
            s.pinned_buffers = cache_->buffers().pinned_buffers();
            s.evictions = cache_->counters().snapshot().evictions;
        }
        return s;
    }

    std::string_view endpoint() const { return config_.endpoint; }

private:
    // --- connection life -------------------------------------------------------------------------

    result<void> on_open(ipc::connection& conn) {
        const pid_t pid = conn.peer_pid();
        auto s = std::make_shared<session>(conn.id(), &conn, pid, open_pidfd(pid));
        s->sent_epoch.assign(buffer_count_, 0);
        conn.user_context = s.get();
        {
            std::lock_guard lock(mu_);
            sessions_[conn.id()] = s;
        }
        clients_now_.fetch_add(1, std::memory_order_relaxed);
        return {};
    }

    void on_close(ipc::connection& conn) {
        auto* s = static_cast<session*>(conn.user_context);
        std::shared_ptr<session> keep;
        {
            std::lock_guard lock(mu_);
            auto it = sessions_.find(conn.id());
            if (it == sessions_.end()) {
                return;
            }
            keep = it->second;
        }
        std::unordered_map<std::uint64_t, lease_entry> leases;
        std::unordered_map<std::uint64_t, std::shared_ptr<fs::file>> files;
        bool stuck = false;
        {
            std::unique_lock lock(s->mu);
            s->conn = nullptr;
            s->idle.wait(lock, [s] { return s->users == 0; });
            leases.swap(s->leases);
            files.swap(s->files);
            stuck = s->stuck;
        }
        // Pending leases were never acknowledged: the client may still read them. A client the
        // server cut off (stuck) did not choose to close: all its leases are kept. Everything else
        // the client gave up by closing (its library gives leases back or makes them private first).
        held_pins held;
        held.connection_id = conn.id();
        held.pid = s->pid;
        held.pidfd = std::move(s->pidfd);
        std::uint64_t dropped = 0;
        for (auto& [id, entry] : leases) {
            if (stuck || entry.state == lease_state::pending) {
                held.leases.push_back(std::move(entry));
            } else {
                ++dropped;
            }
        }
        leases.clear();  // unpins the dropped ones
        files.clear();
        leases_now_.fetch_sub(dropped, std::memory_order_relaxed);
        if (!held.leases.empty()) {
            if (process_gone(held)) {
                const std::size_t n = held.leases.size();
                held.leases.clear();
                leases_now_.fetch_sub(n, std::memory_order_relaxed);
            } else {
                spdlog::warn("loan server {}: client {} (pid {}) closed with {} unacknowledged lease(s); "
                             "their pins are held until the process exits",
                             config_.endpoint, held.connection_id, held.pid, held.leases.size());
                std::lock_guard lock(mu_);
                held_.push_back(std::move(held));
            }
        }
        {
            std::lock_guard lock(mu_);
            sessions_.erase(conn.id());
        }
        clients_now_.fetch_sub(1, std::memory_order_relaxed);
    }

    // --- commands --------------------------------------------------------------------------------

    ipc::exec_result on_exec(ipc::connection& conn, std::uint32_t code, std::span<const std::byte> in,
                             std::span<std::byte> out) {
        auto& s = *static_cast<session*>(conn.user_context);
        switch (static_cast<proto::command>(code)) {
            case proto::command::map: return do_map(conn, in, out);
            case proto::command::open: return do_open(s, in, out);
            case proto::command::borrow: return do_borrow(conn, s, in, out);
            case proto::command::give_back: return do_give_back(s, in);
            case proto::command::close: return do_close(s, in);
            case proto::command::put: return do_put(conn, in, out);
        }
        return refuse(errc::invalid_argument);
    }

    ipc::exec_result refuse(errc code) {
        refused_.fetch_add(1, std::memory_order_relaxed);
        return {proto::status_of(code), 0};
    }

    // Raises the soft RLIMIT_NOFILE to the hard one when the cache's memfds (one per buffer) and a
    // margin for clients, files and the rest would not fit under it.
    static result<void> ensure_descriptors(std::size_t buffers) {
        constexpr std::size_t margin = 1024;
        rlimit lim{};
        if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
            return fail_errno("loan server: getrlimit(RLIMIT_NOFILE)");
        }
        const rlim_t want = static_cast<rlim_t>(buffers + margin);
        if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < want) {
            lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min(want, lim.rlim_max);
            (void)::setrlimit(RLIMIT_NOFILE, &lim);
            (void)::getrlimit(RLIMIT_NOFILE, &lim);
        }
        if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < want) {
            spdlog::error("loan server: {} cache buffers need {} descriptors (one memfd each, plus {} spare); "
                          "RLIMIT_NOFILE allows {}: raise it (ulimit -n) or use fewer, larger buffers",
                          buffers, buffers, margin, static_cast<unsigned long long>(lim.rlim_cur));
            return fail(errc::invalid_argument, "loan server: RLIMIT_NOFILE below the cache's buffer count + 1024");
        }
        return {};
    }

    ipc::exec_result do_map(ipc::connection& conn, std::span<const std::byte> in, std::span<std::byte> out) {
        proto::map_request req{};
        if (!read_struct(in, req) || out.size() < sizeof(proto::map_reply) || req.magic != proto::magic) {
            return refuse(errc::invalid_argument);
        }
        if (req.version != proto::version) {
            return refuse(errc::unsupported);
        }
        (void)conn;
        const auto& arena = cache_->buffers().arena();
        proto::map_reply r{};
        r.magic = proto::magic;
        r.version = proto::version;
        r.arena_bytes = arena.bytes();
        r.buffer_size = arena.buffer_size();
        r.buffer_count = arena.count();
        return {0, write_struct(out, 0, r)};
    }

    ipc::exec_result do_open(session& s, std::span<const std::byte> in, std::span<std::byte> out) {
        proto::open_request req{};
        if (in.size() < sizeof(req) || out.size() < sizeof(proto::open_reply)) {
            return refuse(errc::invalid_argument);
        }
        std::memcpy(&req, in.data(), sizeof(req));
        if (req.path_len == 0 || req.path_len > proto::max_path || in.size() != sizeof(req) + req.path_len) {
            return refuse(errc::invalid_argument);
        }
        std::string path(req.path_len, '\0');
        std::memcpy(path.data(), in.data() + sizeof(req), req.path_len);
        if (path.find('\0') != std::string::npos) {
            return refuse(errc::invalid_argument);
        }
        {
            std::lock_guard lock(s.mu);
            if (s.files.size() >= config_.max_files_per_client) {
                return refuse(errc::full);
            }
        }
        auto opened = instance_.open(path);
        if (!opened) {
            return refuse(opened.error().code);
        }
        auto f = std::make_shared<fs::file>(std::move(*opened));
        auto view = f->cached();
        if (!view) {
            return refuse(view.error().code);
        }
        proto::open_reply r{};
        r.size = (*view)->size();
        {
            std::lock_guard lock(s.mu);
            if (s.files.size() >= config_.max_files_per_client) {
                return refuse(errc::full);  // a concurrent open took the last place
            }
            r.handle = next_handle_.fetch_add(1, std::memory_order_relaxed);
            s.files.emplace(r.handle, std::move(f));
        }
        return {0, write_struct(out, 0, r)};
    }

    ipc::exec_result do_borrow(ipc::connection& conn, session& s, std::span<const std::byte> in,
                               std::span<std::byte> out) {
        proto::borrow_request req{};
        if (!read_struct(in, req) || out.size() < sizeof(proto::borrow_reply) + sizeof(proto::extent)) {
            return refuse(errc::invalid_argument);
        }
        const std::uint64_t bs = block_size_;
        const std::uint64_t reply_blocks = (out.size() - sizeof(proto::borrow_reply)) / sizeof(proto::extent);
        std::shared_ptr<fs::file> f;
        std::uint64_t max_blocks = 0;
        {
            std::lock_guard lock(s.mu);
            auto it = s.files.find(req.handle);
            if (it == s.files.end()) {
                return refuse(errc::not_found);
            }
            f = it->second;
            if (s.leases.size() + s.reclaimed.size() + s.borrows_in_flight >= config_.max_leases_per_client) {
                return refuse(errc::full);
            }
            const std::uint64_t allowed = (config_.max_loan_bytes - s.charged) / bs;
            if (allowed == 0) {
                return refuse(errc::full);
            }
            // Never more buffers than the cache has: such a borrow could only fail (no_buffers).
            max_blocks = std::min({allowed, reply_blocks, std::uint64_t{buffer_count_}});
            // Reserve the most this borrow can take, so concurrent borrows cannot overshoot.
            s.charged += max_blocks * bs;
            ++s.borrows_in_flight;
        }
        auto made = borrow_range(*f, req, max_blocks);
        std::lock_guard lock(s.mu);
        s.charged -= max_blocks * bs;
        --s.borrows_in_flight;
        if (!made) {
            return refuse(made.error().code);
        }
        std::vector<cache::read_loan>& loans = *made;
        std::vector<std::uint32_t> fd_of(loans.size(), 0);
        if (auto sent = attach_buffer_fds(conn, s, loans, fd_of); !sent) {
            return refuse(sent.error().code);
        }
        proto::borrow_reply r{};
        r.file_offset = req.offset;
        r.extent_count = static_cast<std::uint32_t>(loans.size());
        std::size_t at = sizeof(r);
        for (std::size_t i = 0; i < loans.size(); ++i) {
            const auto& l = loans[i];
            proto::extent e{};
            e.arena_offset = std::uint64_t{l.buffer_index()} * bs + l.offset_in_buffer();
            e.file_offset = l.file_offset();
            e.length = static_cast<std::uint32_t>(l.size());
            e.fd = fd_of[i];
            at = write_struct(out, at, e);
            r.size += l.size();
        }
        if (!loans.empty()) {
            lease_entry entry;
            entry.charge = loans.size() * bs;
            entry.loans = std::move(loans);
            entry.deadline = clock::now() + config_.lease_time;
            r.lease = next_lease_.fetch_add(1, std::memory_order_relaxed);
            s.charged += entry.charge;
            s.leases.emplace(r.lease, std::move(entry));
            leases_now_.fetch_add(1, std::memory_order_relaxed);
            borrows_.fetch_add(1, std::memory_order_relaxed);
        }
        write_struct(out, 0, r);
        return {0, static_cast<std::uint32_t>(at)};
    }

    // Attaches to the reply, read-only, the memfd of every lent buffer this client has not been
    // sent in its current epoch, and records them (fd_of[i] = descriptor index + 1 for loan i).
    // At most ipc's 16 descriptors per reply: the loans past the one that would need a 17th are
    // dropped (the borrow is shorter; the client loops). Under s.mu, with the loans pinned (so no
    // buffer changes memfd meanwhile).
    result<void> attach_buffer_fds(ipc::connection& conn, session& s, std::vector<cache::read_loan>& loans,
                                   std::vector<std::uint32_t>& fd_of) {
        constexpr std::size_t max_fds = 16;
        auto& arena = cache_->buffers().arena();
        std::vector<unique_fd> fds;
        std::vector<std::pair<std::uint32_t, std::uint32_t>> sent;  // buffer, epoch
        std::size_t keep = loans.size();
        for (std::size_t i = 0; i < loans.size(); ++i) {
            const std::uint32_t b = loans[i].buffer_index();
            const std::uint32_t epoch = arena.buffer_epoch(b);
            if (s.sent_epoch[b] == epoch) {
                continue;
            }
            if (fds.size() == max_fds) {
                keep = i;
                break;
            }
            // A read-only open of the buffer's memfd: the client can map it MAP_PRIVATE (and so
            // copy on write) but never MAP_SHARED | PROT_WRITE, so no client can write the cache.
            const std::string self = "/proc/self/fd/" + std::to_string(arena.buffer_fd(b));
            unique_fd ro(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
            if (!ro) {
                spdlog::warn("loan server {}: reopening buffer {}'s memfd read-only failed: {}", config_.endpoint, b,
                             errno_text(errno));
                return fail_errno("loan borrow: reopening a buffer memfd read-only");
            }
            fds.push_back(std::move(ro));
            sent.emplace_back(b, epoch);
            fd_of[i] = static_cast<std::uint32_t>(fds.size());
        }
        loans.resize(keep);  // unpins the rest
        fd_of.resize(keep);
        for (auto& fd : fds) {
            if (auto attached = conn.attach_fd(std::move(fd)); !attached) {
                return std::unexpected(attached.error());
            }
        }
        for (const auto& [b, epoch] : sent) {
            arena.mark_exported(b);  // its next reuse gives it a fresh memfd
            s.sent_epoch[b] = epoch;
        }
        return {};
    }

    // The loans for `req`, at most `max_blocks` buffers, clamped at the end of the file.
    result<std::vector<cache::read_loan>> borrow_range(fs::file& f, const proto::borrow_request& req,
                                                       std::uint64_t max_blocks) {
        auto view = f.cached();
        if (!view) {
            return std::unexpected(view.error());
        }
        const std::uint64_t size = (*view)->size();
        if (req.offset > size) {
            return fail(errc::out_of_range, "loan borrow: offset past the end of the file");
        }
        const std::uint64_t span_limit = max_blocks * block_size_ - req.offset % block_size_;
        const std::uint64_t length = std::min({req.length, size - req.offset, span_limit});
        if (length == 0) {
            return std::vector<cache::read_loan>{};
        }
        return cache_->loan_read(**view, req.offset, length);
    }

    ipc::exec_result do_give_back(session& s, std::span<const std::byte> in) {
        proto::give_back_request req{};
        if (!read_struct(in, req)) {
            return refuse(errc::invalid_argument);
        }
        lease_entry entry;
        {
            std::lock_guard lock(s.mu);
            auto it = s.leases.find(req.lease);
            if (it != s.leases.end()) {
                entry = std::move(it->second);
                s.leases.erase(it);
                s.charged -= entry.charge;
            } else if (s.reclaimed.erase(req.lease) == 1) {
                give_backs_.fetch_add(1, std::memory_order_relaxed);
                return {0, 0};
            } else {
                return refuse(errc::not_found);
            }
        }
        entry.loans.clear();  // unpins, outside the session lock; counted once done
        leases_now_.fetch_sub(1, std::memory_order_relaxed);
        give_backs_.fetch_add(1, std::memory_order_relaxed);
        return {0, 0};
    }

    ipc::exec_result do_close(session& s, std::span<const std::byte> in) {
        proto::close_request req{};
        if (!read_struct(in, req)) {
            return refuse(errc::invalid_argument);
        }
        std::shared_ptr<fs::file> f;
        {
            std::lock_guard lock(s.mu);
            auto it = s.files.find(req.handle);
            if (it == s.files.end()) {
                return refuse(errc::not_found);
            }
            f = std::move(it->second);
            s.files.erase(it);
        }
        return {0, 0};  // the file closes here; leases of it keep their loans
    }

    // Runs on an ipc worker when the client asked for one (the loan client does), and blocks it
    // until the file is published or the put failed (put.hpp says why).
    ipc::exec_result do_put(ipc::connection& conn, std::span<const std::byte> in, std::span<std::byte> out) {
        // Taken first: whatever is refused below, the descriptors close when this returns.
        std::vector<unique_fd> fds = conn.take_fds();
        proto::put_request req{};
        if (in.size() < sizeof(req) || out.size() < sizeof(proto::put_reply)) {
            return refuse_put(errc::invalid_argument);
        }
        std::memcpy(&req, in.data(), sizeof(req));
        if (req.path_len == 0 || req.path_len > proto::max_path || in.size() != sizeof(req) + req.path_len ||
            (req.flags & ~proto::put_known_flags) != 0 || fds.size() != 1) {
            return refuse_put(errc::invalid_argument);
        }
        std::string path(req.path_len, '\0');
        std::memcpy(path.data(), in.data() + sizeof(req), req.path_len);
        if (path.find('\0') != std::string::npos) {
            return refuse_put(errc::invalid_argument);
        }
        if (!puts_) {
            return refuse_put(errc::unsupported);
        }
        auto done = puts_->run(path, std::move(fds[0]), req.length, (req.flags & proto::put_replace) != 0);
        if (!done) {
            // The client's own mistakes (a bad path, a short stream) are its to report; the
            // server's storage failing is ours.
            const errc code = done.error().code;
            if (code == errc::io_error || code == errc::no_space || code == errc::no_buffers) {
                spdlog::warn("loan server {}: put failed: {}", config_.endpoint, describe(done.error(), path));
            } else {
                spdlog::debug("loan server {}: put refused: {}", config_.endpoint, describe(done.error(), path));
            }
            return refuse(code);
        }
        proto::put_reply r{};
        r.bytes = done->bytes;
        r.created = done->created ? 1 : 0;
        return {0, write_struct(out, 0, r)};
    }

    // A put refused before the put service saw it (the service counts its own).
    ipc::exec_result refuse_put(errc code) {
        puts_refused_.fetch_add(1, std::memory_order_relaxed);
        return refuse(code);
    }

    // --- notes from clients ------------------------------------------------------------------------

    void on_note(ipc::connection& conn, std::uint32_t code, std::span<const std::byte> payload) {
        auto& s = *static_cast<session*>(conn.user_context);
        proto::reclaimed_note note{};
        if (code != static_cast<std::uint32_t>(proto::note::reclaimed) || !read_struct(payload, note)) {
            spdlog::debug("loan server {}: client {} sent an unknown note {}", config_.endpoint, s.id, code);
            return;
        }
        lease_entry entry;
        {
            std::lock_guard lock(s.mu);
            auto it = s.leases.find(note.lease);
            // Only a lease we asked for: an acknowledgement of anything else (a lease given back
            // meanwhile, a stale or forged id) changes nothing.
            if (it == s.leases.end() || it->second.state != lease_state::pending) {
                return;
            }
            entry = std::move(it->second);
            s.leases.erase(it);
            s.charged -= entry.charge;
            s.reclaimed.insert(note.lease);
        }
        entry.loans.clear();  // unpins, outside the session lock; counted once done
        leases_now_.fetch_sub(1, std::memory_order_relaxed);
        reclaims_.fetch_add(1, std::memory_order_relaxed);
    }

    // --- the timer -------------------------------------------------------------------------------------

    void timer_main() {
        std::unique_lock lock(mu_);
        while (!stop_) {
            timer_cv_.wait_for(lock, tick_, [this] { return stop_; });
            if (stop_) {
                return;
            }
            std::vector<std::shared_ptr<session>> sessions;
            sessions.reserve(sessions_.size());
            for (auto& [id, s] : sessions_) {
                sessions.push_back(s);
            }
            std::vector<held_pins> released;
            for (auto it = held_.begin(); it != held_.end();) {
                if (process_gone(*it)) {
                    released.push_back(std::move(*it));
                    it = held_.erase(it);
                } else {
                    ++it;
                }
            }
            lock.unlock();
            for (auto& h : released) {
                spdlog::info("loan server {}: client {} (pid {}) has exited; releasing {} held lease(s)",
                             config_.endpoint, h.connection_id, h.pid, h.leases.size());
                const std::size_t n = h.leases.size();
                h.leases.clear();
                leases_now_.fetch_sub(n, std::memory_order_relaxed);
            }
            released.clear();
            const auto now = clock::now();
            for (auto& s : sessions) {
                scan(*s, now);
            }
            lock.lock();
        }
    }

    // Sends RECLAIM for overdue leases; disconnects a client sitting on one past its grace.
    void scan(session& s, clock::time_point now) {
        std::vector<std::vector<std::byte>> notes;
        bool disconnect = false;
        ipc::connection* conn = nullptr;
        {
            std::lock_guard lock(s.mu);
            if (s.conn == nullptr || s.stuck) {
                return;
            }
            for (auto& [id, e] : s.leases) {
                if (now < e.deadline) {
                    continue;
                }
                if (e.state == lease_state::pending) {
                    disconnect = true;
                    break;
                }
                e.state = lease_state::pending;
                e.deadline = now + config_.reclaim_grace;
                notes.push_back(reclaim_payload(id, e));
            }
            if (disconnect) {
                s.stuck = true;
                notes.clear();
            } else if (notes.empty()) {
                return;
            }
            conn = s.conn;
            ++s.users;
        }
        if (disconnect) {
            stuck_clients_.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("loan server {}: client {} (pid {}) did not acknowledge a reclaim within {} ms; "
                         "disconnecting it",
                         config_.endpoint, s.id, s.pid, config_.reclaim_grace.count());
            conn->disconnect();
        }
        for (const auto& n : notes) {
            if (auto sent = conn->notify(static_cast<std::uint32_t>(proto::note::reclaim), n); !sent) {
                spdlog::debug("loan server {}: reclaim note to client {} failed: {}", config_.endpoint, s.id,
                              describe(sent.error()));
                break;  // the connection is going; close sorts out its leases
            }
        }
        {
            std::lock_guard lock(s.mu);
            --s.users;
        }
        s.idle.notify_all();
    }

    std::vector<std::byte> reclaim_payload(std::uint64_t id, const lease_entry& e) const {
        proto::reclaim_note n{};
        n.lease = id;
        n.extent_count = static_cast<std::uint32_t>(e.loans.size());
        std::vector<std::byte> out(sizeof(n) + e.loans.size() * sizeof(proto::extent));
        std::size_t at = write_struct(std::span(out), 0, n);
        for (const auto& l : e.loans) {
            proto::extent x{};
            x.arena_offset = std::uint64_t{l.buffer_index()} * block_size_ + l.offset_in_buffer();
            x.file_offset = l.file_offset();
            x.length = static_cast<std::uint32_t>(l.size());
            at = write_struct(std::span(out), at, x);
        }
        return out;
    }

    server_config config_;
    std::unique_ptr<cache::file_cache> cache_;
    std::size_t block_size_ = 0;
    std::uint32_t buffer_count_ = 0;
    fs::registry registry_;
    fs::provider_instance instance_;
    std::unique_ptr<put_service> puts_;  // when writable; destroyed after ipc_ (no put runs then)
    std::unique_ptr<ipc::server_runtime> runtime_;
    std::unique_ptr<ipc::server> ipc_;
    std::chrono::milliseconds tick_{100};
    std::thread timer_;

    mutable std::mutex mu_;
    std::condition_variable timer_cv_;
    bool stop_ = false;                                              // guarded by mu_
    std::map<std::uint64_t, std::shared_ptr<session>> sessions_;     // guarded by mu_
    std::vector<held_pins> held_;                                    // guarded by mu_

    // Ids are unique across the server's connections, so one client's ids mean nothing on another.
    // Relaxed: only uniqueness matters.
    std::atomic<std::uint64_t> next_handle_{1};
    std::atomic<std::uint64_t> next_lease_{1};
    // Counters: relaxed, each is an independent statistic.
    std::atomic<std::uint64_t> leases_now_{0};
    std::atomic<std::uint64_t> borrows_{0};
    std::atomic<std::uint64_t> give_backs_{0};
    std::atomic<std::uint64_t> reclaims_{0};
    std::atomic<std::uint64_t> stuck_clients_{0};
    std::atomic<std::uint64_t> refused_{0};
    std::atomic<std::uint64_t> puts_refused_{0};  // puts refused before the put service ran them
    std::atomic<std::uint32_t> clients_now_{0};
};

result<std::unique_ptr<server>> server::create(server_config config) {
    auto i = std::make_unique<impl>(std::move(config));
    if (auto ok = i->start(); !ok) {
        return std::unexpected(ok.error());
    }
    return std::unique_ptr<server>(new server(std::move(i)));
}

server::server(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
server::~server() = default;
server_stats server::stats() const { return impl_->stats(); }
std::string_view server::endpoint() const { return impl_->endpoint(); }

}  // namespace datapump::loan
