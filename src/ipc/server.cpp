// The server side of the command channel: listener, per-connection socket and channel threads,
// validation of everything the client wrote, the in-process registry. See docs/ipc.md.
#include "datapump/ipc/server.hpp"

#include "datapump/base/accept_guard.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/ipc/internal/direct.hpp"
#include "datapump/ipc/internal/peer.hpp"
#include "datapump/ipc/internal/segment.hpp"
#include "datapump/ipc/internal/wire.hpp"
#include "worker_pool.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace datapump::ipc {

using internal::msg;
using internal::wire_header;

namespace {

std::atomic<std::uint64_t> next_connection_id{1};

// How long a reply may wait for room in a client's socket before the client is cut off.
constexpr std::chrono::milliseconds reply_patience{100};

// The exec running on this thread, so that attach_fd knows where the descriptors go and
// take_fds where the command's came from.
struct exec_scope {
    const connection* owner;
    std::vector<unique_fd> fds;       // attached by the handler: go with the reply
    std::vector<unique_fd> incoming;  // sent by the client: the handler takes them, or they close
    exec_scope* outer;  // an exec of another connection this one runs inside (nested calls)
};
thread_local exec_scope* current_exec = nullptr;

bool inside_exec_of(const connection* c) {
    for (const exec_scope* s = current_exec; s != nullptr; s = s->outer) {
        if (s->owner == c) {
            return true;
        }
    }
    return false;
}

struct scoped_exec {
    exec_scope scope;
    explicit scoped_exec(const connection* c, std::vector<unique_fd> incoming = {})
        : scope{c, {}, std::move(incoming), current_exec} {
        current_exec = &scope;
    }
    scoped_exec(const scoped_exec&) = delete;
    scoped_exec& operator=(const scoped_exec&) = delete;
    ~scoped_exec() { current_exec = scope.outer; }
};

result<void> attach_to_current(const connection* c, unique_fd fd) {
    if (current_exec == nullptr || current_exec->owner != c) {
        return fail(errc::invalid_argument, "ipc attach_fd: not inside this connection's exec");
    }
    if (current_exec->fds.size() >= internal::max_fds) {
        return fail(errc::invalid_argument, "ipc attach_fd: more than 16 descriptors");
    }
    current_exec->fds.push_back(std::move(fd));
    return {};
}

std::vector<unique_fd> take_from_current(const connection* c) {
    if (current_exec == nullptr || current_exec->owner != c) {
        return {};
    }
    return std::exchange(current_exec->incoming, {});
}

using internal::read_field;
using internal::write_field;

}  // namespace

// ------------------------------------------------------------------------------------------------
// runtime

class server_runtime::impl {
public:
    explicit impl(std::uint32_t workers) : pool(workers) {}
    internal::worker_pool pool;
};

