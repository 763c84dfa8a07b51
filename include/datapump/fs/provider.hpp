// File: datapump/fs/provider.hpp
//
// The export registration (seed 000): what a file system hands the engine so the engine can move
// its files without copies. A provider is a C-style, versioned table of function pointers, in the
// manner of nginx's ngx_module_t and SPDK's bdev module: the table is plain data with static
// storage duration, owned by the provider; the engine keeps its own bookkeeping (use counts, the
// instance pointer, the registered flag) in its registry record, never in the table.
//
//   provider_ops (static, provider's)     registry record (engine's)
//   ┌──────────────────────────┐         ┌──────────────────────────────┐
//   │ abi_version, size, name  │ <────── │ ops, live instances (atomic) │
//   │ async_ops, init, open .. │         │ builtin?                     │
//   └──────────────────────────┘         └──────────────────────────────┘
//
// Handles are opaque to the engine: init returns an instance_handle, open a file_handle; the
// provider casts them back. Every op is noexcept and reports failure through result<>.
//
// ┌────────────────┬──────┬───────┬─────────────────────┬──────────────────────────────────────────┐
// │ op             │ req? │ sync? │ called from         │ returns / errors                         │
// ├────────────────┼──────┼───────┼─────────────────────┼──────────────────────────────────────────┤
// │ init           │ req  │ sync  │ any thread, once    │ instance; invalid_argument (bad root),   │
// │                │      │       │ per instance        │ not_found, not_regular_file, unsupported │
// │ terminate      │ req  │ sync  │ the last user, once │ - ; called only when no file is open     │
// │ validate       │ req  │ sync  │ any (may block)     │ file_info; not_found, escapes_root,      │
// │                │      │       │                     │ not_regular_file, out_of_range           │
// │ open           │ req  │ sync  │ any (may block)     │ file handle; as validate, + unsupported  │
// │                │      │       │                     │ (cannot do zero-copy on it), io_error    │
// │ close          │ req  │ sync  │ the last user, once │ - ; after unwatch; no op runs after it   │
// │ stat           │ req  │ sync  │ any (may block)     │ file_info, re-recorded; file_changed     │
// │                │      │       │                     │ when the file was deleted                │
// │ read_blocks    │ req  │ sync  │ slow path, any      │ sets every outcome (see cache/block_io); │
// │                │      │       │ thread, concurrent  │ file_changed (shrank, deleted),          │
// │                │      │       │                     │ out_of_range, io_error                   │
// │ lock_buffer    │ opt  │ sync  │ completion path:    │ read_loan; would_block on a miss. Null:  │
// │                │      │       │ must not block      │ the engine uses file_cache::try_loan     │
// │ unlock_buffer  │ opt  │ sync  │ completion path     │ - ; null: the loan is dropped            │
// │ access_pattern │ opt  │ either│ any (never blocks   │ - ; invalid_argument (speed 0). Null:    │
// │                │      │       │ long)               │ only the cache's read-ahead plan applies │
// │ write_block    │ opt* │ sync  │ the file's writer   │ -; io_error, no_buffers. Null: read-only │
// │ finish         │ opt* │ sync  │ the file's writer   │ -; io_error; data durable on success     │
// │ lock_range     │ opt* │ sync  │ any; never blocks   │ -; busy (conflict), invalid_argument     │
// │                │      │       │                     │ (exclusive on a read-only open). Null:   │
// │                │      │       │                     │ the engine reports unsupported           │
// │ unlock_range   │ opt* │ sync  │ any; never blocks   │ -; invalid_argument                      │
// │ watch          │ opt* │ async │ any; callback runs  │ -; unsupported, no_buffers (inotify      │
// │                │      │       │ on the provider's   │ limits). Callback: change_* bits; must   │
// │                │      │       │ watcher thread      │ not call unwatch or close                │
// │ unwatch        │ opt* │ sync  │ any; not from the   │ - ; once it returns the callback never   │
// │                │      │       │ callback            │ runs again for that file                 │
// │ send_fd        │ opt  │ sync  │ any                 │ page-cache descriptor; unsupported       │
// │ extent         │ opt  │ sync  │ any; never blocks   │ storage_extent of a written range (the   │
// │                │      │       │                     │ ingest path); out_of_range, unsupported  │
// │ rename         │ opt* │ sync  │ any (may block)     │ replaced?; not_found, escapes_root,      │
// │                │      │       │                     │ io_error; durable (directory synced)     │
// │                │      │       │                     │ unless rename_defer_sync; busy: `to`     │
// │                │      │       │                     │ exists and rename_no_replace             │
// │ remove         │ opt* │ sync  │ any (may block)     │ -; not_found, not_regular_file,          │
// │                │      │       │                     │ escapes_root, io_error                   │
// │ resize         │ opt* │ sync  │ the file's writer   │ -; io_error; not durable until sync      │
// │ sync           │ opt* │ sync  │ any (may block)     │ -; io_error, no_space: every change      │
// │                │      │       │                     │ beneath the root durable (syncfs)        │
// └────────────────┴──────┴───────┴─────────────────────┴──────────────────────────────────────────┘
//   opt* = optional, but in pairs: write_block+finish, lock_range+unlock_range, watch+unwatch,
//   rename+remove, resize+sync.
//   sync/async: what the engine may rely on. async_ops declares which ops complete (or report)
//   later; this engine version accepts only op_watch and op_access_pattern there.
//
// Thread-safety: the engine may call ops concurrently from several threads, for different files
// and for the same file (read_blocks, stat, lock_range, access_pattern), except that init,
// terminate and close run once, with nothing else in flight on that instance or file.
//
// Paths are relative to the instance's root and never leave it (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS): '..' escapes, absolute paths and symlinks out of the root fail with
// escapes_root.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/cache/block_io.hpp"
#include "datapump/cache/file_cache.hpp"
#include "datapump/cache/loans.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

