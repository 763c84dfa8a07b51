#include "remote.hpp"

#include "pool.hpp"
#include "system_state.hpp"
#include "wire.hpp"

#include "datapump/base/internal/log.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace datapump::rt::detail {

namespace {

constexpr std::string_view proc_prefix = "proc@";
constexpr std::string_view tcp_prefix = "tcp@";

template <class T>
std::span<const std::byte> bytes_of(const T& value) {
    return std::as_bytes(std::span<const T, 1>(&value, 1));
}

template <class T>
std::optional<T> read_record(std::span<const std::byte> input) {
    if (input.size() < sizeof(T)) {
        return std::nullopt;
    }
    T value{};
    std::memcpy(&value, input.data(), sizeof(T));  // the peer may still change the shared bytes
    return value;
}

std::int64_t to_ns(time_point t) { return t.time_since_epoch().count(); }
time_point from_ns(std::int64_t ns) { return time_point(std::chrono::nanoseconds(ns)); }

}  // namespace

std::optional<remote_name> parse_remote(std::string_view name) {
    bool tcp = name.starts_with(tcp_prefix);
    if (!tcp && !name.starts_with(proc_prefix)) {
        return std::nullopt;
    }
    std::string_view rest = name.substr(tcp ? tcp_prefix.size() : proc_prefix.size());
    auto slash = rest.rfind('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size()) {
        return std::nullopt;
    }
    std::string_view where = rest.substr(0, slash);
    if (tcp && (where.find(':') == std::string_view::npos || where.back() == ':')) {
        return std::nullopt;  // host:port
    }
    return remote_name{tcp, std::string(where), std::string(rest.substr(slash + 1))};
}

std::string join_names(const std::vector<std::string>& names) {
    std::string joined;
    for (const std::string& n : names) {
        joined += (joined.empty() ? "" : "\n") + n;
    }
    return joined;
}

bool is_remote(std::string_view name) { return name.starts_with(proc_prefix) || name.starts_with(tcp_prefix); }

void resume_from_link(system_state& st, const std::weak_ptr<connection_state>& c, const job& j, bool failed,
                      const char* peer) {
    std::shared_ptr<connection_state> conn = c.lock();
    if (!conn) {
        return;
    }
    chunk_done done{};
    done.j = j;
    done.moved = failed ? 0 : j.length;
    done.end = failed;
    done.failed = failed;
    if (failed) {
        done.failure = error{errc::peer_gone, 0, peer};
    }
    unsigned vp = conn->vp;
    st.vps[vp]->resume(std::move(conn), done);
}

remote_state::remote_state(tcp_key k) : key(std::move(k)) {}
remote_state::~remote_state() = default;

bool remote_state::is_remote(std::string_view name) const { return detail::is_remote(name); }

std::expected<connection, refusal> remote_state::connect(system& s, std::span<const std::string_view> chain,
                                                         std::size_t first_remote, const qos& q) {
    return remote::connect(s, chain, first_remote, q);
}

void remote_state::stop_serving(system& s) { remote::stop_serving(s); }
void remote_state::close_peers(system& s) { remote::close_peers(s); }

remote_state& remote_of(system_state& st) { return static_cast<remote_state&>(*st.remote); }
const remote_state& remote_of(const system_state& st) { return static_cast<const remote_state&>(*st.remote); }

// ---------------------------------------------------------------------------------------------
// Connecting side (A).

class ipc_link;

// One channel to a serving process, shared by the links to it. The client's notification thread
// routes note_returned to the link it names.
struct peer_channel {
    std::unique_ptr<ipc::client> client;
    std::mutex mutex;  // guards links
    std::map<std::uint64_t, std::weak_ptr<ipc_link>> links;

    void on_notify(std::uint32_t code, std::span<const std::byte> payload);
    std::shared_ptr<ipc_link> find(std::uint64_t id) {
        std::lock_guard lock(mutex);
        auto it = links.find(id);
        return it == links.end() ? nullptr : it->second.lock();
    }
};