server_runtime::server_runtime(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
server_runtime::~server_runtime() = default;

result<std::unique_ptr<server_runtime>> server_runtime::init(runtime_options options) {
    if (options.workers == 0) {
        return fail(errc::invalid_argument, "ipc server runtime: zero workers");
    }
    return std::unique_ptr<server_runtime>(new server_runtime(std::make_unique<impl>(options.workers)));
}

// ------------------------------------------------------------------------------------------------
// one client connection (socket, optional segment)

struct server_counters {
    std::atomic<std::uint64_t> clients_accepted{0};
    std::atomic<std::uint64_t> clients_closed{0};
    std::atomic<std::uint64_t> slot_commands{0};
    std::atomic<std::uint64_t> backup_commands{0};
    std::atomic<std::uint64_t> bad_commands{0};
    std::atomic<std::uint64_t> protocol_disconnects{0};
    std::atomic<std::uint64_t> shm_refused{0};
    std::atomic<std::uint32_t> clients_now{0};
    std::atomic<std::uint64_t> peers_refused{0};
};

struct server_shared {
    std::string endpoint;
    server_handlers handlers;
    server_options options;
    internal::worker_pool* pool;
    server_counters counters;
    int reap_fd = -1;  // eventfd: a connection finished (the listener joins it)
};

class socket_connection final : public connection, public std::enable_shared_from_this<socket_connection> {
public:
    socket_connection(server_shared& shared, unique_fd sock, pid_t pid)
        : shared_(shared), sock_(std::move(sock)), id_(next_connection_id.fetch_add(1)), pid_(pid) {}

    ~socket_connection() override {
        // The server joins the socket thread before it lets go of a connection; when a worker's
        // reference is the last one, the thread has been joined already. Only if the socket
        // thread itself drops the last reference (server destroyed meanwhile) is it still
        // joinable here, on itself: detach then.
        if (socket_thread_.joinable()) {
            socket_thread_.detach();
        }
    }

    std::uint64_t id() const override { return id_; }
    pid_t peer_pid() const override { return pid_; }
    result<void> attach_fd(unique_fd fd) override { return attach_to_current(this, std::move(fd)); }
    std::vector<unique_fd> take_fds() override { return take_from_current(this); }
    result<void> notify(std::uint32_t code, std::span<const std::byte> payload) override {
        wire_header h{};
        h.type = static_cast<std::uint32_t>(msg::notify);
        h.code = code;
        // Never blocks: a client that stops reading must not stall the notifying thread.
        return internal::send_message(sock_.get(), h, payload, {}, true);
    }
    void disconnect() override { ::shutdown(sock_.get(), SHUT_RDWR); }

    void start() {
        auto self = shared_from_this();
        socket_thread_ = std::thread([self] { self->socket_main(); });
    }
    void join() {
        if (socket_thread_.joinable()) {
            socket_thread_.join();
        }
    }
    [[nodiscard]] bool finished() const { return finished_.load(std::memory_order_acquire); }

private:
    void violation(const char* what) {
        if (!violated_.exchange(true)) {
            shared_.counters.protocol_disconnects.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("ipc server {}: client {} (pid {}) broke the protocol ({}); disconnecting", shared_.endpoint,
                      id_, pid_, what);
        }
        disconnect();
    }

    // --- set-up -----------------------------------------------------------------------------

    // Maps a segment offered in hello or shm_offer; false (and the reason logged) when refused.
    bool accept_segment(const internal::received& m) {
        const auto& o = shared_.options;
        const std::uint32_t slots = m.header.code;
        const std::uint32_t in = m.header.a;
        const std::uint32_t out = m.header.b;
        const char* refused = nullptr;
        if (m.fds.size() != 1) {
            refused = "no segment descriptor";
        } else if (slots == 0 || slots > o.max_slots || in > o.max_slot_capacity || out > o.max_slot_capacity) {
            refused = "geometry beyond the server's limits";
        } else if (internal::make_geometry(slots, in, out).total_size > (std::uint64_t{1} << 31)) {
            refused = "segment larger than 2 GiB";
        }
        if (refused == nullptr) {
            auto seg = internal::segment::attach(unique_fd(::dup(m.fds[0].get())), slots, in, out);
            if (seg) {
                segment_ = std::move(*seg);
                return true;
            }
            refused = seg.error().what;
        }
        shared_.counters.shm_refused.fetch_add(1, std::memory_order_relaxed);
        spdlog::info("ipc server {}: client {} segment refused ({}); backup mode", shared_.endpoint, id_, refused);
        return false;
    }

    result<void> send_welcome(bool shm) {
        wire_header h{};
        h.type = static_cast<std::uint32_t>(msg::welcome);
        h.status = shm ? 0 : -EPROTO;
        h.a = shared_.options.max_message;
        return internal::send_message(sock_.get(), h, {});
    }

    void start_channel() {
        const auto& g = segment_.geo();
        cs_ = internal::ring_consumer(segment_.cs_ring(), segment_.cs_entries(), g.ring_capacity);
        sc_ = internal::ring_producer(segment_.sc_ring(), segment_.sc_entries(), g.ring_capacity);
        in_flight_ = std::make_unique<std::atomic<std::uint8_t>[]>(g.slot_count);
        channel_thread_ = std::thread([this] { channel_main(); });
    }

    // --- the socket thread: set-up, backup commands, notifications, death --------------------

    void socket_main() {
        internal::received m;
        bool opened = false;
        auto hello = internal::receive_message(sock_.get(), 0, m);
        if (hello && m.header.type == static_cast<std::uint32_t>(msg::hello)) {
            const bool shm = !m.fds.empty() && accept_segment(m);
            auto opened_ok = shared_.handlers.open ? shared_.handlers.open(*this) : result<void>{};
            if (opened_ok && send_welcome(shm)) {
                opened = true;
                if (shm) {
                    start_channel();
                }
                command_loop(m);
            } else if (!opened_ok) {
                spdlog::info("ipc server {}: open refused client {}: {}", shared_.endpoint, id_,
                          describe(opened_ok.error()));
            }
        } else if (hello) {
            m.fds.clear();
            violation("first message is not hello");
        }
        teardown(opened);
    }

    void command_loop(internal::received& m) {
        const std::size_t max_payload = std::size_t{shared_.options.max_message} * 2;
        for (;;) {
            auto got = internal::receive_message(sock_.get(), max_payload, m);
            if (!got) {
                if (got.error().code == errc::protocol_error) {
                    violation(got.error().what);
                }
                return;
            }
            switch (static_cast<msg>(m.header.type)) {
                case msg::command: backup_command(m); break;
                case msg::notify:
                    if (!m.fds.empty()) {
                        m.fds.clear();  // closed before the client can see the disconnect
                        violation("descriptors on a notification");
                        return;
                    }
                    if (shared_.handlers.notify) {
                        shared_.handlers.notify(*this, m.header.code, m.payload);
                    }
                    break;
                case msg::shm_offer: {
                    if (segment_.valid()) {
                        m.fds.clear();
                        violation("second segment");
                        return;
                    }
                    const bool shm = accept_segment(m);
                    if (!send_welcome(shm)) {
                        return;
                    }
                    if (shm) {
                        start_channel();
                    }
                    break;
                }
                default:
                    m.fds.clear();
                    violation("unexpected message type");
                    return;
            }
        }
    }

    void backup_command(internal::received& m) {
        const std::uint32_t input_len = m.header.a;
        const std::uint32_t output_cap = m.header.b;
        const bool prepared_output = (m.header.flags & internal::flag_prepared_output) != 0;
        const std::size_t expect = std::size_t{input_len} + (prepared_output ? output_cap : 0);
        if (m.payload.size() != expect || output_cap > shared_.options.max_message ||
            input_len > shared_.options.max_message) {
            shared_.counters.bad_commands.fetch_add(1, std::memory_order_relaxed);
            m.fds.clear();  // closed before the reply
            send_reply(m.header.token, bad_command, 0, internal::reply_bad, {}, {});
            return;
        }
        shared_.counters.backup_commands.fetch_add(1, std::memory_order_relaxed);
        // Shared, not moved in: the pool's jobs are std::functions, which must be copyable.
        auto incoming = std::make_shared<std::vector<unique_fd>>(std::move(m.fds));
        m.fds.clear();
        auto job = [self = shared_from_this(), token = m.header.token, code = m.header.code, input_len, output_cap,
                    prepared_output, payload = std::move(m.payload), incoming]() mutable {
            std::vector<std::byte> output(output_cap);
            if (prepared_output && output_cap > 0) {
                std::memcpy(output.data(), payload.data() + input_len, output_cap);
            }
            scoped_exec scope(self.get(), std::move(*incoming));
            const exec_result r = self->run_exec(code, std::span(payload).first(input_len), output);
            scope.scope.incoming.clear();  // not taken: closed before the client hears back
            self->send_reply(token, r.status, r.output_len, 0, std::span(output).first(r.output_len), scope.scope.fds);
        };
        m.payload = {};
        if ((m.header.flags & internal::flag_worker) == 0) {
            job();
            return;
        }
        // Bounded: a client cannot queue more than max_backup_in_flight commands on the pool.
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return backup_on_workers_ < shared_.options.max_backup_in_flight; });
        ++backup_on_workers_;
        ++executing_;
        lock.unlock();
        shared_.pool->post([self = shared_from_this(), job = std::move(job)]() mutable {
            job();
            self->job_done(true);
        });
    }

    void send_reply(std::uint32_t token, std::int32_t status, std::uint32_t output_len, std::uint32_t flags,
                    std::span<const std::byte> output, const std::vector<unique_fd>& fds) {
        wire_header h{};
        h.type = static_cast<std::uint32_t>(msg::reply);
        h.token = token;
        h.status = status;
        h.a = output_len;
        h.flags = flags;
        std::vector<int> raw;
        raw.reserve(fds.size());
        for (const auto& fd : fds) {
            raw.push_back(fd.get());
        }
        // Never block a worker (or the channel thread) on one client for long: a client that does
        // not read its replies for reply_patience is cut off, so it cannot hold up the others.
        auto sent = internal::send_message(sock_.get(), h, output, raw, true);
        const auto give_up = std::chrono::steady_clock::now() + reply_patience;
        while (!sent && sent.error().code == errc::full && std::chrono::steady_clock::now() < give_up) {
            pollfd p{sock_.get(), POLLOUT, 0};
            (void)::poll(&p, 1, 10);
            sent = internal::send_message(sock_.get(), h, output, raw, true);
        }
        if (!sent && sent.error().code == errc::full) {
            violation("not reading its replies");
            return;
        }
        if (!sent && sent.error().code != errc::peer_gone) {
            spdlog::warn("ipc server {}: reply to client {} failed: {}", shared_.endpoint, id_, describe(sent.error()));
        }
    }

    exec_result run_exec(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output) {
        exec_result r = shared_.handlers.exec(*this, code, input, output);
        // A handler claiming more output than it was given is a bug in the handler; never let it
        // make us send or expose bytes past the area.
        r.output_len = std::min<std::uint32_t>(r.output_len, static_cast<std::uint32_t>(output.size()));
        return r;
    }

    void job_done(bool backup) {
        {
            std::lock_guard lock(mu_);
            --executing_;
            if (backup) {
                --backup_on_workers_;
            }
        }
        cv_.notify_all();
    }

    // --- the channel thread: slot commands ----------------------------------------------------

    void channel_main() {
        const wait_policy policy = shared_.options.wait;
        for (;;) {
            const internal::pop_result p = cs_.pop();
            if (p.status == internal::ring_status::empty) {
                ring_completions();  // before we wait: the client may be sleeping on them
                if (stop_.load(std::memory_order_acquire)) {
                    return;
                }
                cs_.wait(policy, stop_);
                continue;
            }
            if (p.status == internal::ring_status::corrupt) {
                violation("client-to-server ring indices corrupt");
                return;
            }
            const std::uint32_t slot = segment_.slot_of(p.value);
            if (slot == internal::segment::no_slot) {
                violation("ring entry is not a slot offset");
                return;
            }
            // Acquire pairs with complete_slot's release clear. A stale 1 can only make us cut off
            // a client that resubmitted a slot before seeing its completion, which a correct
            // client never does.
            if (in_flight_[slot].exchange(1, std::memory_order_acquire) != 0) {
                violation("slot submitted twice");
                return;
            }
            slot_command(slot);
            if (unrung_ >= 32) {
                ring_completions();
            }
        }
    }

    // Wakes the client for the completions pushed quietly (channel thread only).
    void ring_completions() {
        if (unrung_ == 0) {
            return;
        }
        unrung_ = 0;
        std::lock_guard lock(sc_mu_);
        sc_.ring();
    }

    void slot_command(std::uint32_t slot) {
        internal::slot_header* h = segment_.slot(slot);
        const std::uint32_t code = read_field(h->code);
        const std::uint32_t flags = read_field(h->flags);
        const std::uint32_t input_len = read_field(h->input_len);
        const std::uint32_t output_cap = read_field(h->output_cap);
        shared_.counters.slot_commands.fetch_add(1, std::memory_order_relaxed);
        if (input_len > segment_.geo().input_capacity || output_cap > segment_.geo().output_capacity) {
            shared_.counters.bad_commands.fetch_add(1, std::memory_order_relaxed);
            complete_slot(slot, flags, {bad_command, 0}, {}, true);
            return;
        }
        if ((flags & internal::flag_worker) == 0) {
            scoped_exec scope(this);
            const exec_result r = run_exec(code, segment_.input_area(slot).first(input_len),
                                           segment_.output_area(slot).first(output_cap));
            complete_slot(slot, flags, r, scope.scope.fds, true);
            return;
        }
        {
            std::lock_guard lock(mu_);
            ++executing_;
        }
        shared_.pool->post([self = shared_from_this(), slot, flags, code, input_len, output_cap] {
            {
                scoped_exec scope(self.get());
                const exec_result r = self->run_exec(code, self->segment_.input_area(slot).first(input_len),
                                                     self->segment_.output_area(slot).first(output_cap));
                self->complete_slot(slot, flags, r, scope.scope.fds, false);
            }
            self->job_done(false);
        });
    }

    // channel_thread: pushed quietly, rung in a batch by channel_main (ring_completions).
    void complete_slot(std::uint32_t slot, std::uint32_t flags, exec_result r, const std::vector<unique_fd>& fds,
                       bool channel_thread) {
        internal::slot_header* h = segment_.slot(slot);
        write_field(h->status, r.status);
        write_field(h->output_len, r.output_len);
        // SYNC POINT: release pairs with the channel thread's acquire exchange when the client
        // submits this slot again; the client resubmits only after seeing the completion below.
        in_flight_[slot].store(0, std::memory_order_release);
        if (!fds.empty()) {
            // Descriptors travel only on the socket; the output stays in the slot.
            send_reply(slot, r.status, r.output_len, internal::reply_for_slot, {}, fds);
            return;
        }
        if ((flags & internal::flag_sync) != 0) {
            // SYNC POINT: the store (seq_cst, so also release) pairs with the caller's acquire load
            // of done: status, output_len and the output bytes are visible once done is. The done
            // store and the waiting load are seq_cst, the Dekker pair of the caller's seq_cst
            // waiting store and done re-read (client.cpp wait_done): one of us sees the other.
            h->done.store(1, std::memory_order_seq_cst);
            if (h->waiting.load(std::memory_order_seq_cst) != 0) {
                internal::futex_wake_shared(h->done, INT_MAX);
            }
            return;
        }
        internal::ring_status pushed;
        {
            std::lock_guard lock(sc_mu_);
            pushed = sc_.push(segment_.offset_of(slot), !channel_thread);
        }
        if (channel_thread) {
            ++unrung_;
        }
        if (pushed != internal::ring_status::ok) {
            // A correct client always has room: at most one completion per slot is pending.
            violation(pushed == internal::ring_status::full ? "server-to-client ring full"
                                                            : "server-to-client ring indices corrupt");
        }
    }

    // --- teardown ------------------------------------------------------------------------------

    void teardown(bool opened) {
        if (channel_thread_.joinable()) {
            stop_.store(true, std::memory_order_release);
            internal::ring_consumer::wake(segment_.cs_ring());
            channel_thread_.join();
        }
        {
            // Drain: every exec of this connection has returned before close.
            std::unique_lock lock(mu_);
            cv_.wait(lock, [this] { return executing_ == 0; });
        }
        if (opened && shared_.handlers.close) {
            shared_.handlers.close(*this);
        }
        segment_ = {};
        ::shutdown(sock_.get(), SHUT_RDWR);
        shared_.counters.clients_closed.fetch_add(1, std::memory_order_relaxed);
        shared_.counters.clients_now.fetch_sub(1, std::memory_order_relaxed);
        finished_.store(true, std::memory_order_release);
        // Tell the listener to join us and drop the socket now, not at the next accept.
        const std::uint64_t one = 1;
        (void)!::write(shared_.reap_fd, &one, sizeof(one));
    }

    server_shared& shared_;
    unique_fd sock_;
    std::uint64_t id_;
    pid_t pid_;
    std::thread socket_thread_;
    std::thread channel_thread_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> violated_{false};
    std::atomic<bool> finished_{false};

    internal::segment segment_;                   // set before the channel thread starts
    internal::ring_consumer cs_;                  // channel thread only
    std::mutex sc_mu_;
    internal::ring_producer sc_;                  // guarded by sc_mu_
    std::unique_ptr<std::atomic<std::uint8_t>[]> in_flight_;
    std::uint32_t unrung_ = 0;                    // channel thread only: quiet completions

    std::mutex mu_;
    std::condition_variable cv_;
    std::uint32_t executing_ = 0;                 // guarded by mu_: execs on workers
    std::uint32_t backup_on_workers_ = 0;         // guarded by mu_
};

