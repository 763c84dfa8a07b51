// File: datapump/ingest/publisher.hpp
//
// Publishing a finished upload (docs/ingest.md, "Publishing"): the temp file the ingest job wrote
// gets its final size, becomes durable, and replaces its target by rename, so readers and a crash
// see the old version or the new one, never a torn file. Blocking steps, so they run on the
// publisher's own thread, in the order requests were posted.
//
//   per_upload  each request:  finish (truncate + fsync) ─> rename (+ fsync of the directory)
//               2 syncs per upload
//   batched     the requests that arrive within `batch_window` of the first (at most max_batch):
//               resize each ─> sync (syncfs) ─> rename each, no directory fsync ─> sync
//               2 syncs per batch, whatever its size
//
// A request that fails (its resize or rename, or a sync of its batch) has its temp file removed,
// and its callback gets the error; the others of its batch are not affected by its own failure.
// When the last sync of a batch fails, the renames already happened: the new versions are visible
// but their durability is unknown, so each callback gets the error.
//
// Thread-safety: post() and stats() from any thread. Callbacks run on the publisher thread, one
// at a time. Destruction publishes everything already posted (a batch waiting for its window goes
// at once), then joins.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/fs/file.hpp"
#include "datapump/fs/registry.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

DATAPUMP_API_BEGIN

namespace datapump::ingest {

enum class durability : std::uint8_t {
    per_upload,  // fsync each file and its directory (the default)
    batched,     // one syncfs before and one after the renames of every upload in the window
};

struct publish_options {
    durability mode = durability::per_upload;
    // batched: how long the first request of a batch waits for others.
    std::chrono::microseconds batch_window{5000};
    std::size_t max_batch = 256;  // batched: a batch this large goes at once (>= 1)
};

struct publish_request {
    fs::file* file = nullptr;  // the temp file, open for writing; alive until `done` has run
    std::uint64_t size = 0;    // its final size (job::final_size())
    std::string temp;          // its path beneath the root
    std::string path;          // the name it is published as
    bool replace = true;       // false: an existing `path` fails it with busy (atomically, at the rename)
    // On the publisher thread: whether an existing file was replaced, or why it failed (the temp
    // file is then gone).
    std::function<void(result<bool> replaced)> done;
};

// Monotonic counters (relaxed: monitoring only).
struct publish_stats {
    std::uint64_t published = 0;
    std::uint64_t failed = 0;
    std::uint64_t batches = 0;  // groups published together (per_upload: one per upload)
    std::uint64_t syncs = 0;    // fsync/syncfs calls made
};

class publisher {
public:
    // Starts the thread. `instance` (the root the files live beneath) must outlive the publisher.
    // Errors: invalid_argument (max_batch 0, an empty instance), unsupported (batched, and the
    // provider has no resize/sync pair).
    [[nodiscard]] static result<std::unique_ptr<publisher>> start(const fs::provider_instance& instance,
                                                                  publish_options options);
    publisher(const publisher&) = delete;
    publisher& operator=(const publisher&) = delete;
    ~publisher();

    void post(publish_request request);
    [[nodiscard]] publish_stats stats() const;
    [[nodiscard]] durability mode() const { return options_.mode; }

private:
    struct pending {
        publish_request request;
        std::chrono::steady_clock::time_point arrived;
    };
    publisher(const fs::provider_instance& instance, publish_options options);
    void run();
    void publish_one(publish_request& r);
    void publish_batch(std::deque<pending>& batch);
    void fail(publish_request& r, const error& why);

    const fs::provider_instance& instance_;
    const publish_options options_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<pending> queue_;  // guarded by mutex_
    bool stopping_ = false;      // guarded by mutex_
    std::atomic<std::uint64_t> published_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> batches_{0};
    std::atomic<std::uint64_t> syncs_{0};
    std::thread thread_;  // last: started once everything above is ready
};

}  // namespace datapump::ingest
DATAPUMP_API_END
