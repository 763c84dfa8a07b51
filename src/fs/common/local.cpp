#include "common/local.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace datapump::fs::local {

namespace {
constexpr std::uint64_t dio_align = 4096;  // arena buffers and blocks are page aligned

int flags_for(open_mode mode) {
    switch (mode) {
        case open_mode::read: return O_RDONLY;
        case open_mode::write: return O_RDWR;
        case open_mode::create: return O_RDWR | O_CREAT | O_TRUNC;
        case open_mode::create_new: return O_RDWR | O_CREAT | O_EXCL;
    }
    return O_RDONLY;
}

flock make_lock(short type, byte_range range) {
    flock l{};
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = static_cast<off_t>(range.offset);
    l.l_len = static_cast<off_t>(range.length);  // 0 = to the end of the file, and beyond
    l.l_pid = 0;                                 // required by F_OFD_*
    return l;
}
// A new version takes the place of the old one with the old one's permissions and owner: a
// private (0600) file stays private, and a file that belonged to someone else still does (the
// owner only when we may give files away: as root, CAP_CHOWN). Owner first: chown clears the
// set-user/group-ID bits, chmod puts them back. `to` not a regular file: nothing to keep.
result<void> keep_attributes(int from_dir, const char* from, int to_dir, const char* to) {
    struct stat old {};
    if (::fstatat(to_dir, to, &old, AT_SYMLINK_NOFOLLOW) != 0) {
        return errno == ENOENT ? result<void>{} : fail_errno("rename: fstatat of the file replaced");
    }
    if (!S_ISREG(old.st_mode)) {
        return {};
    }
    struct stat mine {};
    if (::fstatat(from_dir, from, &mine, AT_SYMLINK_NOFOLLOW) != 0) {
        return fail_errno("rename: fstatat of the new version");
    }
    if ((mine.st_uid != old.st_uid || mine.st_gid != old.st_gid) &&
        ::fchownat(from_dir, from, old.st_uid, old.st_gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM) {
        return fail_errno("rename: fchownat to the replaced file's owner");
    }
    if (::fchmodat(from_dir, from, old.st_mode & 07777, 0) != 0) {
        return fail_errno("rename: fchmodat to the replaced file's mode");
    }
    return {};
}
}  // namespace

result<void> init_root(local_root& r, const provider_config& config) {
    auto root = open_root(config.root);
    if (!root) {
        return std::unexpected(root.error());
    }
    r.root = std::move(*root);
    r.root_path = config.root;
    r.cache = config.cache;
    r.flags = config.flags;
    return {};
}

result<file_info> validate(local_root& r, const char* path, byte_range range, int extra_flags) {
    auto fd = open_regular(r.root.get(), path, O_RDONLY | extra_flags);
    if (!fd) {
        return std::unexpected(fd.error());
    }
    auto info = info_of(fd->get());
    if (!info) {
        return info;
    }
    if (auto ok = check_range(*info, range); !ok) {
        return std::unexpected(ok.error());
    }
    return info;
}

result<std::unique_ptr<local_file>> open_file(local_root& r, const char* path, open_mode mode, int extra_flags) {
    if (mode == open_mode::create_new) {
        // Written by the ingest path with O_DIRECT where the file system allows it: probe with
        // it first (an O_EXCL create that fails with EINVAL created nothing), then without.
        extra_flags |= O_DIRECT;
    }
    file_info opened{};
    auto fd = open_regular(r.root.get(), path, flags_for(mode) | extra_flags, 0644, &opened);
    if (!fd && mode == open_mode::create_new && fd.error().code == errc::unsupported &&
        fd.error().sys == EINVAL) {
        extra_flags &= ~O_DIRECT;
        fd = open_regular(r.root.get(), path, flags_for(mode) | extra_flags, 0644, &opened);
    }
    if (!fd) {
        if (fd.error().sys == EEXIST) {
            return fail(errc::busy, "open: the file already exists", EEXIST);
        }
        return std::unexpected(fd.error());
    }
    auto f = std::make_unique<local_file>();
    f->owner = &r;
    f->fd = std::move(*fd);
    f->mode = mode;
    f->direct = (extra_flags & O_DIRECT) != 0;
    f->opened = opened;
    return f;
}

void close_file(file_handle f) noexcept { delete as_file(f); }

result<int> page_cache_fd(file_handle h) noexcept {
    local_file& f = *as_file(h);
    if (!f.direct || f.buffered.load(std::memory_order_acquire)) {
        return f.fd.get();
    }
    // Two threads may both get here: clearing the flag twice is harmless.
    const int flags = ::fcntl(f.fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(f.fd.get(), F_SETFL, flags & ~O_DIRECT) != 0) {
        return fail_errno("page-cache descriptor: fcntl F_SETFL without O_DIRECT");
    }
    f.buffered.store(true, std::memory_order_release);
    return f.fd.get();
}

result<file_info> stat_file(file_handle h) noexcept {
    local_file& f = *as_file(h);
    auto info = f.opened ? result<file_info>(*f.opened) : info_of(f.fd.get());
    f.opened.reset();
    if (!info) {
        return info;
    }
    info->dio_alignment = f.direct ? static_cast<std::uint32_t>(dio_align) : 0;
    f.size.store(info->size, std::memory_order_relaxed);
    return info;
}

result<void> lock_range(file_handle h, byte_range range, lock_kind kind) noexcept {
    local_file& f = *as_file(h);
    if (kind == lock_kind::exclusive && f.mode == open_mode::read) {
        return fail(errc::invalid_argument, "lock_range: an exclusive lock needs a file opened for writing");
    }
    // OFD locks belong to this open (not to the process), so two opens in one process conflict
    // as two processes would, and closing another descriptor never drops them.
    flock l = make_lock(kind == lock_kind::exclusive ? F_WRLCK : F_RDLCK, range);
    if (::fcntl(f.fd.get(), F_OFD_SETLK, &l) != 0) {
        const int e = errno;
        if (e == EAGAIN || e == EACCES) {
            return fail(errc::busy, "lock_range: another open holds a conflicting lock", e);
        }
        return fail_errno("lock_range: fcntl(F_OFD_SETLK)", e);
    }
    return {};
}

result<void> unlock_range(file_handle h, byte_range range) noexcept {
    flock l = make_lock(F_UNLCK, range);
    if (::fcntl(as_file(h)->fd.get(), F_OFD_SETLK, &l) != 0) {
        return fail_errno("unlock_range: fcntl(F_OFD_SETLK)");
    }
    return {};
}

result<void> watch(instance_handle i, file_handle h, void* context, change_fn callback) noexcept {
    auto* r = static_cast<local_root*>(i);
    watcher* w = nullptr;
    {
        std::lock_guard lock(r->watcher_mutex);
        if (r->changes == nullptr) {
            auto started = watcher::start();
            if (!started) {
                return std::unexpected(started.error());
            }
            r->changes = std::move(*started);
        }
        w = r->changes.get();
    }
    return w->add(h, as_file(h)->fd.get(), context, callback);
}

void unwatch(instance_handle i, file_handle h) noexcept {
    auto* r = static_cast<local_root*>(i);
    watcher* w = nullptr;
    {
        std::lock_guard lock(r->watcher_mutex);
        w = r->changes.get();
    }
    if (w != nullptr) {
        w->remove(h);
    }
}

result<void> record_pattern(local_file& f, cache::access_pattern pattern, std::uint64_t position) {
    if (pattern.speed == 0) {
        return fail(errc::invalid_argument, "access_pattern: speed must be at least 1");
    }
    f.pattern_mode.store(static_cast<std::uint32_t>(pattern.mode), std::memory_order_relaxed);
    f.pattern_speed.store(pattern.speed, std::memory_order_relaxed);
    f.pattern_position.store(position, std::memory_order_relaxed);
    return {};
}

bool check_not_deleted(const local_file& f, std::span<cache::block_read> reads) {
    // An unlinked file keeps its bytes while it is open: a view opened before a deletion, or
    // before an upload was renamed over the name, keeps reading the version it opened (new opens
    // see the change: fs::file::cached() fails with file_changed once the watcher reports it).
    struct stat st {};
    if (::fstat(f.fd.get(), &st) == 0) {
        return true;
    }
    const int e = errno;
    for (auto& r : reads) {
        r.outcome = fail(errc::io_error, "read: fstat of the open file", e);
    }
    return false;
}

void complete_block(const local_file& f, std::uint64_t file_size, cache::block_read& r, std::uint32_t got) {
    const std::uint64_t cap = r.dst.size();
    std::uint64_t expected = cap;
    if (file_size != unknown_size) {
        if (r.offset >= file_size) {
            r.outcome = fail(errc::out_of_range, "read: block past the end of the file");
            return;
        }
        expected = std::min(cap, file_size - r.offset);
    }
    std::uint64_t have = got;
    while (have < expected) {
        // O_DIRECT needs an aligned offset, address and length: after an unaligned amount the
        // file has ended (only the last read of a file is unaligned).
        if (f.direct && have % dio_align != 0) {
            break;
        }
        const ssize_t n = ::pread(f.fd.get(), r.dst.data() + have, static_cast<std::size_t>(cap - have),
                                  static_cast<off_t>(r.offset + have));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            r.outcome = fail_errno("read: pread");
            return;
        }
        if (n == 0) {
            break;
        }
        have += static_cast<std::uint64_t>(n);
    }
    if (file_size == unknown_size) {
        r.outcome = static_cast<std::uint32_t>(have);
    } else if (have < expected) {
        r.outcome = fail(errc::file_changed, "read: the file shrank under the read");
    } else {
        // A file that grew past its view still yields only the view's bytes.
        r.outcome = static_cast<std::uint32_t>(expected);
    }
}