// The out stage of a chain whose tail is in another process.
class ipc_link final : public outbound_link, public std::enable_shared_from_this<ipc_link> {
public:
    ipc_link(system_state& st, std::shared_ptr<peer_channel> peer, std::uint64_t id)
        : st_(st), peer_(std::move(peer)), id_(id) {}

    void attach(const std::shared_ptr<connection_state>& c) { conn_ = c; }
    [[nodiscard]] std::uint64_t id() const { return id_; }

    // VP thread.
    void send(const job& j) override {
        {
            std::lock_guard lock(mutex_);
            if (failed_ || closed_) {
                resume(j, true);
                return;
            }
            inflight_[j.slot.index] = j;
        }
        wire::buffer_note note{.link = id_,
                               .slot = j.slot.index,
                               .reserved = 0,
                               .length = j.length,
                               .sequence = j.sequence,
                               .ideal_ns = to_ns(j.ideal),
                               .deadline_ns = to_ns(j.deadline)};
        auto* context = new send_context{shared_from_this()};
        ipc::callbacks cb{};
        cb.completion = &on_completion;
        cb.context = context;
        auto sent = peer_->client->execute(wire::op_buffer, bytes_of(note), {}, cb, {});
        if (!sent) {
            delete context;  // no callback follows a refused execute
            fail_all();
        }
    }

    // VP thread: every buffer came back after the source's end.
    void end() override { fire(wire::op_end); }

    // Disconnect (the VP no longer runs the connection).
    void close() override {
        {
            std::lock_guard lock(mutex_);
            if (closed_) {
                return;
            }
            closed_ = true;
            inflight_.clear();
        }
        {
            std::lock_guard lock(peer_->mutex);
            peer_->links.erase(id_);
        }
        fire(wire::op_disconnect);
    }

    // The channel's notification thread: the peer is done with a buffer.
    void returned(unsigned slot) {
        job j;
        {
            std::lock_guard lock(mutex_);
            auto it = inflight_.find(slot);
            if (it == inflight_.end()) {
                spdlog::warn("rt: link {}: the peer returned buffer {} it did not have", id_, slot);
                return;
            }
            j = it->second;
            inflight_.erase(it);
        }
        resume(j, false);
    }

    // The peer is gone or refused a buffer: everything in flight fails, and so does every later
    // send (the connection ends once its buffers are back).
    void fail_all() {
        std::map<unsigned, job> jobs;
        {
            std::lock_guard lock(mutex_);
            if (!failed_) {
                spdlog::warn("rt: link {}: the serving process is gone or refused a buffer; the connection ends",
                             id_);
            }
            failed_ = true;
            jobs.swap(inflight_);
        }
        for (auto& [slot, j] : jobs) {
            resume(j, true);
        }
    }

private:
    struct send_context {
        std::shared_ptr<ipc_link> link;
    };

    static void on_completion(void* context, ipc::outcome& result) {
        std::unique_ptr<send_context> ctx(static_cast<send_context*>(context));
        if (!result || result->status != 0) {
            ctx->link->fail_all();
        }
    }

    static void on_fire_completion(void* context, ipc::outcome& /*result*/) {
        delete static_cast<send_context*>(context);
    }

    void fire(std::uint32_t op) {
        wire::link_note note{.link = id_};
        auto* context = new send_context{shared_from_this()};
        ipc::callbacks cb{};
        cb.completion = &on_fire_completion;
        cb.context = context;
        if (!peer_->client->execute(op, bytes_of(note), {}, cb, {})) {
            delete context;
        }
    }

    void resume(const job& j, bool failed) { resume_from_link(st_, conn_, j, failed, "rt: the serving process"); }

    system_state& st_;
    std::shared_ptr<peer_channel> peer_;
    std::uint64_t id_;
    std::weak_ptr<connection_state> conn_;
    std::mutex mutex_;
    std::map<unsigned, job> inflight_;  // guarded by mutex_: buffers at the peer, by slot
    bool failed_ = false;               // guarded by mutex_
    bool closed_ = false;               // guarded by mutex_
};

