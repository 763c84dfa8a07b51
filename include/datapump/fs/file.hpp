// File: datapump/fs/file.hpp
//
// One open file of a provider instance, as the engine uses it: it dispatches through the
// provider's table, and is the cache's block_source and block_sink for that file.
//
//   fs::file ──owns──> file_core (provider file handle; closes it when the last user drops)
//            ──owns──> the current cache view: cached_file ──source──> view_source{core, size}
//
// A read open is watched: when the provider reports a modification or truncation, the file
// re-reads its attributes and registers a new cache view (a new cache id, so no stale block is
// ever served from the new view); loans and views taken earlier keep their bytes. A deletion
// makes cached() fail with file_changed. A rename changes no bytes and only notifies.
// Read opens of one unchanged file (device, inode, size, mtime) share one view, so concurrent
// readers of it share its cached blocks; a changed file's new view is its own.
//
// Lifetimes: views and sinks handed out keep the provider file (and so its instance) open until
// they are dropped. The file must be dropped before the cache.
// Thread-safety: any thread may call any member, except that a change handler must not destroy
// the file it is told about. lock_buffer() never blocks.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/cache/file_cache.hpp"
#include "datapump/fs/provider.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::fs {

// Private state defined under src/: declared outside the exported region (the library's
// default, hidden), so that nothing of it is exported.
DATAPUMP_API_END
namespace detail {
struct file_state;
}  // namespace detail
DATAPUMP_API_BEGIN

class file {
public:
    file(file&&) noexcept;
    file& operator=(file&&) noexcept;
    file(const file&) = delete;
    file& operator=(const file&) = delete;
    // Stops watching, closes the cache views it registered; the provider file closes when the
    // last view or sink holding it is dropped.
    ~file();

    [[nodiscard]] const std::string& path() const;
    [[nodiscard]] open_mode mode() const;
    // The attributes recorded at open or at the last change.
    [[nodiscard]] file_info info() const;

    // The current cache view. Errors: unsupported (instance without a cache), file_changed
    // (the file was deleted).
    [[nodiscard]] result<std::shared_ptr<cache::cached_file>> cached() const;
    // Change notifications handled so far. Acquire: once it moved, cached() returns the new view.
    [[nodiscard]] std::uint64_t changes() const;
    // change_* bits of every notification so far, or-ed together.
    [[nodiscard]] std::uint32_t change_bits() const;
    // Called on the provider's watcher thread after each change has been handled.
    void on_change(std::function<void(std::uint32_t changes)> handler);

    // Blocking read through the current view (file_cache::loan_read).
    [[nodiscard]] result<std::vector<cache::read_loan>> loan_read(std::uint64_t offset, std::uint64_t length);
    // Fast path: the provider's lock_buffer, or file_cache::try_loan. Never blocks. `view` is one
    // of this file's views (callers keep it from cached() and re-take it when changes() moves).
    [[nodiscard]] result<cache::read_loan> lock_buffer(const cache::cached_file& view, std::uint64_t block) noexcept;
    void unlock_buffer(cache::read_loan loan) noexcept;

    // Forwards a play/pause/seek/speed change. Errors: the provider's; none when it has no op.
    [[nodiscard]] result<void> set_access_pattern(cache::access_pattern pattern, std::uint64_t position);
    // Byte-range locks on this open. Errors: busy (conflict), unsupported (provider has none).
    [[nodiscard]] result<void> lock_range(byte_range range, lock_kind kind);
    [[nodiscard]] result<void> unlock_range(byte_range range);

    // The provider's page-cache descriptor for sendfile()/splice() (provider_ops::send_fd); owned
    // by the file, valid while it is open. Errors: unsupported (the provider has none).
    [[nodiscard]] result<int> send_fd() const;

    // Where file bytes [offset, offset + length) live on storage (provider_ops::extent), for the
    // ingest path. Errors: unsupported (the provider has no extent op), the provider's.
    [[nodiscard]] result<storage_extent> extent(std::uint64_t offset, std::uint64_t length) const;
    // Sets the file's size to `size` and makes its bytes durable (provider_ops::finish: ftruncate
    // and fsync for the local providers). May block. Errors: unsupported (read-only provider),
    // invalid_argument (opened for read), io_error, no_space.
    [[nodiscard]] result<void> truncate_and_sync(std::uint64_t size) const;
    // Sets the size without making anything durable (provider_ops::resize): batched publishing
    // calls provider_instance::sync() once for many files. Errors: unsupported (the provider has
    // no resize/sync pair), invalid_argument (opened for read), io_error.
    [[nodiscard]] result<void> resize(std::uint64_t size) const;

    // The provider file as a block source of `size` bytes (unknown_size: no shrink check).
    [[nodiscard]] std::shared_ptr<cache::block_source> source(std::uint64_t size) const;
    // The provider file as a block sink. Errors: unsupported (read-only provider),
    // invalid_argument (opened for read).
    [[nodiscard]] result<std::shared_ptr<cache::block_sink>> sink() const;
    // A load-and-play writer of this file through the instance's cache. Errors: as sink(), and
    // unsupported without a cache.
    [[nodiscard]] result<std::unique_ptr<cache::writer>> create_writer();

private:
    friend class provider_instance;
    explicit file(std::unique_ptr<detail::file_state> state);
    std::unique_ptr<detail::file_state> state_;
};

}  // namespace datapump::fs
DATAPUMP_API_END
