// The direct provider: O_DIRECT reads straight into the cache arena, bypassing the page cache
// (the cache *is* the only copy). Reads go through a small pool of io_uring rings with the arena
// registered as fixed buffers and several reads in flight (measured here: 4-16 in flight reach
// ~2.2 GB/s against 1.66 GB/s for one read at a time). Fallbacks, each announced once in the log:
// registration fails -> plain IORING_OP_READ into the same buffers; no io_uring -> pread.
#include "builtin_providers.hpp"
#include "common/local.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/io/ring_pool.hpp"

#include <fcntl.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace datapump::fs {

namespace {

using local::as_file;

constexpr std::size_t dio_align = 4096;
constexpr unsigned reads_in_flight = 8;

struct direct_root : local::local_root {
    std::unique_ptr<io::ring_pool> rings;  // null: pread fallback
    const buffer::arena* arena = nullptr;  // the cache's arena, when there is a cache
};

direct_root& root_of(const local::local_file& f) { return *static_cast<direct_root*>(f.owner); }

result<instance_handle> direct_init(const provider_config& config) noexcept {
    auto r = std::unique_ptr<direct_root>(new (std::nothrow) direct_root);
    if (r == nullptr) {
        return fail(errc::no_buffers, "direct init: out of memory");
    }
    if (auto ok = local::init_root(*r, config); !ok) {
        return std::unexpected(ok.error());
    }
    if (config.cache != nullptr) {
        r->arena = &config.cache->buffers().arena();
    }
    if ((config.flags & config_no_io_uring) != 0) {
        spdlog::info("direct: io_uring disabled by configuration; O_DIRECT reads use pread");
        return static_cast<local::local_root*>(r.release());
    }
    auto pool = io::ring_pool::create({.rings = 4,
                                       .entries = 32,
                                       .arena = r->arena,
                                       .register_buffers = (config.flags & config_no_fixed_buffers) == 0});
    if (!pool) {
        spdlog::warn("direct: {}; O_DIRECT reads use pread", describe(pool.error(), "io_uring"));
    } else {
        r->rings = std::move(*pool);
    }
    // The handle is always the local_root base, so the shared ops can cast it back.
    return static_cast<local::local_root*>(r.release());
}

void direct_terminate(instance_handle i) noexcept {
    delete static_cast<direct_root*>(static_cast<local::local_root*>(i));
}

result<file_info> direct_validate(instance_handle i, const char* path, byte_range range) noexcept {
    auto& r = *static_cast<local::local_root*>(i);
    auto info = local::validate(r, path, range, O_DIRECT);
    if (info) {
        info->dio_alignment = static_cast<std::uint32_t>(dio_align);
        return info;
    }
    if (info.error().code != errc::unsupported) {
        return info;
    }
    // Still a valid file: say what it is, and that it cannot go direct.
    info = local::validate(r, path, range, 0);
    if (info) {
        info->zero_copy = false;
        info->dio_alignment = 0;
    }
    return info;
}

result<file_handle> direct_open(instance_handle i, const char* path, open_mode mode) noexcept {
    auto f = local::open_file(*static_cast<local::local_root*>(i), path, mode, O_DIRECT);
    if (!f) {
        return std::unexpected(f.error());
    }
    return f->release();
}

void direct_read_blocks(file_handle h, std::uint64_t file_size, std::span<cache::block_read> reads) noexcept {
    const local::local_file& f = *as_file(h);
    if (!local::check_not_deleted(f, reads)) {
        return;
    }
    direct_root& root = root_of(f);
    if (root.rings == nullptr) {
        for (auto& r : reads) {
            local::complete_block(f, file_size, r, 0);
        }
        return;
    }
    std::vector<io::read_op> ops;
    ops.reserve(reads.size());
    const bool fixed = root.rings->fixed_buffers();
    for (const auto& r : reads) {
        io::read_op op{f.fd.get(), r.offset, r.dst, io::no_fixed_buffer};
        if (fixed && r.buffer_index < root.arena->count() && r.dst.data() == root.arena->data(r.buffer_index).data()) {
            op.fixed_index = r.buffer_index;
        }
        ops.push_back(op);
    }
    std::vector<result<std::uint32_t>> done;
    {
        auto ring = root.rings->borrow();
        done = ring->read_batch(ops, reads_in_flight);
    }
    for (std::size_t k = 0; k < reads.size(); ++k) {
        if (!done[k]) {
            reads[k].outcome = std::unexpected(done[k].error());
        } else {
            // A short completion is either the end of the file or a partial read: finish it.
            local::complete_block(f, file_size, reads[k], *done[k]);
        }
    }
}

result<void> direct_access_pattern(file_handle h, cache::access_pattern pattern, std::uint64_t position) noexcept {
    // The page cache is bypassed: the cache's read-ahead plan is all the read-ahead there is.
    return local::record_pattern(*as_file(h), pattern, position);
}

result<void> direct_write_block(file_handle h, std::uint64_t offset, std::span<const std::byte> bytes,
                                std::uint32_t buffer_index) noexcept {
    const local::local_file& f = *as_file(h);
    if (offset % dio_align != 0) {
        return fail(errc::invalid_argument, "direct write: offset not aligned to 4096");
    }
    const std::size_t padded = (bytes.size() + dio_align - 1) / dio_align * dio_align;
    const auto addr = reinterpret_cast<std::uintptr_t>(bytes.data());
    if (padded == bytes.size() && addr % dio_align == 0) {
        return local::write_all(f.fd.get(), offset, bytes);
    }
    // The unaligned tail: write whole pages, then finish() truncates to the exact size. When the
    // bytes start an arena buffer, the padding comes from the rest of that buffer (no copy).
    const buffer::arena* arena = root_of(f).arena;
    if (arena != nullptr && buffer_index < arena->count() && arena->data(buffer_index).data() == bytes.data() &&
        padded <= arena->buffer_size()) {
        return local::write_all(f.fd.get(), offset, std::span<const std::byte>(bytes.data(), padded));
    }
    void* bounce = std::aligned_alloc(dio_align, padded);
    if (bounce == nullptr) {
        return fail(errc::no_buffers, "direct write: no memory for an aligned bounce buffer");
    }
    std::memcpy(bounce, bytes.data(), bytes.size());
    std::memset(static_cast<std::byte*>(bounce) + bytes.size(), 0, padded - bytes.size());
    auto done = local::write_all(f.fd.get(), offset, std::span<const std::byte>(static_cast<std::byte*>(bounce), padded));
    std::free(bounce);
    return done;
}

result<void> direct_finish(file_handle h, std::uint64_t size) noexcept {
    return local::truncate_and_sync(as_file(h)->fd.get(), size);
}

}  // namespace

const provider_ops direct_provider{
    .abi_version = provider_abi_version,
    .size = sizeof(provider_ops),
    .name = "direct",
    .description = "O_DIRECT into the cache arena (io_uring fixed-buffer reads, several in flight)",
    .async_ops = op_watch,
    .init = direct_init,
    .terminate = direct_terminate,
    .validate = direct_validate,
    .open = direct_open,
    .close = local::close_file,
    .stat = local::stat_file,
    .read_blocks = direct_read_blocks,
    .lock_buffer = nullptr,  // the cache's try_loan is the fast path
    .unlock_buffer = nullptr,
    .access_pattern = direct_access_pattern,
    .write_block = direct_write_block,
    .finish = direct_finish,
    .lock_range = local::lock_range,
    .unlock_range = local::unlock_range,
    .watch = local::watch,
    .unwatch = local::unwatch,
    // Clears the file's O_DIRECT: small files go by sendfile (--direct-min-size), large ones from
    // the arena (the cache's loans).
    .send_fd = local::page_cache_fd,
    .extent = local::extent,
    .rename = local::rename,
    .remove = local::remove,
    .resize = local::resize,
    .sync = local::sync,
};

}  // namespace datapump::fs
