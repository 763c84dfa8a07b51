#include "datapump/ingest/upload_names.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

namespace datapump::ingest {

namespace {

constexpr std::string_view marker = ".dp-upload-";

std::string_view last_component(std::string_view path) {
    const std::size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// nftw has no context pointer: the walk is serialised and its state lives here.
std::mutex walk_mutex;
std::uint64_t walk_removed = 0;
std::uint64_t walk_kept = 0;
int walk_error = 0;

// A whole-file OFD lock of `type` on `fd`, without waiting. OFD locks belong to the open file
// description: they conflict between two opens in one process too, and end when it is closed.
int try_lock(int fd, short type) {
    struct flock l {};
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = 0;
    l.l_len = 0;  // the whole file
    return ::fcntl(fd, F_OFD_SETLK, &l);
}

void remove_if_unlocked(const char* path) {
    const int fd = ::open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) {
            walk_error = errno;
        }
        return;
    }
    // A live writer holds a write lock (create_temp): the read lock is refused and its file left.
    // Held through the unlink, so a writer that created the name just now fails to lock it and
    // takes another name (create_temp), never writing into an unlinked file.
    if (try_lock(fd, F_RDLCK) != 0) {
        if (errno == EAGAIN || errno == EACCES) {
            ++walk_kept;
        } else {
            walk_error = errno;
        }
        ::close(fd);
        return;
    }
    if (::unlink(path) == 0) {
        ++walk_removed;
    } else if (errno != ENOENT) {
        walk_error = errno;
    }
    ::close(fd);
}

int visit(const char* path, const struct stat* st, int type, struct FTW* /*where*/) {
    if (type == FTW_F && S_ISREG(st->st_mode) && is_temp_name(path)) {
        remove_if_unlocked(path);
    }
    return 0;
}

}  // namespace

std::string temp_name(std::string_view path) {
    static std::atomic<std::uint64_t> next{0};
    const std::size_t slash = path.rfind('/');
    const std::string_view dir = slash == std::string_view::npos ? std::string_view() : path.substr(0, slash + 1);
    const std::string_view name = last_component(path);
    std::string tail(marker);
    tail += std::to_string(::getpid());
    tail += '-';
    tail += std::to_string(next.fetch_add(1, std::memory_order_relaxed));
    // A name component is at most NAME_MAX (255) bytes: a long target name is shortened in its
    // temp name (the counter keeps temp names unique).
    constexpr std::size_t name_max = 255;
    const std::size_t room = name_max - 1 - tail.size();
    std::string out(dir);
    out += '.';
    out += name.substr(0, std::min(name.size(), room));
    out += tail;
    return out;
}

bool is_temp_name(std::string_view path) {
    const std::string_view name = last_component(path);
    if (name.size() < 2 || name.front() != '.') {
        return false;
    }
    const std::size_t at = name.rfind(marker);
    if (at == std::string_view::npos || at < 2) {
        return false;
    }
    // After the marker: PID '-' N, digits only.
    const std::string_view tail = name.substr(at + marker.size());
    const std::size_t dash = tail.find('-');
    if (dash == std::string_view::npos || dash == 0 || dash + 1 == tail.size()) {
        return false;
    }
    for (std::size_t i = 0; i < tail.size(); ++i) {
        if (i != dash && (tail[i] < '0' || tail[i] > '9')) {
            return false;
        }
    }
    return true;
}

result<std::uint64_t> remove_leftovers(const std::string& root, std::uint64_t* kept) {
    struct stat st {};
    if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return fail(errc::not_found, "upload leftovers: the root is not a directory", errno);
    }
    const std::lock_guard lock(walk_mutex);
    walk_removed = 0;
    walk_kept = 0;
    walk_error = 0;
    // nftw's only shared state is ours (walk_*), serialised by walk_mutex.
    if (::nftw(root.c_str(), &visit, 32, FTW_PHYS | FTW_MOUNT) != 0) {  // NOLINT(concurrency-mt-unsafe)
        return fail_errno("upload leftovers: walking the root");
    }
    if (kept != nullptr) {
        *kept = walk_kept;
    }
    if (walk_error != 0) {
        return fail(errc::io_error, "upload leftovers: open, lock or unlink", walk_error);
    }
    return walk_removed;
}

result<temp_file> create_temp(fs::provider_instance& instance, std::string_view path) {
    // Each retry takes a fresh name (the counter moves): a name that exists (a process of another
    // PID namespace with our PID), or one another process's start-up is removing.
    constexpr int tries = 8;
    for (int i = 0; i < tries; ++i) {
        std::string name = temp_name(path);
        auto opened = instance.open(name, fs::open_mode::create_new);
        if (!opened) {
            if (opened.error().code == errc::busy) {
                continue;
            }
            return std::unexpected(opened.error());
        }
        auto locked = opened->lock_range({.offset = 0, .length = 0}, fs::lock_kind::exclusive);
        if (!locked) {
            if (locked.error().code == errc::busy) {
                continue;  // a start-up's remove_leftovers holds it and unlinks it
            }
            if (locked.error().code != errc::unsupported) {
                const error why = locked.error();
                (void)instance.remove(name);
                return std::unexpected(why);
            }
            // No range locks in this provider: unlocked (another instance's start-up may take it).
            return temp_file{std::move(name), std::move(*opened)};
        }
        // Locked; but a start-up may have locked, unlinked and let go of the name between our
        // create and our lock: then the name is gone or another file's, and we take a new one.
        auto now = instance.validate(name);
        if (!now) {
            if (now.error().code == errc::not_found) {
                continue;
            }
            const error why = now.error();
            (void)instance.remove(name);
            return std::unexpected(why);
        }
        const fs::file_info mine = opened->info();
        if (now->inode != mine.inode || now->device != mine.device) {
            continue;
        }
        return temp_file{std::move(name), std::move(*opened)};
    }
    return fail(errc::busy, "upload: no free temp file name beside the target");
}

}  // namespace datapump::ingest