void peer_channel::on_notify(std::uint32_t code, std::span<const std::byte> payload) {
    if (code != wire::note_returned || payload.size() != sizeof(wire::returned_note)) {
        spdlog::warn("rt: ignored a notification (code {:#x}, {} bytes) from a serving process", code,
                     payload.size());
        return;
    }
    auto note = read_record<wire::returned_note>(payload);
    if (!note) {
        return;
    }
    if (auto link = find(note->link)) {
        link->returned(note->slot);
    }
}

namespace {

result<std::shared_ptr<peer_channel>> open_peer(remote_state& rs, const std::string& endpoint) {
    std::lock_guard lock(rs.mutex);
    auto it = rs.peers.find(endpoint);
    if (it != rs.peers.end() && !it->second->client->peer_gone()) {
        return it->second;
    }
    auto peer = std::make_shared<peer_channel>();
    ipc::client_options options;
    peer_channel* raw = peer.get();  // the channel owns the client: the callback never outlives it
    options.on_notify = [raw](std::uint32_t code, std::span<const std::byte> payload) {
        raw->on_notify(code, payload);
    };
    auto client = ipc::client::init(endpoint, options);
    if (!client) {
        return std::unexpected(client.error());
    }
    peer->client = std::move(*client);
    rs.peers[endpoint] = peer;
    return peer;
}

}  // namespace

std::expected<connection, refusal> remote::connect(system& s, std::span<const std::string_view> chain,
                                                   std::size_t first_remote, const qos& q) {
    system_state& st = *s.state_;
    auto no = [](errc code, std::string why) { return std::unexpected(refusal{code, std::move(why)}); };
    if (first_remote == 0) {
        return no(errc::unsupported, "a chain must start in this process (its source is local)");
    }
    std::string endpoint;
    std::vector<std::string> names;
    std::optional<remote_name> first;
    for (std::size_t i = first_remote; i < chain.size(); ++i) {
        auto name = parse_remote(chain[i]);
        if (!name) {
            return no(is_remote(chain[i]) ? errc::invalid_argument : errc::unsupported,
                      is_remote(chain[i])
                          ? fmt::format("'{}' is not proc@<endpoint>/<port> nor tcp@<host>:<port>/<port>", chain[i])
                          : "the ports after a remote one must be remote too (a chain leaves this process once)");
        }
        if (first && (name->endpoint != first->endpoint || name->tcp != first->tcp)) {
            return no(errc::unsupported, "a chain's remote ports must all be in one process");
        }
        if (!first) {
            first = name;
        }
        endpoint = name->endpoint;
        names.push_back(name->port);
    }
    if (first->tcp) {
        return connect_tcp(s, chain, first_remote, *first, names, q);
    }
    std::string joined = join_names(names);
    if (joined.size() > wire::max_names) {
        return no(errc::invalid_argument, "the remote port names are too long");
    }
    auto peer = open_peer(remote_of(st), endpoint);
    if (!peer) {
        return no(peer.error().code == errc::not_found ? errc::not_found : errc::peer_gone,
                  fmt::format("cannot reach the process serving '{}': {}", endpoint, describe(peer.error())));
    }

    auto prepared = s.claim_with_pool(chain.subspan(0, first_remote), q);
    if (!prepared) {
        return std::unexpected(std::move(prepared.error()));
    }
    std::shared_ptr<connection_state> c = std::move(*prepared);
    c->stages.push_back(nullptr);  // the out stage: 1 us of the VP's time to hand the buffer on
    duration budget = s.budgets(*c, c->buffers->calibration_buffer());

    // B admits its part first: its refusal is this connect's.
    std::vector<std::byte> request(sizeof(wire::connect_request) + joined.size());
    wire::connect_request head{.magic = wire::magic,
                               .version = wire::version,
                               .rate = q.rate,
                               .delay_ns = q.delay.count(),
                               .jitter_ns = q.jitter.count(),
                               .buffer_size = c->buffers->buffer_size(),
                               .slot_size = c->buffers->slot_size(),
                               .count = c->buffers->count(),
                               .on_late = static_cast<std::uint32_t>(q.on_late),
                               .names_len = static_cast<std::uint32_t>(joined.size())};
    std::memcpy(request.data(), &head, sizeof head);
    std::memcpy(request.data() + sizeof head, joined.data(), joined.size());
    std::vector<std::byte> answer(wire::max_reason);
    int memfd = c->buffers->memfd();
    ipc::exec_flags flags{};
    flags.fds = std::span<const int>(&memfd, 1);
    auto reply = (*peer)->client->execute(wire::op_connect, request, answer, {}, flags);
    if (!reply || reply->status != 0) {
        s.release_ports(*c);
        if (!reply) {
            return no(errc::peer_gone, fmt::format("the process serving '{}' did not answer: {}", endpoint,
                                                   describe(reply.error())));
        }
        std::string why(reinterpret_cast<const char*>(answer.data()),
                        std::min<std::size_t>(reply->output_len, answer.size()));
        return no(reply->status == wire::refused ? errc::full : errc::protocol_error,
                  fmt::format("the process serving '{}' refused: {}", endpoint, why));
    }
    auto id = read_record<wire::connect_reply>(std::span<const std::byte>(answer.data(), reply->output_len));
    if (!id) {
        s.release_ports(*c);
        return no(errc::protocol_error, "the serving process answered connect with garbage");
    }
    auto link = std::make_shared<ipc_link>(st, *peer, id->link);
    link->attach(c);
    {
        std::lock_guard lock((*peer)->mutex);
        (*peer)->links[id->link] = link;
    }
    c->out = link;
    if (auto refused = s.admit(c, q, budget, nullptr)) {
        link->close();
        s.release_ports(*c);
        return std::unexpected(std::move(*refused));
    }
    return connection(&s, std::move(c));
}

