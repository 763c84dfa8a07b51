// File: datapump/fs/open_cache.hpp
//
// Open files of one local provider instance kept open between requests, by path: the daemon's
// equivalent of nginx's `open_file_cache`, without its staleness. A hit costs one non-blocking
// read of an inotify descriptor (nothing pending, almost always) and a map look-up, instead of
// the five to seven system calls of a checked open (docs/daemon.md, "Open-file cache").
//
//   open(path) ──> its shard (by path): drain the shard's inotify queue (apply every change the
//                  kernel has queued)
//              ──> hit: the shared fs::file        miss: watch each folder of the path (before
//                                                        anything of it is resolved), open, keep
//   the kernel queues: a folder's child changed (written, truncated, attributes, created,
//   deleted, renamed from or to) ──> that path and everything beneath it is forgotten;
//   a watched folder itself went away ──> everything beneath it is forgotten; queue overflow
//   ──> everything is forgotten.
//
// Why it is exact: inotify queues an event before the system call that made the change returns,
// and every look-up first applies what is queued, so a request that starts after a change was
// made (by anyone: our own publish, cp, rsync, mv) never gets the file as it was before. A
// folder is watched before the name beneath it is resolved, so nothing can change between the
// open and its watch unseen. What inotify does not report is covered by `valid`: a change made
// through another hard link of the file (in a folder not watched) and writes through a shared
// mapping (they send no event). The bytes themselves are always the file's current page cache
// (sendfile reads the inode); what could be stale is the size, the ETag and the type.
//
// Only files up to `max_size` are kept (see open_cache_config). A file that cannot be watched (the inotify watch limit, no /proc) is opened and served but not
// kept (counted as `unwatched`). Errors are never kept: a missing file is looked for each time.
//
// Ownership: an entry holds an fs::file (one descriptor and its provider instance's use count)
// until it is forgotten or evicted; a request that got it keeps it open to its last byte.
// The instance and the root descriptor must outlive the cache.
// Thread-safety: every member may be called from any thread (a mutex per shard; the opens
// themselves run outside it).
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/fs/file.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::fs {

class provider_instance;

struct open_cache_config {
    // Entries kept by all shards together; when every place is taken, the least recently used
    // entry of the shard that needs one goes first.
    std::size_t max_files = 16384;
    std::chrono::milliseconds valid{60'000};     // an entry older than this is opened anew
    // Larger files are opened for each request and not kept: their open costs little beside their
    // transfer, and a long stream's read-ahead state and access hints (pause, fast-forward) belong
    // to its own open file (the kernel keeps read-ahead per open file).
    std::uint64_t max_size = std::uint64_t{1} << 20;
    // Paths are spread over this many shards, each with its own lock, LRU order and inotify
    // instance (fs.inotify.max_user_instances is 128 by default); max_files bounds their sum:
    // look-ups of two threads seldom wait for each other. 1..64.
    std::size_t shards = 16;
};

struct open_cache_counters {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t forgotten = 0;  // entries dropped because their file or a folder changed
    std::uint64_t evicted = 0;    // entries dropped for room or age
    std::uint64_t unwatched = 0;  // opens served without being kept (their folder could not be watched)
    std::uint64_t files = 0;      // entries now
    std::uint64_t watches = 0;    // inotify watches held now (a folder is watched by each shard keeping a file in it)
};

class open_cache {
public:
    // `instance`: the provider instance files are opened with (read mode); `root_fd`: a
    // descriptor of the folder it serves (O_PATH is enough). Both outlive the cache.
    // Errors: invalid_argument (max_files 0, shards out of range), no_buffers (inotify instance
    // limit), io_error.
    [[nodiscard]] static result<std::unique_ptr<open_cache>> create(provider_instance& instance, int root_fd,
                                                                     open_cache_config config);
    open_cache(const open_cache&) = delete;
    open_cache& operator=(const open_cache&) = delete;
    ~open_cache();

    // The file at `path` (relative to the root, as provider_instance::open takes it), open for
    // reading: shared with earlier requests while it is unchanged. Errors: provider_instance::open's.
    [[nodiscard]] result<std::shared_ptr<file>> open(std::string_view path);
    // Forgets everything (a reload moved the root; shutdown).
    void clear();
    [[nodiscard]] open_cache_counters counters() const;

private:
    struct state;
    explicit open_cache(std::unique_ptr<state> s);
    std::unique_ptr<state> state_;
};

}  // namespace datapump::fs

DATAPUMP_API_END