// ------------------------------------------------------------------------------------------------
// in-process connections

class direct_connection final : public connection, public internal::direct_link {
public:
    direct_connection(server_shared& shared, internal::notify_fn on_notify)
        : shared_(shared), id_(next_connection_id.fetch_add(1)), on_notify_(std::move(on_notify)) {}

    std::uint64_t id() const override { return id_; }
    pid_t peer_pid() const override { return ::getpid(); }
    result<void> attach_fd(unique_fd fd) override { return attach_to_current(this, std::move(fd)); }
    std::vector<unique_fd> take_fds() override { return take_from_current(this); }
    result<void> notify(std::uint32_t code, std::span<const std::byte> payload) override {
        if (gone()) {
            return fail(errc::peer_gone, "ipc notify: the client is gone");
        }
        if (on_notify_) {
            on_notify_(code, payload);
        }
        return {};
    }
    void disconnect() override { end(); }

    result<reply> exec(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                       std::vector<unique_fd> fds) override {
        {
            std::lock_guard lock(mu_);
            if (closed_) {
                return fail(errc::peer_gone, "ipc execute: the in-process server is gone");
            }
            ++executing_;
        }
        reply out;
        {
            scoped_exec scope(static_cast<connection*>(this), std::move(fds));
            exec_result r = shared_.handlers.exec(*this, code, input, output);
            scope.scope.incoming.clear();  // not taken: closed now, as on the socket path
            out.status = r.status;
            out.output_len = std::min<std::uint32_t>(r.output_len, static_cast<std::uint32_t>(output.size()));
            out.fds = std::move(scope.scope.fds);
        }
        bool close_now = false;
        {
            std::lock_guard lock(mu_);
            --executing_;
            // A disconnect() from inside an exec leaves the close to the last exec to return.
            close_now = closed_ && close_pending_ && executing_ == 0 && !close_done_;
            close_done_ = close_done_ || close_now;
        }
        cv_.notify_all();
        if (close_now) {
            run_close();
        }
        return out;
    }
    result<void> notify_server(std::uint32_t code, std::span<const std::byte> payload) override {
        if (gone()) {
            return fail(errc::peer_gone, "ipc notify: the in-process server is gone");
        }
        if (shared_.handlers.notify) {
            shared_.handlers.notify(*this, code, payload);
        }
        return {};
    }
    [[nodiscard]] bool gone() const override {
        std::lock_guard lock(mu_);
        return closed_;
    }
    void close() override { end(); }

