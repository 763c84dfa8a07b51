// The posix provider: ordinary files through the kernel's page cache. Reads are pread into the
// arena buffers the cache hands us; access-pattern changes become posix_fadvise hints so the
// kernel's own read-ahead follows the stream.
#include "builtin_providers.hpp"
#include "common/local.hpp"

#include <fcntl.h>

#include <new>

namespace datapump::fs {

namespace {

using local::as_file;

result<instance_handle> posix_init(const provider_config& config) noexcept {
    auto r = std::unique_ptr<local::local_root>(new (std::nothrow) local::local_root);
    if (r == nullptr) {
        return fail(errc::no_buffers, "posix init: out of memory");
    }
    if (auto ok = local::init_root(*r, config); !ok) {
        return std::unexpected(ok.error());
    }
    return r.release();
}

void posix_terminate(instance_handle i) noexcept { delete static_cast<local::local_root*>(i); }

result<file_info> posix_validate(instance_handle i, const char* path, byte_range range) noexcept {
    return local::validate(*static_cast<local::local_root*>(i), path, range, 0);
}

result<file_handle> posix_open(instance_handle i, const char* path, open_mode mode) noexcept {
    auto f = local::open_file(*static_cast<local::local_root*>(i), path, mode, 0);
    if (!f) {
        return std::unexpected(f.error());
    }
    return f->release();
}

void posix_read_blocks(file_handle h, std::uint64_t file_size, std::span<cache::block_read> reads) noexcept {
    const local::local_file& f = *as_file(h);
    if (!local::check_not_deleted(f, reads)) {
        return;
    }
    for (auto& r : reads) {
        local::complete_block(f, file_size, r, 0);
    }
}

result<void> posix_access_pattern(file_handle h, cache::access_pattern pattern, std::uint64_t position) noexcept {
    local::local_file& f = *as_file(h);
    if (auto ok = local::record_pattern(f, pattern, position); !ok) {
        return ok;
    }
    // The window the kernel should bring in (or may drop) next: a few MiB is what its own
    // read-ahead would reach at stream rates.
    constexpr off_t window = 8 << 20;
    const int fd = f.fd.get();
    const auto pos = static_cast<off_t>(position);
    int rc = 0;
    if (pattern.mode == cache::play_mode::pause) {
        rc = ::posix_fadvise(fd, pos, window, POSIX_FADV_DONTNEED);
    } else if (pattern.speed == 1) {
        rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (rc == 0) {
            rc = ::posix_fadvise(fd, pos, window, POSIX_FADV_WILLNEED);
        }
    } else {
        // Fast-forward touches every k-th block: kernel read-ahead would fetch what is skipped.
        rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    }
    if (rc != 0) {
        return fail_errno("posix access_pattern: posix_fadvise", rc);
    }
    return {};
}

result<void> posix_write_block(file_handle h, std::uint64_t offset, std::span<const std::byte> bytes,
                               std::uint32_t /*buffer_index*/) noexcept {
    return local::write_all(as_file(h)->fd.get(), offset, bytes);
}

result<void> posix_finish(file_handle h, std::uint64_t size) noexcept {
    return local::truncate_and_sync(as_file(h)->fd.get(), size);
}

}  // namespace

const provider_ops posix_provider{
    .abi_version = provider_abi_version,
    .size = sizeof(provider_ops),
    .name = "posix",
    .description = "ordinary files through the page cache (pread, posix_fadvise)",
    .async_ops = op_watch,
    .init = posix_init,
    .terminate = posix_terminate,
    .validate = posix_validate,
    .open = posix_open,
    .close = local::close_file,
    .stat = local::stat_file,
    .read_blocks = posix_read_blocks,
    .lock_buffer = nullptr,  // the cache's try_loan is the fast path
    .unlock_buffer = nullptr,
    .access_pattern = posix_access_pattern,
    .write_block = posix_write_block,
    .finish = posix_finish,
    .lock_range = local::lock_range,
    .unlock_range = local::unlock_range,
    .watch = local::watch,
    .unwatch = local::unwatch,
    .send_fd = local::page_cache_fd,  // the file's own descriptor (never O_DIRECT here)
    .extent = local::extent,
    .rename = local::rename,
    .remove = local::remove,
    .resize = local::resize,
    .sync = local::sync,
};

}  // namespace datapump::fs
