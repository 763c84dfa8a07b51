// File: datapump/fs/registry.hpp
//
// The registry of providers and the engine-facing handle of a provider instance.
//
//   registry ──shared──> record{ops, live instances}  <──shared── provider_instance
//                                                      <──shared── every open fs::file (through
//                                                                   its instance)
//
// The built-in providers (posix, direct) are registered by the constructor from one explicit
// list (src/fs/builtin_providers.cpp); third parties call add() at run time. Use counts keep
// everything a transfer needs alive: an instance lives while it has open files, and a provider
// cannot be removed while it has instances. Explicit teardown (terminate, remove) fails with busy
// instead of tearing anything down under a transfer.
//
// Ownership: a provider's table must outlive every instance made from it (static storage).
// Thread-safety: every member of registry and provider_instance may be called from any thread.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/fs/file.hpp"
#include "datapump/fs/provider.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::fs {

// Private state defined under src/: declared outside the exported region (the library's
// default, hidden), so that nothing of it is exported.
DATAPUMP_API_END
namespace detail {
struct provider_record;
struct instance_state;
}  // namespace detail
DATAPUMP_API_BEGIN

struct instance_config {
    std::string root;                     // directory the instance serves; paths resolve beneath it
    cache::file_cache* cache = nullptr;   // needed for fs::file::cached() and the direct provider's
                                          // fixed buffers; the cache must outlive the instance
    std::uint32_t flags = 0;              // provider_config flags (config_no_fixed_buffers, ...)
};

class provider_instance {
public:
    provider_instance() = default;
    provider_instance(provider_instance&&) noexcept = default;
    provider_instance& operator=(provider_instance&&) noexcept = default;
    provider_instance(const provider_instance&) = delete;
    provider_instance& operator=(const provider_instance&) = delete;
    // Drops this handle. If files are still open the instance is terminated when the last closes.
    ~provider_instance() = default;

    [[nodiscard]] bool empty() const { return state_ == nullptr; }
    [[nodiscard]] std::string_view provider_name() const;
    [[nodiscard]] const provider_ops& ops() const;
    [[nodiscard]] instance_handle handle() const;
    [[nodiscard]] std::uint32_t open_files() const;

    // Checks `path` and `range` without opening for transfer (see provider_ops::validate).
    [[nodiscard]] result<file_info> validate(std::string_view path, byte_range range = {}) const;
    // Opens `path`, records what the fast path needs, registers it with the cache (when the
    // instance has one) and, for read opens, watches it for changes. Errors: those of the
    // provider's open and stat; closed after terminate().
    [[nodiscard]] result<file> open(std::string_view path, open_mode mode = open_mode::read);
    // Renames `from` over `to` atomically and makes it durable (provider_ops::rename); true when
    // an existing `to` was replaced. With `durable` false the directory is not synced: the
    // caller's sync() does it (batched publishing). Errors: unsupported (no rename op), the
    // provider's.
    // With `replace` false an existing `to` fails it with busy, atomically (RENAME_NOREPLACE).
    [[nodiscard]] result<bool> rename(std::string_view from, std::string_view to, bool durable = true,
                                      bool replace = true) const;
    // Makes every change beneath the root durable at once (provider_ops::sync). Errors:
    // unsupported (the provider has no resize/sync pair), io_error, no_space.
    [[nodiscard]] result<void> sync() const;
    // Removes the regular file `path` (provider_ops::remove). Errors: unsupported, the provider's.
    [[nodiscard]] result<void> remove(std::string_view path) const;
    // Calls the provider's terminate now. Errors: busy while files are open (nothing is torn
    // down), closed when already terminated. On success the handle is empty.
    [[nodiscard]] result<void> terminate();

private:
    friend class registry;
    explicit provider_instance(std::shared_ptr<detail::instance_state> state) : state_(std::move(state)) {}
    std::shared_ptr<detail::instance_state> state_;
};

class registry {
public:
    // Registers the built-in providers.
    registry();
    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;
    ~registry();

    // Registers a third-party provider. Errors (nothing is registered):
    //   invalid_argument  null table, size smaller than this engine's provider_ops, missing
    //                     name, a required op missing, or half of an op pair
    //   unsupported       abi_version differs from provider_abi_version, or async_ops names an
    //                     op this engine can only drive synchronously
    //   busy              a provider of that name is already registered
    [[nodiscard]] result<void> add(const provider_ops* ops);
    // Unregisters a provider. Errors: not_found; busy while it has live instances.
    [[nodiscard]] result<void> remove(std::string_view name);

    // The table registered under `name`, or nullptr.
    [[nodiscard]] const provider_ops* find(std::string_view name) const;
    [[nodiscard]] std::vector<std::string> names() const;
    // Live instances of `name` (0 when not registered).
    [[nodiscard]] std::uint32_t instances(std::string_view name) const;

    // Calls the provider's init. Errors: not_found (no such provider), those of init.
    [[nodiscard]] result<provider_instance> instantiate(std::string_view name, const instance_config& config);

private:
    [[nodiscard]] std::shared_ptr<detail::provider_record> lookup_locked(std::string_view name) const;

    mutable std::mutex mutex_;
    std::vector<std::shared_ptr<detail::provider_record>> records_;  // guarded by mutex_
};

// Checks a table the way add() does, without registering it.
[[nodiscard]] result<void> check_provider(const provider_ops* ops);

}  // namespace datapump::fs
DATAPUMP_API_END
