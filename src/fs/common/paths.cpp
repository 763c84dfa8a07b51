#include "paths.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace datapump::fs::local {

namespace {

// openat2 has no glibc wrapper on Debian 12 (glibc 2.36).
result<unique_fd> open_beneath(int root_fd, const char* path, std::uint64_t flags, mode_t mode) {
    if (path == nullptr || path[0] == '\0') {
        return fail(errc::invalid_argument, "open: empty path");
    }
    open_how how{};
    how.flags = flags | O_CLOEXEC;
    how.mode = (flags & O_CREAT) != 0 ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    // EAGAIN: a rename raced the walk (the kernel refuses to guess); a few retries settle it.
    for (int attempt = 0; attempt < 8; ++attempt) {
        const long fd = ::syscall(SYS_openat2, root_fd, path, &how, sizeof how);
        if (fd >= 0) {
            return unique_fd(static_cast<int>(fd));
        }
        const int e = errno;
        switch (e) {
            case EAGAIN: continue;
            case EXDEV:
            case ELOOP: return fail(errc::escapes_root, "open: path resolves outside the provider root", e);
            case ENOENT:
            case ENOTDIR: return fail(errc::not_found, "open: no such file", e);
            case EISDIR:
            case ENXIO: return fail(errc::not_regular_file, "open: not a regular file", e);
            case ENOSYS: return fail(errc::unsupported, "open: kernel lacks openat2", e);
            default: return fail_errno("open: openat2", e);
        }
    }
    return fail(errc::busy, "open: path kept changing during resolution", EAGAIN);
}

}  // namespace

result<unique_fd> open_root(const char* root) {
    if (root == nullptr || root[0] == '\0') {
        return fail(errc::invalid_argument, "provider init: no root directory given");
    }
    unique_fd fd(::open(root, O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
        const int e = errno;
        if (e == ENOTDIR) {
            return fail(errc::not_regular_file, "provider init: root is not a directory", e);
        }
        return fail_errno("provider init: open root", e);
    }
    return fd;
}

namespace {

result<unique_fd> open_regular_once(int root_fd, const char* path, int flags, mode_t mode, file_info* opened) {
    struct stat first {};
    const bool creating = (flags & O_CREAT) != 0;
    if (!creating) {
        auto probe = open_beneath(root_fd, path, O_PATH, 0);
        if (!probe) {
            return std::unexpected(probe.error());
        }
        if (::fstat(probe->get(), &first) != 0) {
            return fail_errno("open: fstat");
        }
        if (!S_ISREG(first.st_mode)) {
            return fail(errc::not_regular_file, "open: not a regular file (directory, device, fifo or socket)");
        }
    }
    // O_NONBLOCK only while opening: if the name was swapped for a fifo since the check, the
    // open must not hang. It is cleared below (io_uring answers EAGAIN on O_NONBLOCK files).
    auto fd = open_beneath(root_fd, path, static_cast<std::uint64_t>(flags | O_NONBLOCK), mode);
    if (!fd) {
        if (fd.error().sys == EINVAL && (flags & O_DIRECT) != 0) {
            return fail(errc::unsupported, "open: the file system does not support O_DIRECT", EINVAL);
        }
        return std::unexpected(fd.error());
    }
    struct stat now {};
    if (::fstat(fd->get(), &now) != 0) {
        return fail_errno("open: fstat");
    }
    if (!S_ISREG(now.st_mode)) {
        return fail(errc::not_regular_file, "open: not a regular file (directory, device, fifo or socket)");
    }
    if (!creating && (now.st_dev != first.st_dev || now.st_ino != first.st_ino)) {
        return fail(errc::file_changed, "open: the file was replaced while being opened");
    }
    // F_SETFL changes only the status flags (O_APPEND, O_DIRECT, O_NOATIME, O_NONBLOCK, ...) and
    // ignores the rest: `flags` as opened, without O_NONBLOCK, is the state wanted.
    if (::fcntl(fd->get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
        return fail_errno("open: fcntl(F_SETFL)");
    }
    if (opened != nullptr) {
        auto info = info_from(now);
        if (!info) {
            return std::unexpected(info.error());
        }
        *opened = *info;
    }
    return fd;
}

}  // namespace

result<unique_fd> open_regular(int root_fd, const char* path, int flags, mode_t mode, file_info* opened) {
    // A replacement racing the open (a rename over the name between the check and the open, or
    // just after it: the inode opened has no link left) settles at once: open the name again, as
    // a request arriving a moment later would.
    for (int attempt = 0;; ++attempt) {
        auto fd = open_regular_once(root_fd, path, flags, mode, opened);
        if (fd || fd.error().code != errc::file_changed || attempt == 7) {
            return fd;
        }
    }
}

result<unique_fd> open_directory(int root_fd, const char* path) {
    if (path == nullptr || path[0] == '\0' || std::string_view(path) == ".") {
        return open_beneath(root_fd, ".", O_RDONLY | O_DIRECTORY, 0);
    }
    auto fd = open_beneath(root_fd, path, O_RDONLY | O_DIRECTORY, 0);
    if (!fd && fd.error().sys == ENOTDIR) {
        return fail(errc::not_regular_file, "open: not a directory", ENOTDIR);
    }
    return fd;
}

result<split_path> split_last(const char* path) {
    const std::string_view p = path == nullptr ? std::string_view() : std::string_view(path);
    const std::size_t slash = p.rfind('/');
    split_path out;
    if (slash == std::string_view::npos) {
        out.name = std::string(p);
    } else {
        out.directory = std::string(p.substr(0, slash));
        out.name = std::string(p.substr(slash + 1));
    }
    if (out.name.empty() || out.name == "." || out.name == "..") {
        return fail(errc::invalid_argument, "path: no file name at its end");
    }
    return out;
}

result<file_info> info_of(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return fail_errno("stat: fstat");
    }
    return info_from(st);
}

result<file_info> info_from(const struct ::stat& st) {
    if (st.st_nlink == 0) {
        return fail(errc::file_changed, "stat: the file was deleted");
    }
    file_info info;
    info.size = static_cast<std::uint64_t>(st.st_size);
    info.device = st.st_dev;
    info.inode = st.st_ino;
    info.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    info.zero_copy = true;
    return info;
}

result<void> check_range(const file_info& info, byte_range range) {
    if (range.offset > info.size) {
        return fail(errc::out_of_range, "validate: offset past the end of the file");
    }
    if (range.length > info.size - range.offset) {
        return fail(errc::out_of_range, "validate: range runs past the end of the file");
    }
    return {};
}

}  // namespace datapump::fs::local
