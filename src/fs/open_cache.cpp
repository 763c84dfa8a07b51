// The open-file cache (datapump/fs/open_cache.hpp): shards by path, each a map of open files, an
// LRU order, a mutex and an inotify descriptor watching every folder its kept files lie in. The
// inotify queue is read by the look-ups themselves (no thread): what the kernel queued before a
// look-up is applied before it answers. The read is a system call made under the shard's mutex;
// with one mutex for all, two event loops met on it at almost every request (a futex each):
// sharded by path, they seldom do. A change to a folder reaches every shard watching it.
#include "datapump/fs/open_cache.hpp"

#include "datapump/fs/registry.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <iterator>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace datapump::fs {

namespace {

// A folder's children: written, truncated, attributes, created, deleted, renamed either way; the
// folder itself: deleted, renamed, its attributes. IN_ONLYDIR: a name that became a file since it
// was resolved as a folder is refused, not watched as one.
constexpr std::uint32_t folder_mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                      IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

std::string join(std::string_view folder, std::string_view name) {
    std::string out(folder);
    if (!out.empty()) {
        out += '/';
    }
    out += name;
    return out;
}

// `key` is `path` or lies beneath it ("" is the root: everything lies beneath it).
bool beneath(std::string_view key, std::string_view path) {
    if (path.empty()) {
        return true;
    }
    return key.size() >= path.size() && key.starts_with(path) && (key.size() == path.size() || key[path.size()] == '/');
}

// Look-ups by string_view: a hit allocates nothing.
struct path_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view p) const noexcept { return std::hash<std::string_view>{}(p); }
};

}  // namespace

namespace {

struct shard {
    struct entry {
        std::shared_ptr<file> opened;
        std::chrono::steady_clock::time_point at;
        std::list<std::string>::iterator order;
    };

    int root_fd = -1;
    unique_fd inotify;
    // Entries kept by every shard together (open_cache::state::kept): each shard's drop gives one
    // back.
    std::atomic<std::size_t>* kept = nullptr;

    mutable std::mutex mutex;
    // Guarded by mutex. Invariant: every folder of a kept file's path is in folder_wd.
    std::unordered_map<std::string, entry, path_hash, std::equal_to<>> files;
    std::list<std::string> order;  // most recently used first
    std::unordered_map<std::string, int> folder_wd;
    std::unordered_map<int, std::vector<std::string>> wd_folders;
    std::uint64_t events = 0;  // events applied: an open that saw it move keeps nothing
    open_cache_counters counts;
    // Files dropped under the mutex, closed after it (a close is a few system calls and the
    // provider instance's own lock: not for the other loop to wait on). Taken by closing().
    std::vector<std::shared_ptr<file>> dropped;

    void drop(decltype(files)::iterator it) {
        dropped.push_back(std::move(it->second.opened));
        order.erase(it->second.order);
        files.erase(it);
        kept->fetch_sub(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::vector<std::shared_ptr<file>> closing() { return std::exchange(dropped, {}); }

    // Forgets `path` and what lies beneath it; unwatches the folders among them (their names may
    // now be other folders).
    void forget_beneath(const std::string& path) {
        if (auto it = files.find(path); it != files.end()) {
            drop(it);
            ++counts.forgotten;
        }
        if (!path.empty() && !folder_wd.contains(path)) {
            return;  // not a folder anything kept lies in
        }
        for (auto it = files.begin(); it != files.end();) {
            auto next = std::next(it);
            if (beneath(it->first, path)) {
                drop(it);
                ++counts.forgotten;
            }
            it = next;
        }
        for (auto it = folder_wd.begin(); it != folder_wd.end();) {
            if (!beneath(it->first, path)) {
                ++it;
                continue;
            }
            auto& names = wd_folders[it->second];
            std::erase(names, it->first);
            if (names.empty()) {
                // Its IN_IGNORED comes later and finds no folder: nothing to do then.
                (void)::inotify_rm_watch(inotify.get(), it->second);
                wd_folders.erase(it->second);
            }
            it = folder_wd.erase(it);
        }
    }

    void apply(const inotify_event& ev, std::string_view name) {
        ++events;
        if ((ev.mask & IN_Q_OVERFLOW) != 0) {
            forget_beneath("");  // events were lost: nothing kept can be trusted
            return;
        }
        const auto it = wd_folders.find(ev.wd);
        if (it == wd_folders.end()) {
            return;
        }
        // Copied: forget_beneath may change wd_folders.
        const std::vector<std::string> folders = it->second;
        for (const std::string& folder : folders) {
            forget_beneath(name.empty() ? folder : join(folder, name));
        }
    }

    // Applies every event the kernel queued so far.
    void drain() {
        alignas(inotify_event) std::array<char, std::size_t{16} * 1024> buf{};
        for (;;) {
            const ssize_t n = ::read(inotify.get(), buf.data(), buf.size());
            if (n <= 0) {
                return;  // EAGAIN: nothing queued (the descriptor is non-blocking)
            }
            ssize_t off = 0;
            while (off + static_cast<ssize_t>(sizeof(inotify_event)) <= n) {
                inotify_event ev{};
                std::memcpy(&ev, buf.data() + off, sizeof ev);
                const char* raw = buf.data() + off + sizeof(inotify_event);
                const std::string_view name(raw, ev.len == 0 ? 0 : ::strnlen(raw, ev.len));
                apply(ev, name);
                off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
            }
        }
    }

    // Watches every folder of `path` not yet watched, outermost first (so that each is watched
    // before the names beneath it are resolved). False: one could not be watched.
    bool watch_folders(std::string_view path) {
        std::size_t end = 0;
        for (;;) {
            const std::string folder(path.substr(0, end));
            if (!folder_wd.contains(folder)) {
                const std::string where = "/proc/self/fd/" + std::to_string(root_fd) + (folder.empty() ? "" : "/") + folder;
                const int wd = ::inotify_add_watch(inotify.get(), where.c_str(), folder_mask);
                if (wd < 0) {
                    return false;
                }
                folder_wd.emplace(folder, wd);
                wd_folders[wd].push_back(folder);
            }
            const std::size_t slash = path.find('/', end == 0 ? 0 : end + 1);
            if (slash == std::string_view::npos) {
                return true;
            }
            end = slash;
        }
    }
};

}  // namespace

struct open_cache::state {
    provider_instance* instance = nullptr;
    open_cache_config config;
    std::vector<shard> shards;
    // Entries kept now, every shard together: max_files bounds this sum, not each shard (paths
    // do not hash evenly: with an even split the fuller shards would evict while the cache as a
    // whole has room).
    std::atomic<std::size_t> kept{0};