    // Closes once every exec has returned; by the client (close), the server (destroy) or a
    // handler (disconnect). Called inside one of this connection's execs, it only marks the
    // connection closed: the close handler runs when that exec (the last one) returns.
    void end() {
        std::unique_lock lock(mu_);
        closed_ = true;
        if (inside_exec_of(this)) {
            close_pending_ = true;
            return;
        }
        cv_.wait(lock, [this] { return executing_ == 0; });
        if (close_done_) {
            return;
        }
        close_done_ = true;
        lock.unlock();
        run_close();
    }

private:
    void run_close() {
        if (shared_.handlers.close) {
            shared_.handlers.close(*this);
        }
        shared_.counters.clients_closed.fetch_add(1, std::memory_order_relaxed);
        shared_.counters.clients_now.fetch_sub(1, std::memory_order_relaxed);
    }

    server_shared& shared_;
    std::uint64_t id_;
    internal::notify_fn on_notify_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool closed_ = false;           // guarded by mu_
    bool close_pending_ = false;    // guarded by mu_: disconnect() from inside an exec
    bool close_done_ = false;       // guarded by mu_: the close handler ran (or is running)
    std::uint32_t executing_ = 0;   // guarded by mu_
};

// ------------------------------------------------------------------------------------------------
// the server