// ---------------------------------------------------------------------------------------------
// Serving side (B).

namespace {

// Notifications to one client; detached when the client goes (held buffers may be given back
// later, by whichever thread drops the last handle).
struct notifier {
    std::mutex mutex;
    ipc::connection* conn = nullptr;  // guarded by mutex

    void returned(std::uint64_t link, unsigned slot) {
        wire::returned_note note{.link = link, .slot = slot, .reserved = 0};
        std::lock_guard lock(mutex);
        if (conn != nullptr) {
            // full: the client is not reading its socket; its buffer then stays out until it
            // disconnects (its own problem, counted as a failure on its side).
            (void)conn->notify(wire::note_returned, bytes_of(note));
        }
    }
    void detach() {
        std::lock_guard lock(mutex);
        conn = nullptr;
    }
};

struct served_client {
    std::shared_ptr<notifier> note = std::make_shared<notifier>();
    std::mutex mutex;  // guards links
    std::map<std::uint64_t, std::shared_ptr<connection_state>> links;

    std::shared_ptr<connection_state> find(std::uint64_t id) {
        std::lock_guard lock(mutex);
        auto it = links.find(id);
        return it == links.end() ? nullptr : it->second;
    }
};

ipc::exec_result answer_text(std::span<std::byte> output, std::int32_t status, std::string_view text) {
    std::size_t n = std::min(text.size(), output.size());
    std::memcpy(output.data(), text.data(), n);
    return ipc::exec_result{.status = status, .output_len = static_cast<std::uint32_t>(n)};
}

}  // namespace

namespace {

struct serve_handlers {
    system* s;

