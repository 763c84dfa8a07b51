#include "watcher.hpp"

#include "datapump/base/internal/log.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

namespace datapump::fs::local {

namespace {
constexpr std::uint32_t watch_mask = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;
}

result<std::unique_ptr<watcher>> watcher::start() {
    unique_fd in(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!in) {
        const int e = errno;
        if (e == EMFILE || e == ENFILE) {
            return fail(errc::no_buffers, "watch: inotify_init1 (instance limit)", e);
        }
        return fail_errno("watch: inotify_init1", e);
    }
    unique_fd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop) {
        return fail_errno("watch: eventfd");
    }
    return std::unique_ptr<watcher>(new watcher(std::move(in), std::move(stop)));
}

watcher::watcher(unique_fd inotify, unique_fd stop) : inotify_(std::move(inotify)), stop_(std::move(stop)) {
    thread_ = std::thread([this] { run(); });
}

watcher::~watcher() {
    const std::uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    thread_.join();
}

result<void> watcher::add(const void* key, int fd, void* context, change_fn callback) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return fail_errno("watch: fstat");
    }
    // inotify names files by path; the descriptor's /proc link names exactly the open inode,
    // whatever has been renamed since.
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    std::lock_guard lock(mutex_);
    if (entries_.contains(key)) {
        return fail(errc::invalid_argument, "watch: this key is already watched");
    }
    const int wd = ::inotify_add_watch(inotify_.get(), link.c_str(), watch_mask);
    if (wd < 0) {
        const int e = errno;
        if (e == ENOSPC || e == ENOMEM) {
            return fail(errc::no_buffers, "watch: inotify_add_watch (fs.inotify.max_user_watches?)", e);
        }
        if (e == ENOENT) {
            return fail(errc::unsupported, "watch: /proc is not mounted", e);
        }
        return fail_errno("watch: inotify_add_watch", e);
    }
    entries_.emplace(key, entry{key, wd, fd, static_cast<std::uint64_t>(st.st_size), false, context, callback});
    by_wd_[wd].push_back(key);
    return {};
}

void watcher::remove(const void* key) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        return;
    }
    const int wd = it->second.wd;
    entries_.erase(it);
    auto keys = by_wd_.find(wd);
    bool shared = false;
    if (keys != by_wd_.end()) {
        std::erase(keys->second, key);
        shared = !keys->second.empty();
        if (!shared) {
            by_wd_.erase(keys);
        }
    }
    if (!shared) {
        // EINVAL when the kernel already dropped the watch (IN_IGNORED): nothing to undo.
        (void)::inotify_rm_watch(inotify_.get(), wd);
    }
}

void watcher::dispatch(int wd, std::uint32_t mask) {
    const auto keys = by_wd_.find(wd);
    if (keys == by_wd_.end()) {
        return;
    }
    for (const void* key : keys->second) {
        entry& e = entries_.at(key);
        if (e.deleted) {
            continue;
        }
        std::uint32_t bits = 0;
        struct stat st {};
        const bool have_stat = ::fstat(e.fd, &st) == 0;
        if ((mask & IN_MODIFY) != 0 && have_stat) {
            const auto size = static_cast<std::uint64_t>(st.st_size);
            bits |= size < e.last_size ? change_truncated : change_modified;
            e.last_size = size;
        }
        if ((mask & IN_MOVE_SELF) != 0) {
            bits |= change_renamed;
        }
        // An unlink only changes the link count (IN_ATTRIB): IN_DELETE_SELF would come when the
        // inode is freed, which our open descriptor prevents.
        if ((mask & IN_DELETE_SELF) != 0 || ((mask & IN_ATTRIB) != 0 && have_stat && st.st_nlink == 0)) {
            bits |= change_deleted;
            e.deleted = true;
        }
        if (bits != 0) {
            e.callback(e.context, bits);
        }
    }
}

void watcher::run() {
    alignas(inotify_event) std::array<char, std::size_t{16} * 1024> buf{};
    for (;;) {
        std::array<pollfd, 2> fds{pollfd{inotify_.get(), POLLIN, 0}, pollfd{stop_.get(), POLLIN, 0}};
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            spdlog::error("fs: change watcher stopped: poll: {}", errno_text(errno));
            return;
        }
        if ((fds[1].revents & POLLIN) != 0) {
            return;
        }
        const ssize_t n = ::read(inotify_.get(), buf.data(), buf.size());
        if (n <= 0) {
            continue;  // EAGAIN: spurious wake-up
        }
        // Coalesce the batch per watch so one write burst makes one callback per file.
        std::vector<std::pair<int, std::uint32_t>> masks;
        for (ssize_t off = 0; off < n;) {
            inotify_event ev{};
            std::memcpy(&ev, buf.data() + off, sizeof ev);
            off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
            const int wd = ev.wd;
            auto it = std::find_if(masks.begin(), masks.end(), [wd](const auto& m) { return m.first == wd; });
            if (it == masks.end()) {
                masks.emplace_back(wd, ev.mask);
            } else {
                it->second |= ev.mask;
            }
        }
        std::lock_guard lock(mutex_);
        for (const auto& [wd, mask] : masks) {
            dispatch(wd, mask);
        }
    }
}

}  // namespace datapump::fs::local
