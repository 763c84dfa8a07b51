// fs::file: dispatch through the provider's table, the cache views, and change handling.
#include "datapump/fs/file.hpp"

#include "engine_state.hpp"

#include "datapump/base/log.hpp"

namespace datapump::fs {

namespace detail {

file_core::~file_core() {
    instance->ops().close(handle);
    instance->release_file();
}

void file_core::read(std::uint64_t file_size, std::span<cache::block_read> reads) const {
    instance->ops().read_blocks(handle, file_size, reads);
}

result<void> file_core::write_block(std::uint64_t offset, std::span<const std::byte> bytes, std::uint32_t buffer_index) {
    const provider_ops& ops = instance->ops();
    if (ops.write_block == nullptr) {
        return fail(errc::unsupported, "fs write: the provider is read-only");
    }
    return ops.write_block(handle, offset, bytes, buffer_index);
}

result<void> file_core::finish(std::uint64_t size) {
    const provider_ops& ops = instance->ops();
    if (ops.finish == nullptr) {
        return fail(errc::unsupported, "fs write: the provider is read-only");
    }
    return ops.finish(handle, size);
}

void file_state::on_change_thunk(void* context, std::uint32_t changes) noexcept {
    static_cast<file_state*>(context)->handle_change(changes);
}

void file_state::handle_change(std::uint32_t bits) noexcept {
    cache::file_cache* cache = core->instance->cache;
    std::shared_ptr<cache::cached_file> old_view;
    std::optional<instance_state::view_key> old_shared;
    if ((bits & (change_modified | change_truncated | change_deleted)) != 0) {
        auto fresh = core->instance->ops().stat(core->handle);
        std::shared_ptr<cache::cached_file> new_view;
        const bool deleted = (bits & change_deleted) != 0 || !fresh;
        if (!deleted && cache != nullptr) {
            // A new cache id: blocks cached under the old view are never served from this one.
            new_view = cache->open(std::make_shared<view_source>(core, fresh->size), fresh->size);
        }
        std::lock_guard lock(mutex);
        old_view = std::exchange(view, std::move(new_view));
        old_shared = std::exchange(shared_as, std::nullopt);
        if (deleted) {
            gone = true;
        } else {
            info = *fresh;
        }
    }
    if (old_view != nullptr && cache != nullptr &&
        (!old_shared || core->instance->unshare_view(*old_shared, old_view, true))) {
        cache->close(*old_view);
    }
    // Relaxed: ordered for readers by the release increment below.
    change_bits.fetch_or(bits, std::memory_order_relaxed);
    // SYNC POINT: release pairs with the acquire in file::changes(): a caller that sees the new
    // count also sees the swapped view (the mutex orders it too; this makes polling cheap).
    changes.fetch_add(1, std::memory_order_release);
    std::function<void(std::uint32_t)> h;
    {
        std::lock_guard lock(mutex);
        h = handler;
    }
    if (h) {
        h(bits);
    }
}

}  // namespace detail

file::file(std::unique_ptr<detail::file_state> state) : state_(std::move(state)) {}
file::file(file&&) noexcept = default;
file& file::operator=(file&&) noexcept = default;

file::~file() {
    if (state_ == nullptr) {
        return;  // moved from
    }
    const auto& inst = *state_->core->instance;
    if (state_->watched) {
        // After this returns the watcher never calls handle_change on this state again.
        inst.ops().unwatch(inst.handle, state_->core->handle);
    }
    std::shared_ptr<cache::cached_file> view;
    std::optional<detail::instance_state::view_key> shared;
    {
        std::lock_guard lock(state_->mutex);
        view = std::move(state_->view);
        shared = state_->shared_as;
    }
    // A shared view is closed by the last file that holds it: the others still read through it.
    if (view != nullptr && inst.cache != nullptr &&
        (!shared || state_->core->instance->unshare_view(*shared, view, false))) {
        inst.cache->close(*view);
    }
}

const std::string& file::path() const { return state_->path; }
open_mode file::mode() const { return state_->mode; }

file_info file::info() const {
    std::lock_guard lock(state_->mutex);
    return state_->info;
}

result<std::shared_ptr<cache::cached_file>> file::cached() const {
    std::lock_guard lock(state_->mutex);
    if (state_->gone) {
        return fail(errc::file_changed, "fs file: the file was deleted");
    }
    if (state_->view == nullptr) {
        return fail(errc::unsupported, "fs file: the provider instance has no cache");
    }
    return state_->view;
}

std::uint64_t file::changes() const { return state_->changes.load(std::memory_order_acquire); }
std::uint32_t file::change_bits() const { return state_->change_bits.load(std::memory_order_relaxed); }

void file::on_change(std::function<void(std::uint32_t)> handler) {
    std::lock_guard lock(state_->mutex);
    state_->handler = std::move(handler);
}

result<std::vector<cache::read_loan>> file::loan_read(std::uint64_t offset, std::uint64_t length) {
    auto view = cached();
    if (!view) {
        return std::unexpected(view.error());
    }
    return state_->core->instance->cache->loan_read(**view, offset, length);
}

result<cache::read_loan> file::lock_buffer(const cache::cached_file& view, std::uint64_t block) noexcept {
    const auto& inst = *state_->core->instance;
    if (inst.cache == nullptr) {
        return fail(errc::unsupported, "fs lock_buffer: the provider instance has no cache");
    }
    if (inst.ops().lock_buffer != nullptr) {
        return inst.ops().lock_buffer(state_->core->handle, *inst.cache, view, block);
    }
    return inst.cache->try_loan(view, block);
}

void file::unlock_buffer(cache::read_loan loan) noexcept {
    const auto& inst = *state_->core->instance;
    if (inst.ops().unlock_buffer != nullptr) {
        inst.ops().unlock_buffer(state_->core->handle, std::move(loan));
    }
    // Otherwise `loan` is given back when it goes out of scope here.
}

result<void> file::set_access_pattern(cache::access_pattern pattern, std::uint64_t position) {
    const auto& ops = state_->core->instance->ops();
    if (ops.access_pattern == nullptr) {
        return {};  // the cache's read-ahead plan is all there is
    }
    return ops.access_pattern(state_->core->handle, pattern, position);
}

result<int> file::send_fd() const {
    const auto& ops = state_->core->instance->ops();
    if (ops.send_fd == nullptr) {
        return fail(errc::unsupported, "fs send_fd: the provider's bytes are not in the page cache");
    }
    return ops.send_fd(state_->core->handle);
}

result<void> file::lock_range(byte_range range, lock_kind kind) {
    const auto& ops = state_->core->instance->ops();
    if (ops.lock_range == nullptr) {
        return fail(errc::unsupported, "fs lock_range: the provider has no range locks");
    }
    return ops.lock_range(state_->core->handle, range, kind);
}

result<void> file::unlock_range(byte_range range) {
    const auto& ops = state_->core->instance->ops();
    if (ops.unlock_range == nullptr) {
        return fail(errc::unsupported, "fs unlock_range: the provider has no range locks");
    }
    return ops.unlock_range(state_->core->handle, range);
}

result<storage_extent> file::extent(std::uint64_t offset, std::uint64_t length) const {
    const provider_ops& ops = state_->core->instance->ops();
    if (ops.extent == nullptr) {
        return fail(errc::unsupported, "fs extent: the provider cannot be written by the ingest path");
    }
    return ops.extent(state_->core->handle, offset, length);
}

result<void> file::truncate_and_sync(std::uint64_t size) const {
    if (state_->mode == open_mode::read) {
        return fail(errc::invalid_argument, "fs truncate_and_sync: the file was opened for reading");
    }
    return state_->core->finish(size);
}

result<void> file::resize(std::uint64_t size) const {
    if (state_->mode == open_mode::read) {
        return fail(errc::invalid_argument, "fs resize: the file was opened for reading");
    }
    const provider_ops& ops = state_->core->instance->ops();
    if (ops.resize == nullptr) {
        return fail(errc::unsupported, "fs resize: the provider has no batched durability (resize/sync)");
    }
    return ops.resize(state_->core->handle, size);
}

std::shared_ptr<cache::block_source> file::source(std::uint64_t size) const {
    return std::make_shared<detail::view_source>(state_->core, size);
}

result<std::shared_ptr<cache::block_sink>> file::sink() const {
    if (state_->mode == open_mode::read) {
        return fail(errc::invalid_argument, "fs sink: the file was opened for reading");
    }
    if (state_->core->instance->ops().write_block == nullptr) {
        return fail(errc::unsupported, "fs sink: the provider is read-only");
    }
    return std::shared_ptr<cache::block_sink>(state_->core);
}

result<std::unique_ptr<cache::writer>> file::create_writer() {
    auto s = sink();
    if (!s) {
        return std::unexpected(s.error());
    }
    cache::file_cache* cache = state_->core->instance->cache;
    if (cache == nullptr) {
        return fail(errc::unsupported, "fs create_writer: the provider instance has no cache");
    }
    return cache->create_writer(source(unknown_size), std::move(*s));
}

}  // namespace datapump::fs
