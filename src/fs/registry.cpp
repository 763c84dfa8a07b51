#include "datapump/fs/registry.hpp"

#include "builtin_providers.hpp"
#include "engine_state.hpp"

#include "datapump/base/check.hpp"
#include "datapump/base/internal/log.hpp"

#include <algorithm>
#include <cstring>

namespace datapump::fs {

result<void> check_provider(const provider_ops* ops) {
    if (ops == nullptr) {
        return fail(errc::invalid_argument, "provider registration: null table");
    }
    if (ops->abi_version != provider_abi_version) {
        return fail(errc::unsupported, "provider registration: ABI version differs from the engine's (rebuild the provider)");
    }
    if (ops->size < sizeof(provider_ops)) {
        return fail(errc::invalid_argument, "provider registration: table smaller than the engine's provider_ops");
    }
    if (ops->name == nullptr || ops->name[0] == '\0') {
        return fail(errc::invalid_argument, "provider registration: missing name");
    }
    struct required {
        bool present;
        const char* what;
    };
    const required ops_required[] = {
        {ops->init != nullptr, "provider registration: required op 'init' missing"},
        {ops->terminate != nullptr, "provider registration: required op 'terminate' missing"},
        {ops->validate != nullptr, "provider registration: required op 'validate' missing"},
        {ops->open != nullptr, "provider registration: required op 'open' missing"},
        {ops->close != nullptr, "provider registration: required op 'close' missing"},
        {ops->stat != nullptr, "provider registration: required op 'stat' missing"},
        {ops->read_blocks != nullptr, "provider registration: required op 'read_blocks' missing"},
        {(ops->write_block == nullptr) == (ops->finish == nullptr),
         "provider registration: 'write_block' and 'finish' come as a pair"},
        {(ops->lock_range == nullptr) == (ops->unlock_range == nullptr),
         "provider registration: 'lock_range' and 'unlock_range' come as a pair"},
        {(ops->watch == nullptr) == (ops->unwatch == nullptr),
         "provider registration: 'watch' and 'unwatch' come as a pair"},
        {(ops->rename == nullptr) == (ops->remove == nullptr),
         "provider registration: 'rename' and 'remove' come as a pair"},
        {(ops->resize == nullptr) == (ops->sync == nullptr),
         "provider registration: 'resize' and 'sync' come as a pair"},
    };
    for (const required& r : ops_required) {
        if (!r.present) {
            return fail(errc::invalid_argument, r.what);
        }
    }
    if ((ops->async_ops & ~engine_async_ops) != 0) {
        return fail(errc::unsupported,
                    "provider registration: async_ops names an op this engine drives only synchronously");
    }
    return {};
}

registry::registry() {
    for (const provider_ops* ops : builtin_providers()) {
        auto added = add(ops);
        // A built-in table that fails its own checks is a bug in the engine, not a user error.
        DP_CHECK(added.has_value());
        records_.back()->builtin = true;
    }
}

registry::~registry() = default;

std::shared_ptr<detail::provider_record> registry::lookup_locked(std::string_view name) const {
    for (const auto& r : records_) {
        if (name == r->ops->name) {
            return r;
        }
    }
    return nullptr;
}

result<void> registry::add(const provider_ops* ops) {
    if (auto ok = check_provider(ops); !ok) {
        spdlog::error("fs: {}", describe(ok.error(), ops != nullptr && ops->name != nullptr ? ops->name : "?"));
        return ok;
    }
    std::lock_guard lock(mutex_);
    if (lookup_locked(ops->name) != nullptr) {
        spdlog::error("fs: provider '{}' is already registered", ops->name);
        return fail(errc::busy, "provider registration: a provider of that name is already registered");
    }
    auto record = std::make_shared<detail::provider_record>();
    record->ops = ops;
    records_.push_back(std::move(record));
    spdlog::debug("fs: registered provider '{}' ({})", ops->name, ops->description != nullptr ? ops->description : "");
    return {};
}

result<void> registry::remove(std::string_view name) {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(records_.begin(), records_.end(), [name](const auto& r) { return name == r->ops->name; });
    if (it == records_.end()) {
        return fail(errc::not_found, "provider removal: no provider of that name");
    }
    // Acquire pairs with the release decrement of the instance's last user (see provider_record).
    if ((*it)->instances.load(std::memory_order_acquire) != 0) {
        return fail(errc::busy, "provider removal: the provider still has live instances");
    }
    records_.erase(it);
    return {};
}

const provider_ops* registry::find(std::string_view name) const {
    std::lock_guard lock(mutex_);
    auto r = lookup_locked(name);
    return r != nullptr ? r->ops : nullptr;
}

std::vector<std::string> registry::names() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    out.reserve(records_.size());
    for (const auto& r : records_) {
        out.emplace_back(r->ops->name);
    }
    return out;
}

std::uint32_t registry::instances(std::string_view name) const {
    std::lock_guard lock(mutex_);
    auto r = lookup_locked(name);
    return r != nullptr ? r->instances.load(std::memory_order_acquire) : 0;
}

result<provider_instance> registry::instantiate(std::string_view name, const instance_config& config) {
    std::shared_ptr<detail::provider_record> record;
    {
        std::lock_guard lock(mutex_);
        record = lookup_locked(name);
        if (record == nullptr) {
            return fail(errc::not_found, "provider instantiate: no provider of that name");
        }
        // Counted before init runs, under the mutex, so remove() cannot slip in between.
        // Relaxed: the mutex orders it with remove()'s load.
        record->instances.fetch_add(1, std::memory_order_relaxed);
    }
    provider_config pc{config.root.c_str(), config.cache, config.flags};
    auto handle = record->ops->init(pc);
    if (!handle) {
        // Release pairs with remove()'s acquire load.
        record->instances.fetch_sub(1, std::memory_order_release);
        spdlog::error("fs: {}", describe(handle.error(), config.root));
        return std::unexpected(handle.error());
    }
    return provider_instance(std::make_shared<detail::instance_state>(std::move(record), *handle, config.cache, config.root));
}

}  // namespace datapump::fs