    ipc::exec_result connect(ipc::connection& conn, served_client& sc, std::span<const std::byte> input,
                             std::span<std::byte> output) {
        system_state& st = *&remote::state(*s);
        std::vector<unique_fd> fds = conn.take_fds();
        auto head = read_record<wire::connect_request>(input);
        if (!head || head->magic != wire::magic || head->version != wire::version ||
            head->names_len > wire::max_names || input.size() != sizeof(wire::connect_request) + head->names_len ||
            fds.size() != 1) {
            return answer_text(output, ipc::bad_command, "malformed connect");
        }
        std::string joined(reinterpret_cast<const char*>(input.data()) + sizeof(wire::connect_request),
                           head->names_len);
        std::vector<std::string> names;
        std::size_t from = 0;
        while (from <= joined.size()) {
            auto to = joined.find('\n', from);
            if (to == std::string::npos) {
                to = joined.size();
            }
            names.push_back(joined.substr(from, to - from));
            from = to + 1;
        }
        std::vector<std::string_view> views(names.begin(), names.end());
        qos q{.rate = head->rate,
              .jitter = duration(head->jitter_ns),
              .delay = duration(head->delay_ns),
              .buffer_size = head->buffer_size,
              .buffer_count = head->count,
              .on_late = head->on_late == static_cast<std::uint32_t>(late_policy::drop) ? late_policy::drop
                                                                                       : late_policy::deliver_late};
        if (auto bad = check_qos(q, false)) {
            return answer_text(output, wire::refused, bad->reason);
        }
        auto c = std::make_shared<connection_state>();
        c->fed = true;
        c->stages.push_back(nullptr);  // the peer
        if (auto refused = remote::claim(*s, *c, views)) {
            return answer_text(output, wire::refused, refused->reason);
        }
        auto link_id = std::make_shared<std::atomic<std::uint64_t>>(0);
        auto adopted = pool::adopt(fds[0].get(), head->buffer_size, head->slot_size, head->count,
                                   st.config.lock_memory,
                                   [note = sc.note, link_id](unsigned slot) {
                                       note->returned(link_id->load(std::memory_order_acquire), slot);
                                   });
        if (!adopted) {
            remote::release(*s, *c);
            return answer_text(output, wire::refused, describe(adopted.error()));
        }
        c->buffers = std::move(*adopted);
        std::vector<std::byte> scratch(c->buffers->buffer_size());  // calibration never touches A's buffers
        duration budget = remote::budgets(*s, *c, scratch);
        if (auto refused = remote::admit(*s, c, q, budget)) {
            remote::release(*s, *c);
            return answer_text(output, wire::refused, refused->reason);
        }
        // release: the give-back callback's acquire load sees it (no buffer arrives before the
        // reply, so it is always set first).
        link_id->store(c->id, std::memory_order_release);
        {
            std::lock_guard lock(sc.mutex);
            sc.links[c->id] = c;
        }
        wire::connect_reply r{.link = c->id};
        std::memcpy(output.data(), &r, sizeof r);
        spdlog::debug("rt: serving link {} for client {}", c->id, conn.id());
        return ipc::exec_result{.status = 0, .output_len = sizeof r};
    }

    ipc::exec_result buffer(served_client& sc, std::span<const std::byte> input) {
        system_state& st = *&remote::state(*s);
        auto note = read_record<wire::buffer_note>(input);
        if (!note || input.size() != sizeof(wire::buffer_note)) {
            return ipc::exec_result{.status = ipc::bad_command, .output_len = 0};
        }
        auto c = sc.find(note->link);
        if (!c) {
            return ipc::exec_result{.status = wire::no_link, .output_len = 0};
        }
        if (note->length > c->buffers->buffer_size()) {
            return ipc::exec_result{.status = wire::bad_buffer, .output_len = 0};
        }
        auto slot = c->buffers->take(note->slot);
        if (!slot) {
            return ipc::exec_result{.status = wire::bad_buffer, .output_len = 0};
        }
        job j{.c = c.get(),
              .stage = 0,
              .slot = *slot,
              .sequence = note->sequence,
              .ideal = from_ns(note->ideal_ns),
              .deadline = from_ns(note->deadline_ns),
              .length = note->length};
        std::shared_ptr<pool> buffers = c->buffers;
        unsigned index = slot->index;
        unsigned vp = c->vp;
        st.vps[vp]->arrive(std::move(c), j, [buffers, index] { buffers->finish(index); });
        return ipc::exec_result{.status = 0, .output_len = 0};
    }

    ipc::exec_result end(served_client& sc, std::span<const std::byte> input, bool disconnect) {
        system_state& st = *&remote::state(*s);
        auto note = read_record<wire::link_note>(input);
        if (!note || input.size() != sizeof(wire::link_note)) {
            return ipc::exec_result{.status = ipc::bad_command, .output_len = 0};
        }
        std::shared_ptr<connection_state> c;
        if (disconnect) {
            std::lock_guard lock(sc.mutex);
            auto it = sc.links.find(note->link);
            if (it != sc.links.end()) {
                c = std::move(it->second);
                sc.links.erase(it);
            }
        } else {
            c = sc.find(note->link);
        }
        if (!c) {
            return ipc::exec_result{.status = wire::no_link, .output_len = 0};
        }
        if (disconnect) {
            remote::disconnect(*s, *c);
        } else {
            unsigned vp = c->vp;
            st.vps[vp]->end_of_stream(std::move(c));
        }
        return ipc::exec_result{.status = 0, .output_len = 0};
    }
};

}  // namespace