DATAPUMP_API_BEGIN

namespace datapump::fs {

// Bumped on any incompatible change of provider_ops or the types below.
inline constexpr std::uint32_t provider_abi_version = 3;

using instance_handle = void*;
using file_handle = void*;

// provider_config::flags. Built-in providers ignore flags they do not know.
inline constexpr std::uint32_t config_no_fixed_buffers = 1U << 0;  // direct: plain reads, no registration
inline constexpr std::uint32_t config_no_io_uring = 1U << 1;       // direct: preadv, no io_uring at all

// provider_ops::rename flags.
inline constexpr std::uint32_t rename_defer_sync = 1U << 0;  // the caller makes it durable (sync)
inline constexpr std::uint32_t rename_no_replace = 1U << 1;  // an existing `to` fails it (busy)

struct provider_config {
    const char* root = nullptr;           // directory every path resolves beneath; must exist
    cache::file_cache* cache = nullptr;   // the engine's cache: its arena is where reads land; may be null
    std::uint32_t flags = 0;
};

enum class open_mode : std::uint32_t {
    read = 0,    // existing file, read-only
    write = 1,   // existing file, read-write
    create = 2,  // created (or truncated) read-write, mode 0644
    // A new file (O_EXCL: exists -> busy), read-write, mode 0644, written by the ingest path:
    // with O_DIRECT where the file system allows it (extent() says which).
    create_new = 3,
};

// Where bytes of a file live on storage, for the ingest path's own I/O (seed 003's mapping of
// file offsets to block addresses). `fd` belongs to the provider and stays valid until close().
struct storage_extent {
    int fd = -1;
    std::uint64_t device_offset = 0;  // where the extent's first byte goes on `fd`
    std::uint64_t length = 0;         // contiguous bytes from there (at least 1)
    std::uint32_t alignment = 1;      // offset/length/address alignment writes need (O_DIRECT: 4096)
};

struct byte_range {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;  // 0 = up to the end of the file
};

struct file_info {
    std::uint64_t size = 0;
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::int64_t mtime_ns = 0;
    std::uint32_t dio_alignment = 0;  // O_DIRECT offset/length alignment, 0 when O_DIRECT is impossible
    bool zero_copy = false;           // the provider can serve it through the cache arena
};

enum class lock_kind : std::uint32_t { shared = 0, exclusive = 1 };

// Bits passed to a change callback (several may be set at once).
inline constexpr std::uint32_t change_modified = 1U << 0;
inline constexpr std::uint32_t change_truncated = 1U << 1;  // the size went down
inline constexpr std::uint32_t change_renamed = 1U << 2;
inline constexpr std::uint32_t change_deleted = 1U << 3;    // the last name is gone

using change_fn = void (*)(void* context, std::uint32_t changes) noexcept;

// Bits of provider_ops::async_ops.
inline constexpr std::uint32_t op_read_blocks = 1U << 0;
inline constexpr std::uint32_t op_write_block = 1U << 1;
inline constexpr std::uint32_t op_access_pattern = 1U << 2;
inline constexpr std::uint32_t op_watch = 1U << 3;
inline constexpr std::uint32_t engine_async_ops = op_access_pattern | op_watch;

// read_blocks' file_size when the file is being written and has no expected size yet.
inline constexpr std::uint64_t unknown_size = ~std::uint64_t{0};

struct provider_ops {
    std::uint32_t abi_version;  // provider_abi_version the provider was built against
    std::uint32_t size;         // sizeof(provider_ops) at the provider's build time
    const char* name;           // unique, [a-z0-9_-]
    const char* description;
    std::uint32_t async_ops;    // op_* bits: ops that complete or report asynchronously