    // Takes one of the max_files places; false when all are taken.
    bool take_place() {
        std::size_t now = kept.load(std::memory_order_relaxed);
        while (now < config.max_files) {
            if (kept.compare_exchange_weak(now, now + 1, std::memory_order_relaxed)) {
                return true;
            }
        }
        return false;
    }

    shard& of(std::string_view path) { return shards[std::hash<std::string_view>{}(path) % shards.size()]; }
};

result<std::unique_ptr<open_cache>> open_cache::create(provider_instance& instance, int root_fd,
                                                       open_cache_config config) {
    if (config.max_files == 0) {
        return fail(errc::invalid_argument, "open-file cache: max_files must be at least 1");
    }
    if (config.shards == 0 || config.shards > 64) {
        return fail(errc::invalid_argument, "open-file cache: shards must be 1 to 64");
    }
    auto s = std::make_unique<state>();
    s->instance = &instance;
    s->config = config;
    s->shards = std::vector<shard>(config.shards);
    for (shard& sh : s->shards) {
        sh.kept = &s->kept;
        unique_fd in(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
        if (!in) {
            const int e = errno;
            if (e == EMFILE) {
                return fail(errc::no_buffers, "open-file cache: inotify_init1 (fs.inotify.max_user_instances?)", e);
            }
            return fail_errno("open-file cache: inotify_init1", e);
        }
        sh.root_fd = root_fd;
        sh.inotify = std::move(in);
    }
    return std::unique_ptr<open_cache>(new open_cache(std::move(s)));
}

open_cache::open_cache(std::unique_ptr<state> s) : state_(std::move(s)) {}

open_cache::~open_cache() = default;

result<std::shared_ptr<file>> open_cache::open(std::string_view path) {
    state& s = *state_;
    shard& sh = s.of(path);
    bool watched = false;
    std::uint64_t seen = 0;
    std::vector<std::shared_ptr<file>> closing;  // destroyed last, after the mutex is let go
    {
        std::lock_guard lock(sh.mutex);
        sh.drain();
        if (auto it = sh.files.find(path); it != sh.files.end()) {
            if (std::chrono::steady_clock::now() - it->second.at < s.config.valid) {
                sh.order.splice(sh.order.begin(), sh.order, it->second.order);
                ++sh.counts.hits;
                closing = sh.closing();
                return it->second.opened;
            }
            sh.drop(it);
            ++sh.counts.evicted;
        }
        ++sh.counts.misses;
        watched = sh.watch_folders(path);
        seen = sh.events;
        closing = sh.closing();
    }
    auto opened = s.instance->open(path, open_mode::read);
    if (!opened) {
        return std::unexpected(opened.error());
    }
    auto shared = std::make_shared<file>(std::move(*opened));
    std::vector<std::shared_ptr<file>> closing_after;  // declared before the lock: destroyed after it
    std::lock_guard lock(sh.mutex);
    sh.drain();
    closing_after = sh.closing();
    if (!watched) {
        ++sh.counts.unwatched;
        return shared;
    }
    if (shared->info().size > s.config.max_size) {
        return shared;
    }
    // Something changed while the file was opened: it may be the file, so it is not kept.
    if (sh.events != seen || sh.files.contains(path)) {
        return shared;
    }
    // Every folder of the path is still watched (nothing was applied since they were).
    // The cache is full: this shard's least recently used entries make the room (none here: the
    // other shards hold every place, and the file is served without being kept).
    while (!s.take_place()) {
        if (sh.order.empty()) {
            std::ranges::move(sh.closing(), std::back_inserter(closing_after));
            return shared;
        }
        sh.drop(sh.files.find(sh.order.back()));
        ++sh.counts.evicted;
    }
    sh.order.emplace_front(path);
    sh.files.emplace(std::string(path), shard::entry{.opened = shared, .at = std::chrono::steady_clock::now(), .order = sh.order.begin()});
    // Appended, not assigned: assigning would close what the drain dropped here, under the mutex.
    std::ranges::move(sh.closing(), std::back_inserter(closing_after));
    return shared;
}

void open_cache::clear() {
    for (shard& sh : state_->shards) {
        std::vector<std::shared_ptr<file>> closing;
        std::lock_guard lock(sh.mutex);
        sh.forget_beneath("");
        closing = sh.closing();
    }
}

open_cache_counters open_cache::counters() const {
    open_cache_counters c;
    for (shard& sh : state_->shards) {
        std::lock_guard lock(sh.mutex);
        c.hits += sh.counts.hits;
        c.misses += sh.counts.misses;
        c.forgotten += sh.counts.forgotten;
        c.evicted += sh.counts.evicted;
        c.unwatched += sh.counts.unwatched;
        c.files += sh.files.size();
        c.watches += sh.wd_folders.size();
    }
    return c;
}

}  // namespace datapump::fs
