// File: src/fs/common/watcher.hpp
//
// Change notifications for the local providers: one inotify descriptor and one thread per
// provider instance (not per file). A watched file is identified by a key (its provider file
// handle); several keys may watch the same inode (two opens of one file share one inotify watch).
//
//   watcher thread: poll(inotify, stop eventfd) -> read events -> map wd -> entries
//                   -> fstat each entry's fd to tell modified from truncated and to see an
//                      unlink (IN_ATTRIB with no link left) -> callbacks
//
// Thread-safety: add() and remove() may be called from any thread except the watcher thread
// (that is, not from a callback). Callbacks run on the watcher thread with mutex_ held, which is
// what lets remove() promise that no callback for the key runs after it returns.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/fs/provider.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace datapump::fs::local {

class watcher {
public:
    // Errors: no_buffers (inotify instance limit), io_error.
    [[nodiscard]] static result<std::unique_ptr<watcher>> start();
    watcher(const watcher&) = delete;
    watcher& operator=(const watcher&) = delete;
    ~watcher();  // stops and joins the thread

    // Watches the file open as `fd` (it must stay open until remove(key)). Errors: no_buffers
    // (inotify watch limit), unsupported (no /proc to name the descriptor), invalid_argument
    // (`key` is watched already), io_error.
    [[nodiscard]] result<void> add(const void* key, int fd, void* context, change_fn callback);
    // Stops watching; waits for a callback in progress. Unknown keys are ignored.
    void remove(const void* key);

private:
    struct entry {
        const void* key;
        int wd;
        int fd;
        std::uint64_t last_size;
        bool deleted;
        void* context;
        change_fn callback;
    };
    watcher(unique_fd inotify, unique_fd stop);
    void run();
    void dispatch(int wd, std::uint32_t mask);  // with mutex_ held

    unique_fd inotify_;
    unique_fd stop_;  // eventfd: written once by the destructor
    std::mutex mutex_;
    // Guarded by mutex_. By key, and the keys of each watch (two opens of one inode share it):
    // add, remove and an event's dispatch cost the same with ten files open or ten thousand.
    std::unordered_map<const void*, entry> entries_;
    std::unordered_map<int, std::vector<const void*>> by_wd_;
    std::thread thread_;          // started last, in the constructor
};

}  // namespace datapump::fs::local