    result<instance_handle> (*init)(const provider_config& config) noexcept;
    void (*terminate)(instance_handle instance) noexcept;
    result<file_info> (*validate)(instance_handle instance, const char* path, byte_range range) noexcept;
    result<file_handle> (*open)(instance_handle instance, const char* path, open_mode mode) noexcept;
    void (*close)(file_handle file) noexcept;
    result<file_info> (*stat)(file_handle file) noexcept;
    // `file_size`: the size of the cache view reading (unknown_size for a file being written);
    // a block that should be full but is short means the file shrank: file_changed.
    void (*read_blocks)(file_handle file, std::uint64_t file_size, std::span<cache::block_read> reads) noexcept;

    result<cache::read_loan> (*lock_buffer)(file_handle file, cache::file_cache& cache,
                                            const cache::cached_file& view, std::uint64_t block) noexcept;
    void (*unlock_buffer)(file_handle file, cache::read_loan loan) noexcept;
    result<void> (*access_pattern)(file_handle file, cache::access_pattern pattern, std::uint64_t position) noexcept;
    result<void> (*write_block)(file_handle file, std::uint64_t offset, std::span<const std::byte> bytes,
                                std::uint32_t buffer_index) noexcept;
    result<void> (*finish)(file_handle file, std::uint64_t size) noexcept;
    result<void> (*lock_range)(file_handle file, byte_range range, lock_kind kind) noexcept;
    result<void> (*unlock_range)(file_handle file, byte_range range) noexcept;
    result<void> (*watch)(instance_handle instance, file_handle file, void* context, change_fn callback) noexcept;
    void (*unwatch)(instance_handle instance, file_handle file) noexcept;
    // Optional, sync, any thread. A descriptor of `file` that the engine may hand to sendfile()
    // or splice() to send its bytes from the page cache without copying them through the arena.
    // The provider keeps ownership; it stays valid until close(). Absent (or unsupported) when
    // the provider's bytes do not live in the page cache (O_DIRECT, a synthetic source): the
    // engine then sends cache loans.
    result<int> (*send_fd)(file_handle file) noexcept;
    // Optional, sync, never blocks. The storage extent holding file bytes [offset, offset +
    // length) — or its first part, when they are not contiguous on storage. The engine writes
    // there itself (io_uring, fixed buffers). Null: the file cannot be ingested into (unsupported).
    result<storage_extent> (*extent)(file_handle file, std::uint64_t offset, std::uint64_t length) noexcept;
    // Optional pair, sync, may block. rename: `from` replaces `to` atomically (both beneath the
    // root, same directory or not), then the directory is made durable unless `flags` has
    // rename_defer_sync (the caller then calls sync); returns true when an existing `to` was
    // replaced, whose permission bits and owner `from` takes first (the owner where the process
    // may set it, e.g. as root). remove: unlinks a regular file.
    result<bool> (*rename)(instance_handle instance, const char* from, const char* to, std::uint32_t flags) noexcept;
    result<void> (*remove)(instance_handle instance, const char* path) noexcept;
    // Optional pair, sync, may block: batched durability (docs/ingest.md, "Publishing"). resize:
    // sets the size of a file opened for writing, without making anything durable. sync: makes
    // every change beneath the root durable — file bytes, sizes and names — in one call (syncfs
    // for the local providers). finish on each file, then rename without the flag, is the same
    // per file.
    result<void> (*resize)(file_handle file, std::uint64_t size) noexcept;
    result<void> (*sync)(instance_handle instance) noexcept;
};

}  // namespace datapump::fs
DATAPUMP_API_END