result<void> remote::serve(system& s, std::string_view endpoint) {
    system_state& st = *s.state_;
    remote_state& rs = remote_of(st);
    {
        std::lock_guard lock(st.mutex);
        if (rs.server) {
            return fail(errc::busy, "rt: serve: this system already serves an endpoint");
        }
    }
    auto runtime = ipc::server_runtime::init(ipc::runtime_options{.workers = 1});
    if (!runtime) {
        return std::unexpected(runtime.error());
    }
    auto h = std::make_shared<serve_handlers>(serve_handlers{&s});
    ipc::server_handlers handlers;
    handlers.open = [](ipc::connection& conn) -> result<void> {
        auto* sc = new served_client();
        sc->note->conn = &conn;
        conn.user_context = sc;
        return {};
    };
    handlers.exec = [h](ipc::connection& conn, std::uint32_t code, std::span<const std::byte> input,
                        std::span<std::byte> output) -> ipc::exec_result {
        auto& sc = *static_cast<served_client*>(conn.user_context);
        switch (code) {
        case wire::op_connect: return h->connect(conn, sc, input, output);
        case wire::op_buffer: return h->buffer(sc, input);
        case wire::op_end: return h->end(sc, input, false);
        case wire::op_disconnect: return h->end(sc, input, true);
        default: return ipc::exec_result{.status = ipc::bad_command, .output_len = 0};
        }
    };
    handlers.close = [h](ipc::connection& conn) {
        std::unique_ptr<served_client> sc(static_cast<served_client*>(conn.user_context));
        conn.user_context = nullptr;
        sc->note->detach();
        std::map<std::uint64_t, std::shared_ptr<connection_state>> links;
        {
            std::lock_guard lock(sc->mutex);
            links.swap(sc->links);
        }
        for (auto& [id, c] : links) {
            remote::disconnect(*h->s, *c);
        }
    };
    auto server = (*runtime)->create(endpoint, std::move(handlers), ipc::server_options{});
    if (!server) {
        return std::unexpected(server.error());
    }
    std::lock_guard lock(st.mutex);
    rs.runtime = std::move(*runtime);
    rs.server = std::move(*server);
    rs.endpoint = std::string(endpoint);
    spdlog::info("rt: serving ports on {}", endpoint);
    return {};
}

system_state& remote::state(system& s) { return *s.state_; }
std::optional<refusal> remote::claim(system& s, connection_state& c, std::span<const std::string_view> names) {
    return s.claim_ports(c, names);
}
void remote::release(system& s, connection_state& c) { s.release_ports(c); }
duration remote::budgets(system& s, connection_state& c, std::span<std::byte> scratch) { return s.budgets(c, scratch); }
std::optional<refusal> remote::admit(system& s, const std::shared_ptr<connection_state>& c, const qos& q,
                                     duration budget) {
    return s.admit(c, q, budget, nullptr);
}
void remote::disconnect(system& s, connection_state& c) { s.disconnect(&c); }
std::optional<refusal> remote::pool_room_of(system& s, const qos& q) { return s.pool_room(q); }

void remote::stop_serving(system& s) {
    remote_state& rs = remote_of(*s.state_);
    stop_tcp(s);
    if (rs.server) {
        rs.server->destroy();
        rs.server.reset();
    }
    rs.runtime.reset();
}

void remote::close_peers(system& s) {
    remote_state& rs = remote_of(*s.state_);
    std::map<std::string, std::shared_ptr<peer_channel>, std::less<>> peers;
    {
        std::lock_guard lock(rs.mutex);
        peers.swap(rs.peers);
    }
    for (auto& [endpoint, peer] : peers) {
        peer->client->deinit();
    }
}

}  // namespace datapump::rt::detail
