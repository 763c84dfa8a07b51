// File: src/fs/common/local.hpp
//
// What the two local providers (posix, direct) share: the instance's root and lazily started
// change watcher, the provider file record, and the ops that are the same for both (close, stat,
// range locks, watch), plus the rule that turns a block read into its outcome.
//
//   local_root  one instance: root directory fd, the cache (may be null), flags, the watcher
//   local_file  one open: fd, mode, the size recorded at open/stat, the last access pattern
//
// Thread-safety: a local_file's fd is used concurrently (pread, io_uring, fcntl are safe on one
// descriptor); its atomics say how they are used. local_root's watcher is created under
// watcher_mutex.
#pragma once

#include "common/paths.hpp"
#include "common/watcher.hpp"

#include "datapump/cache/block_io.hpp"
#include "datapump/fs/provider.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace datapump::fs::local {

struct local_root {
    unique_fd root;
    std::string root_path;
    cache::file_cache* cache = nullptr;
    std::uint32_t flags = 0;
    std::mutex watcher_mutex;              // guards the creation of `changes`
    std::unique_ptr<watcher> changes;      // started by the first watch
};

struct local_file {
    local_root* owner = nullptr;
    unique_fd fd;
    open_mode mode = open_mode::read;
    bool direct = false;
    // A direct file now read through the page cache: page_cache_fd() cleared its O_DIRECT.
    std::atomic<bool> buffered{false};
    // Size recorded at open and by each stat. Relaxed: an informational snapshot; reads check
    // against the size their cache view was opened with, not this.
    std::atomic<std::uint64_t> size{0};
    // The attributes open_regular saw: the first stat after the open answers with them instead
    // of another fstat (the open's own inode check made one a moment ago).
    std::optional<file_info> opened;
    // The access pattern last reported (for diagnosis and tests). Relaxed: informational.
    std::atomic<std::uint32_t> pattern_mode{0};
    std::atomic<std::uint32_t> pattern_speed{1};
    std::atomic<std::uint64_t> pattern_position{0};
};

[[nodiscard]] inline local_file* as_file(file_handle f) { return static_cast<local_file*>(f); }

// Builds the shared part of an instance. Errors: those of open_root.
[[nodiscard]] result<void> init_root(local_root& r, const provider_config& config);

// validate(): opens `path` beneath the root with `extra_flags` (O_DIRECT or 0), records its
// attributes and checks `range`. Errors: those of open_regular, info_of and check_range.
[[nodiscard]] result<file_info> validate(local_root& r, const char* path, byte_range range, int extra_flags);

// open(): resolves beneath the root with the flags for `mode` plus `extra_flags` (O_DIRECT).
[[nodiscard]] result<std::unique_ptr<local_file>> open_file(local_root& r, const char* path, open_mode mode,
                                                            int extra_flags);

void close_file(file_handle f) noexcept;
// The file's descriptor, reading through the page cache: a file opened with O_DIRECT has it
// cleared on the first call (fcntl F_SETFL on this open's own file description; the file is then
// read through the page cache by every user of it — reads through the cache stay correct, they
// are aligned either way). For sendfile: small files on the loan paths (--direct-min-size).
// Errors: io_error (fcntl failed).
[[nodiscard]] result<int> page_cache_fd(file_handle f) noexcept;
[[nodiscard]] result<file_info> stat_file(file_handle f) noexcept;
[[nodiscard]] result<void> lock_range(file_handle f, byte_range range, lock_kind kind) noexcept;
[[nodiscard]] result<void> unlock_range(file_handle f, byte_range range) noexcept;
[[nodiscard]] result<void> watch(instance_handle i, file_handle f, void* context, change_fn callback) noexcept;
void unwatch(instance_handle i, file_handle f) noexcept;
// The file's own descriptor at the same offsets (alignment 4096 when opened O_DIRECT).
[[nodiscard]] result<storage_extent> extent(file_handle f, std::uint64_t offset, std::uint64_t length) noexcept;
// Namespace ops beneath the root (see provider_ops::rename / remove).
[[nodiscard]] result<bool> rename(instance_handle i, const char* from, const char* to, std::uint32_t flags) noexcept;
[[nodiscard]] result<void> remove(instance_handle i, const char* path) noexcept;
// Batched durability (see provider_ops::resize / sync): ftruncate; syncfs of the root's file system.
[[nodiscard]] result<void> resize(file_handle f, std::uint64_t size) noexcept;
[[nodiscard]] result<void> sync(instance_handle i) noexcept;
[[nodiscard]] result<void> record_pattern(local_file& f, cache::access_pattern pattern, std::uint64_t position);

// Before a batch: fails every read with io_error when the open file cannot even be stat'ed.
// Returns false when it did so. A deleted (unlinked) file is still readable: its old readers
// finish on the version they opened.
[[nodiscard]] bool check_not_deleted(const local_file& f, std::span<cache::block_read> reads);

// Finishes block read `r` of which `got` bytes are in: keeps reading with pread until the bytes
// the view expects are there or the file ends, then sets r.outcome (see cache/block_io.hpp):
// the expected count, file_changed when the file ended early (it shrank), out_of_range for a
// block past the view's end, io_error when pread fails. `direct` keeps every pread aligned.
void complete_block(const local_file& f, std::uint64_t file_size, cache::block_read& r, std::uint32_t got);

// Writes all of `bytes` at `offset` with pwrite (retrying short writes). Errors: io_error.
[[nodiscard]] result<void> write_all(int fd, std::uint64_t offset, std::span<const std::byte> bytes);
// ftruncate to `size`, then fsync. Errors: io_error.
[[nodiscard]] result<void> truncate_and_sync(int fd, std::uint64_t size);

}  // namespace datapump::fs::local
