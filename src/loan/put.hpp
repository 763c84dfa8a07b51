// File: src/loan/put.hpp
//
// The loan server's PUT (docs/ipc.md, "Local ingest (put)"): a local client hands the server a
// stream (a pipe or a socket, by SCM_RIGHTS with the command) and a path; the server ingests
// exactly `length` bytes of it into a temp file beside the target and publishes that file by
// rename, so readers see the old version or the new one, never a torn file.
//
//   ipc worker (exec) ──run()──> claim the path ─> open .NAME.dp-upload-PID-N (create_new)
//        │ waits                 ─> post: ingest::job on the put loop (source -> arena -> O_DIRECT)
//        │ <── on_done ──────────── the loop thread
//        └─> truncate + fsync ─> rename (RENAME_NOREPLACE first: created?) + fsync of the directory
//            any failure: the temp file is removed; the old version was never touched
//
//   put_service ──owns──> io::event_loop + its thread (the cache arena registered as fixed buffers)
//               ──refers to──> the server's file_cache and provider instance (they outlive it)
//
// run() blocks its caller (an ipc worker) for the whole put: the ipc exec model answers when exec
// returns, and the blocking publish steps (fsync, rename) must not run on the loop. So at most
// `workers` puts of one server run at once; more wait in the pool's queue. The other loan
// commands run inline on the channel threads and are not held up by puts.
//
// Thread-safety: run() from any number of threads at once; stop() from any thread; destruction
// once no run() is in progress (the loan server destroys its ipc server first).
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/cache/file_cache.hpp"
#include "datapump/fs/registry.hpp"
#include "datapump/io/event_loop.hpp"
#include "datapump/ingest/ingest.hpp"
#include "datapump/ingest/publisher.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

namespace datapump::loan {

struct put_limits {
    std::uint64_t max_bytes = 0;                 // longer puts are refused (full)
    std::chrono::milliseconds idle_timeout{0};   // a source silent this long fails the put (peer_gone)
    unsigned windows_in_flight = 4;              // ingest::options::windows_in_flight
};

struct put_done {
    std::uint64_t bytes = 0;
    bool created = false;  // the name was new (else an existing file was replaced)
};

// Monotonic counters; relaxed, each an independent statistic.
struct put_counters {
    std::atomic<std::uint64_t> puts{0};         // published
    std::atomic<std::uint64_t> put_bytes{0};    // bytes of the published ones
    std::atomic<std::uint64_t> puts_failed{0};  // refused or failed after the path was claimed
};

class put_service {
public:
    // Starts the loop thread, the cache's arena registered with its ring (as the daemon's loops
    // do; a refusal is logged and the writes fall back to plain WRITE). `name` labels the logs.
    // Errors: those of io::event_loop::create.
    [[nodiscard]] static result<std::unique_ptr<put_service>> create(cache::file_cache& cache,
                                                                     fs::provider_instance& instance,
                                                                     put_limits limits, std::string name);
    put_service(const put_service&) = delete;
    put_service& operator=(const put_service&) = delete;
    // Stops the loop and joins its thread. No run() may be in progress.
    ~put_service();

    // Ingests exactly `length` bytes of `source` into `path` (beneath the provider's root) and
    // publishes it; blocks until then. `replace` false: an existing file is not replaced (busy).
    // Errors: full (length over max_bytes), invalid_argument (an upload temp name), busy (another
    // put of the same path spelling in progress, or the file exists and replace is false),
    // not_found (no such directory), escapes_root, not_regular_file (a directory in the way),
    // peer_gone (the source ended before `length` bytes, or sent nothing for idle_timeout),
    // closed (stop() was called), no_space, no_buffers, io_error. On every error the temp file is
    // gone and the target untouched.
    [[nodiscard]] result<put_done> run(std::string_view path, unique_fd source, std::uint64_t length, bool replace);

    // Fails every put in progress (closed) as soon as its writes in flight are done, and refuses
    // new ones. Idempotent; does not wait.
    void stop();

    [[nodiscard]] const put_counters& counters() const { return counters_; }

    struct state;

private:
    put_service(cache::file_cache& cache, fs::provider_instance& instance, put_limits limits, std::string name);
    result<put_done> ingest_and_publish(const std::string& path, unique_fd source, std::uint64_t length,
                                        bool replace);
    void start_job(const std::shared_ptr<state>& st);
    void cancel(const std::shared_ptr<state>& st, error why);
    void wait_done(const std::shared_ptr<state>& st);

    cache::file_cache& cache_;
    fs::provider_instance& instance_;
    const put_limits limits_;
    const std::string name_;
    std::unique_ptr<io::event_loop> loop_;
    std::thread loop_thread_;
    std::unique_ptr<ingest::publisher> publisher_;  // truncate + fsync, rename, directory fsync
    ingest::counters ingest_counters_;
    put_counters counters_;

    std::mutex mu_;
    bool stopping_ = false;                           // guarded by mu_
    std::unordered_set<std::string> paths_;           // guarded by mu_: puts in progress, by path
    std::vector<std::shared_ptr<state>> active_;      // guarded by mu_: their jobs, for stop()
};

}  // namespace datapump::loan