result<void> write_all(int fd, std::uint64_t offset, std::span<const std::byte> bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail_errno("write: pwrite");
        }
        done += static_cast<std::size_t>(n);
    }
    return {};
}

result<storage_extent> extent(file_handle h, std::uint64_t offset, std::uint64_t length) noexcept {
    const local_file& f = *as_file(h);
    if (f.mode == open_mode::read) {
        return fail(errc::invalid_argument, "extent: the file was opened for reading");
    }
    if (length == 0 || offset > ~std::uint64_t{0} - length) {
        return fail(errc::out_of_range, "extent: empty or overflowing range");
    }
    // A local file is its own storage: the same offsets on its own descriptor.
    return storage_extent{.fd = f.fd.get(),
                          .device_offset = offset,
                          .length = length,
                          .alignment = f.direct ? static_cast<std::uint32_t>(dio_align) : 1U};
}

result<bool> rename(instance_handle i, const char* from, const char* to, std::uint32_t flags) noexcept {
    auto& r = *static_cast<local_root*>(i);
    auto src = split_last(from);
    auto dst = split_last(to);
    if (!src || !dst) {
        return fail(errc::invalid_argument, "rename: a path without a file name");
    }
    auto src_dir = open_directory(r.root.get(), src->directory.c_str());
    if (!src_dir) {
        return std::unexpected(src_dir.error());
    }
    auto dst_dir = open_directory(r.root.get(), dst->directory.c_str());
    if (!dst_dir) {
        return std::unexpected(dst_dir.error());
    }
    bool replaced = false;
    // RENAME_NOREPLACE first, so the caller learns whether a file was replaced without a racy
    // stat; on EEXIST a plain rename replaces it atomically.
    if (::renameat2(src_dir->get(), src->name.c_str(), dst_dir->get(), dst->name.c_str(), RENAME_NOREPLACE) != 0) {
        const int e = errno;
        if (e != EEXIST && e != EINVAL) {
            return fail_errno("rename: renameat2", e);
        }
        if ((flags & rename_no_replace) != 0) {
            // EINVAL: the file system has no RENAME_NOREPLACE; refusing is the safe answer.
            return fail(errc::busy, e == EEXIST ? "rename: the target exists"
                                                : "rename: the file system cannot rename without replacing");
        }
        if (e == EEXIST) {
            if (auto kept = keep_attributes(src_dir->get(), src->name.c_str(), dst_dir->get(), dst->name.c_str());
                !kept) {
                return std::unexpected(kept.error());
            }
        }
        if (::renameat(src_dir->get(), src->name.c_str(), dst_dir->get(), dst->name.c_str()) != 0) {
            return fail_errno("rename: renameat");
        }
        replaced = e == EEXIST;
    }
    if ((flags & rename_defer_sync) != 0) {
        return replaced;  // the caller's sync() makes it durable
    }
    // The new name is durable once its directory is.
    if (::fsync(dst_dir->get()) != 0) {
        return fail_errno("rename: fsync of the directory");
    }
    if (src->directory != dst->directory && ::fsync(src_dir->get()) != 0) {
        return fail_errno("rename: fsync of the source directory");
    }
    return replaced;
}

