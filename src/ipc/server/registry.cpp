// The in-process path's way in: the registry of this process's endpoints, and the direct
// connection a client in this process opens on one (internal::open_direct).
#include "server_impl.hpp"

#include <map>
#include <mutex>
#include <string>

namespace datapump::ipc {

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

void server::impl::register_endpoint() {
    std::lock_guard lock(registry_mu);
    registry()[shared_.endpoint] = this;
}

result<std::shared_ptr<internal::direct_link>> internal::open_direct(std::string_view endpoint, notify_fn on_notify) {
    std::lock_guard lock(registry_mu);
    auto it = registry().find(endpoint);
    if (it == registry().end()) {
        return std::shared_ptr<direct_link>();
    }
    return it->second->open_direct(std::move(on_notify));
}

result<std::shared_ptr<internal::direct_link>> server::impl::open_direct(internal::notify_fn on_notify) {
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

}  // namespace datapump::ipc
