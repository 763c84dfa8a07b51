// File: src/fs/engine_state.hpp
//
// The engine's private records behind registry, provider_instance and file: the use counts and
// handles the seed keeps apart from the provider's table.
//
//   provider_record  one registered table; `instances` counts live instances
//   instance_state   one init'ed instance; `open_files` counts live file_cores
//   file_core        one provider file handle; closes it and drops the instance's count when
//                    the last holder (fs::file, a cache view's source, a sink) lets go
//   view_source      a block_source of a given size over a file_core (one per cache view)
//   file_state       what fs::file owns: the current view, the watch, change counters
//
// Thread-safety: as each struct says.
#pragma once

#include "datapump/cache/file_cache.hpp"
#include "datapump/fs/file.hpp"
#include "datapump/fs/provider.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

namespace datapump::fs::detail {

struct provider_record {
    const provider_ops* ops = nullptr;
    bool builtin = false;
    // Live instances. Incremented under the registry's mutex (instantiate) and read there by
    // remove(); decremented by the instance's last user without that mutex. So remove() can see
    // a count that is about to drop and answer busy: the caller retries; it can never see zero
    // while an instance lives, because the increment happens-before the registry unlock.
    std::atomic<std::uint32_t> instances{0};
};

struct instance_state {
    instance_state(std::shared_ptr<provider_record> r, instance_handle h, cache::file_cache* c, std::string root_dir)
        : record(std::move(r)), handle(h), cache(c), root(std::move(root_dir)) {}
    instance_state(const instance_state&) = delete;
    instance_state& operator=(const instance_state&) = delete;
    // The last user (handle or file) terminates the instance if terminate() did not.
    ~instance_state();

    [[nodiscard]] const provider_ops& ops() const { return *record->ops; }
    // Counts one more open file. Errors: closed after terminate.
    [[nodiscard]] result<void> acquire_file();
    void release_file();
    [[nodiscard]] result<void> terminate();
    [[nodiscard]] std::uint32_t open_files_now() const;

    // Read opens of one unchanged file share one cache view while any of them holds it: with a
    // view (and so a cache id) per open, concurrent readers of one title would each read it
    // from storage. Identity: device, inode, size, mtime, as for the ETag. When the last holder
    // lets go the id is remembered, so a later open of the unchanged file finds the blocks still
    // cached (the cache ages them out like any others); a change forgets it.
    using view_key = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::int64_t>;
    // Makes a view: under the remembered id (file_cache::reopen) or, given 0, a new one.
    using view_maker = std::function<std::shared_ptr<cache::cached_file>(std::uint64_t reuse_id)>;
    // The view held for `key`, or the one `make` creates (then shared).
    [[nodiscard]] std::shared_ptr<cache::cached_file> share_view(const view_key& key, const view_maker& make);
    // A file lets go of `view`, its only reference: true when no one else holds it, so the
    // caller may close it. `stale`: the file changed, so later opens must not get it or its id.
    [[nodiscard]] bool unshare_view(const view_key& key, const std::shared_ptr<cache::cached_file>& view, bool stale);
    // Remembered ids beyond this are forgotten (those whose view no one holds).
    static constexpr std::size_t max_remembered_views = 4096;

    const std::shared_ptr<provider_record> record;
    const instance_handle handle;
    cache::file_cache* const cache;
    const std::string root;

private:
    mutable std::mutex mutex_;
    std::uint32_t open_files_ = 0;  // guarded by mutex_
    bool terminated_ = false;       // guarded by mutex_
    std::mutex views_mutex_;
    struct shared_view {
        std::weak_ptr<cache::cached_file> view;  // expired: no one holds it, `id` remembered
        std::uint64_t id = 0;
    };
    std::map<view_key, shared_view> views_;  // guarded by views_mutex_
};

class file_core final : public cache::block_sink {
public:
    file_core(std::shared_ptr<instance_state> inst, file_handle h) : instance(std::move(inst)), handle(h) {}
    file_core(const file_core&) = delete;
    file_core& operator=(const file_core&) = delete;
    ~file_core() override;  // close(handle), then the instance's use count drops

    void read(std::uint64_t file_size, std::span<cache::block_read> reads) const;
    [[nodiscard]] result<void> write_block(std::uint64_t offset, std::span<const std::byte> bytes,
                                           std::uint32_t buffer_index) override;
    [[nodiscard]] result<void> finish(std::uint64_t size) override;

    const std::shared_ptr<instance_state> instance;
    const file_handle handle;
};

class view_source final : public cache::block_source {
public:
    view_source(std::shared_ptr<file_core> core, std::uint64_t size) : core_(std::move(core)), size_(size) {}
    void read_blocks(std::span<cache::block_read> reads) override { core_->read(size_, reads); }

private:
    std::shared_ptr<file_core> core_;
    std::uint64_t size_;
};

struct file_state {
    // Runs on the provider's watcher thread (watch callback); see file.hpp.
    static void on_change_thunk(void* context, std::uint32_t changes) noexcept;
    void handle_change(std::uint32_t changes) noexcept;

    std::shared_ptr<file_core> core;
    std::string path;
    open_mode mode = open_mode::read;
    bool watched = false;

    mutable std::mutex mutex;                           // guards the five fields below
    std::shared_ptr<cache::cached_file> view;           // null after deletion or without a cache
    std::optional<instance_state::view_key> shared_as;  // set while `view` is a shared one
    file_info info;
    bool gone = false;
    std::function<void(std::uint32_t)> handler;

    // Release-incremented after the view was swapped; acquire-loaded by changes() so a caller
    // that saw it move gets the new view from cached(). change_bits is relaxed: it is read for
    // information only, after changes() (whose acquire orders it).
    std::atomic<std::uint64_t> changes{0};
    std::atomic<std::uint32_t> change_bits{0};
};

}  // namespace datapump::fs::detail
