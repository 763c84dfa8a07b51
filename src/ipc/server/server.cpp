// The server's public API: server_runtime (the worker pool its servers share; create) and server
// (destroy, stats, endpoint). See docs/ipc.md.
#include "server_impl.hpp"

namespace datapump::ipc {

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
    i->register_endpoint();
    return std::unique_ptr<server>(new server(std::move(i)));
}

server_stats server::impl::stats() const {
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

server::server(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
server::~server() { destroy(); }
void server::destroy() { impl_->destroy(); }
server_stats server::stats() const { return impl_->stats(); }
std::string_view server::endpoint() const { return impl_->endpoint(); }

}  // namespace datapump::ipc