class server::impl {
public:
    impl(std::string endpoint, server_handlers handlers, server_options options, internal::worker_pool* pool)
        : shared_{std::move(endpoint), std::move(handlers), std::move(options), pool, {}, -1} {}

    ~impl() { destroy(); }

    result<void> listen() {
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

    // A path endpoint's file exists. It is removed only when it is a socket nobody listens on
    // (connect refused): a live server's socket is busy, and anything else (a regular file, a
    // socket whose state cannot be told) is never deleted.
    result<void> remove_stale_socket() {
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

    void destroy() {
        std::call_once(destroyed_, [this] { do_destroy(); });
    }

    server_stats stats() const {
        const auto& c = shared_.counters;
        server_stats s;
        s.clients_accepted = c.clients_accepted.load(std::memory_order_relaxed);
        s.clients_closed = c.clients_closed.load(std::memory_order_relaxed);
        s.slot_commands = c.slot_commands.load(std::memory_order_relaxed);
        s.backup_commands = c.backup_commands.load(std::memory_order_relaxed);
        s.bad_commands = c.bad_commands.load(std::memory_order_relaxed);
        s.protocol_disconnects = c.protocol_disconnects.load(std::memory_order_relaxed);
        s.shm_refused = c.shm_refused.load(std::memory_order_relaxed);
        s.clients_now = c.clients_now.load(std::memory_order_relaxed);
        s.accept_errors = accept_guard_ ? accept_guard_->failures() : 0;
        s.peers_refused = c.peers_refused.load(std::memory_order_relaxed);
        return s;
    }

    const std::string& endpoint() const { return shared_.endpoint; }

    result<std::shared_ptr<internal::direct_link>> open_direct(internal::notify_fn on_notify) {
        std::lock_guard lock(mu_);
        if (stopping_) {
            return std::shared_ptr<internal::direct_link>();
        }
        auto c = std::make_shared<direct_connection>(shared_, std::move(on_notify));
        shared_.counters.clients_accepted.fetch_add(1, std::memory_order_relaxed);
        shared_.counters.clients_now.fetch_add(1, std::memory_order_relaxed);
        if (shared_.handlers.open) {
            auto ok = shared_.handlers.open(*c);
            if (!ok) {
                shared_.counters.clients_now.fetch_sub(1, std::memory_order_relaxed);
                return fail(errc::peer_gone, "ipc init: the in-process server's open refused");
            }
        }
        direct_.push_back(c);
        return std::shared_ptr<internal::direct_link>(c);
    }

private:
    void accept_loop() {
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

    // The poll timeout while accepting is paused (ms, rounded up), or -1 when it is not.
    static int accept_pause_left(std::chrono::steady_clock::time_point until) {
        const auto left = until - std::chrono::steady_clock::now();
        if (left <= std::chrono::steady_clock::duration::zero()) {
            return -1;
        }
        return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }

    // The peer rule (server_options::peers), checked once right after accept: a refused peer gets
    // the refusal welcome and is closed here, before any thread or buffer is spent on it.
    bool admit_peer(unique_fd& sock, const internal::peer_credentials& cred) {
        if (internal::peer_allowed(cred, shared_.options.peers, ::geteuid())) {
            return true;
        }
        shared_.counters.peers_refused.fetch_add(1, std::memory_order_relaxed);
        internal::send_refusal(sock.get());
        refusals_.refused(shared_.endpoint, cred);
        sock.reset();
        return false;
    }

    // Joins connections whose socket thread has finished.
    void reap() {
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

    void do_destroy() {
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

public:
    void unregister();

private:
    server_shared shared_;
    unique_fd listener_;
    unique_fd wake_;
    unique_fd reap_;
    std::string path_;
    bool bound_ = false;
    std::thread listener_thread_;
    std::unique_ptr<accept_guard> accept_guard_;  // the accept loop's back-off and spare descriptor
    internal::refusal_log refusals_;
    std::once_flag destroyed_;
    std::mutex mu_;
    bool stopping_ = false;                                      // guarded by mu_
    std::list<std::shared_ptr<socket_connection>> connections_;  // guarded by mu_
    std::vector<std::shared_ptr<direct_connection>> direct_;     // guarded by mu_
};

// ------------------------------------------------------------------------------------------------
// the registry of this process's endpoints (in-process path)

namespace {

std::mutex registry_mu;
std::map<std::string, server::impl*, std::less<>>& registry() {
    static std::map<std::string, server::impl*, std::less<>> r;
    return r;
}

}  // namespace

void server::impl::unregister() {
    std::lock_guard lock(registry_mu);
    auto it = registry().find(shared_.endpoint);
    if (it != registry().end() && it->second == this) {
        registry().erase(it);
    }
}

result<std::shared_ptr<internal::direct_link>> internal::open_direct(std::string_view endpoint, notify_fn on_notify) {
    std::lock_guard lock(registry_mu);
    auto it = registry().find(endpoint);
    if (it == registry().end()) {
        return std::shared_ptr<direct_link>();
    }
    return it->second->open_direct(std::move(on_notify));
}

result<std::unique_ptr<server>> server_runtime::create(std::string_view endpoint, server_handlers handlers,
                                                       server_options options) {
    if (!handlers.exec) {
        return fail(errc::invalid_argument, "ipc server: an exec handler is required");
    }
    if (options.max_slots == 0 || options.max_message == 0 || options.max_backup_in_flight == 0) {
        return fail(errc::invalid_argument, "ipc server: zero limit");
    }
    if ((options.endpoint_mode & ~mode_t{0777}) != 0) {
        return fail(errc::invalid_argument, "ipc server: endpoint_mode must be permission bits only (at most 0777)");
    }
    auto i = std::make_unique<server::impl>(std::string(endpoint), std::move(handlers), std::move(options),
                                            &impl_->pool);
    if (auto ok = i->listen(); !ok) {
        return std::unexpected(ok.error());
    }
    {
        std::lock_guard lock(registry_mu);
        registry()[std::string(endpoint)] = i.get();
    }
    return std::unique_ptr<server>(new server(std::move(i)));
}

server::server(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
server::~server() { destroy(); }
void server::destroy() { impl_->destroy(); }
server_stats server::stats() const { return impl_->stats(); }
std::string_view server::endpoint() const { return impl_->endpoint(); }

}  // namespace datapump::ipc
