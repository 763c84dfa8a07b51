// provider_instance and its use counts: an instance is terminated exactly once, by terminate()
// when no file is open, or by its last user otherwise.
#include "datapump/fs/registry.hpp"

#include "engine_state.hpp"

#include "datapump/base/internal/log.hpp"

namespace datapump::fs {

namespace detail {

instance_state::~instance_state() {
    bool run = false;
    {
        std::lock_guard lock(mutex_);
        run = !terminated_;
        terminated_ = true;
    }
    if (run) {
        ops().terminate(handle);
        // Release pairs with registry::remove()'s acquire load.
        record->instances.fetch_sub(1, std::memory_order_release);
    }
}

result<void> instance_state::acquire_file() {
    std::lock_guard lock(mutex_);
    if (terminated_) {
        return fail(errc::closed, "provider open: the instance was terminated");
    }
    ++open_files_;
    return {};
}

void instance_state::release_file() {
    std::lock_guard lock(mutex_);
    --open_files_;
}

std::shared_ptr<cache::cached_file> instance_state::share_view(const view_key& key, const view_maker& make) {
    std::lock_guard lock(views_mutex_);
    std::uint64_t reuse_id = 0;
    if (auto it = views_.find(key); it != views_.end()) {
        if (auto view = it->second.view.lock()) {
            return view;
        }
        reuse_id = it->second.id;
    } else if (views_.size() >= max_remembered_views) {
        std::erase_if(views_, [](const auto& entry) { return entry.second.view.expired(); });
    }
    auto view = make(reuse_id);
    views_[key] = shared_view{.view = view, .id = view->id()};
    return view;
}

bool instance_state::unshare_view(const view_key& key, const std::shared_ptr<cache::cached_file>& view, bool stale) {
    std::lock_guard lock(views_mutex_);
    // Under the mutex no open can take a new reference, so a count of one is final.
    const bool last = view.use_count() == 1;
    if (stale) {
        // Only the entry of this very view: a newer open may have made its own since.
        if (auto it = views_.find(key); it != views_.end() && it->second.id == view->id()) {
            views_.erase(it);
        }
    }
    return last;
}

std::uint32_t instance_state::open_files_now() const {
    std::lock_guard lock(mutex_);
    return open_files_;
}

result<void> instance_state::terminate() {
    {
        std::lock_guard lock(mutex_);
        if (terminated_) {
            return fail(errc::closed, "provider terminate: already terminated");
        }
        if (open_files_ != 0) {
            return fail(errc::busy, "provider terminate: files are still open (close them first)");
        }
        // From here acquire_file() fails, so no file can open while terminate runs.
        terminated_ = true;
    }
    ops().terminate(handle);
    record->instances.fetch_sub(1, std::memory_order_release);
    return {};
}

}  // namespace detail

std::string_view provider_instance::provider_name() const { return state_->ops().name; }
const provider_ops& provider_instance::ops() const { return state_->ops(); }
instance_handle provider_instance::handle() const { return state_->handle; }
std::uint32_t provider_instance::open_files() const { return state_->open_files_now(); }

result<file_info> provider_instance::validate(std::string_view path, byte_range range) const {
    if (state_ == nullptr) {
        return fail(errc::closed, "provider validate: empty instance handle");
    }
    const std::string p(path);
    return state_->ops().validate(state_->handle, p.c_str(), range);
}

result<void> provider_instance::terminate() {
    if (state_ == nullptr) {
        return fail(errc::closed, "provider terminate: empty instance handle");
    }
    auto done = state_->terminate();
    if (done) {
        state_.reset();
    }
    return done;
}

result<bool> provider_instance::rename(std::string_view from, std::string_view to, bool durable, bool replace) const {
    if (state_ == nullptr) {
        return fail(errc::closed, "provider rename: empty instance handle");
    }
    if (state_->ops().rename == nullptr) {
        return fail(errc::unsupported, "provider rename: the provider has no namespace ops");
    }
    return state_->ops().rename(state_->handle, std::string(from).c_str(), std::string(to).c_str(),
                                (durable ? 0U : rename_defer_sync) | (replace ? 0U : rename_no_replace));
}

result<void> provider_instance::sync() const {
    if (state_ == nullptr) {
        return fail(errc::closed, "provider sync: empty instance handle");
    }
    if (state_->ops().sync == nullptr) {
        return fail(errc::unsupported, "provider sync: the provider has no batched durability (resize/sync)");
    }
    return state_->ops().sync(state_->handle);
}

result<void> provider_instance::remove(std::string_view path) const {
    if (state_ == nullptr) {
        return fail(errc::closed, "provider remove: empty instance handle");
    }
    if (state_->ops().remove == nullptr) {
        return fail(errc::unsupported, "provider remove: the provider has no namespace ops");
    }
    return state_->ops().remove(state_->handle, std::string(path).c_str());
}

result<file> provider_instance::open(std::string_view path, open_mode mode) {
    if (state_ == nullptr) {
        return fail(errc::closed, "provider open: empty instance handle");
    }
    const provider_ops& ops = state_->ops();
    if (auto ok = state_->acquire_file(); !ok) {
        return std::unexpected(ok.error());
    }
    auto st = std::make_unique<detail::file_state>();
    st->path = std::string(path);
    st->mode = mode;
    auto handle = ops.open(state_->handle, st->path.c_str(), mode);
    if (!handle) {
        state_->release_file();
        return std::unexpected(handle.error());
    }
    // From here the core owns the handle and the use count: dropping it closes both.
    st->core = std::make_shared<detail::file_core>(state_, *handle);
    auto info = ops.stat(*handle);
    if (!info) {
        return std::unexpected(info.error());
    }
    st->info = *info;
    if (state_->cache != nullptr) {
        auto make = [&](std::uint64_t reuse_id) {
            auto source = std::make_shared<detail::view_source>(st->core, info->size);
            return reuse_id != 0 ? state_->cache->reopen(reuse_id, std::move(source), info->size)
                                 : state_->cache->open(std::move(source), info->size);
        };
        // A provider that gives no inode cannot tell two opens are one file; a writer changes it.
        if (mode == open_mode::read && info->inode != 0) {
            const detail::instance_state::view_key key{info->device, info->inode, info->size, info->mtime_ns};
            st->shared_as = key;
            st->view = state_->share_view(key, make);
        } else {
            st->view = make(0);
        }
    }
    // Only read opens are watched: a writer is the one changing the file.
    if (mode == open_mode::read && state_->cache != nullptr && ops.watch != nullptr) {
        auto watching = ops.watch(state_->handle, *handle, st.get(), &detail::file_state::on_change_thunk);
        if (watching) {
            st->watched = true;
        } else {
            spdlog::warn("fs: {}; the file is served without change notifications",
                         describe(watching.error(), st->path));
        }
    }
    return file(std::move(st));
}

}  // namespace datapump::fs