result<void> remove(instance_handle i, const char* path) noexcept {
    auto& r = *static_cast<local_root*>(i);
    auto where = split_last(path);
    if (!where) {
        return std::unexpected(where.error());
    }
    auto dir = open_directory(r.root.get(), where->directory.c_str());
    if (!dir) {
        return std::unexpected(dir.error());
    }
    struct stat st {};
    if (::fstatat(dir->get(), where->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return fail_errno("remove: fstatat");
    }
    if (!S_ISREG(st.st_mode)) {
        return fail(errc::not_regular_file, "remove: not a regular file");
    }
    if (::unlinkat(dir->get(), where->name.c_str(), 0) != 0) {
        return fail_errno("remove: unlinkat");
    }
    return {};
}

result<void> resize(file_handle f, std::uint64_t size) noexcept {
    const auto& file = *static_cast<local_file*>(f);
    if (file.mode == open_mode::read) {
        return fail(errc::invalid_argument, "resize: the file was opened for reading");
    }
    if (::ftruncate(file.fd.get(), static_cast<off_t>(size)) != 0) {
        return fail_errno("resize: ftruncate");
    }
    return {};
}

result<void> sync(instance_handle i) noexcept {
    const auto& r = *static_cast<local_root*>(i);
    auto dir = open_directory(r.root.get(), ".");  // the root handle is O_PATH: syncfs needs a real one
    if (!dir) {
        return std::unexpected(dir.error());
    }
    // One call for every file and directory of the root's file system (Linux >= 5.8 reports
    // write-back errors here too).
    if (::syncfs(dir->get()) != 0) {
        return fail_errno("sync: syncfs");
    }
    return {};
}

result<void> truncate_and_sync(int fd, std::uint64_t size) {
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
        return fail_errno("finish: ftruncate");
    }
    if (::fsync(fd) != 0) {
        return fail_errno("finish: fsync");
    }
    return {};
}

}  // namespace datapump::fs::local
