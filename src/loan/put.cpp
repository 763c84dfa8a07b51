// The loan server's PUT: an ingest job from the client's stream into a temp file, then the
// publish (truncate + fsync, rename, fsync of the directory). See put.hpp and docs/ipc.md
// ("Local ingest (put)").
#include "put.hpp"

#include "datapump/base/check.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/ingest/upload_names.hpp"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <optional>
#include <utility>

namespace datapump::loan {

// One put in progress: made by run(), shared with the loop tasks of its job.
struct put_service::state {
    // Written by run() before the job starts; the job reads them on the loop thread until on_done;
    // run() uses them again after it saw `done`.
    std::optional<fs::file> file;
    unique_fd source;
    std::uint64_t length = 0;

    // Loop thread only.
    std::unique_ptr<ingest::job> job;
    std::optional<error> cancelled;  // a cancel that arrived before the job started

    // Bumped on the loop thread by every receive and every storage write; read by run()'s idle
    // check. Relaxed: it only compares two readings, nothing else is published through it.
    std::atomic<std::uint64_t> progress{0};

    std::mutex mu;
    std::condition_variable cv;
    bool done = false;                                                  // guarded by mu
    result<std::uint64_t> total = fail(errc::closed, "loan put: not run");  // guarded by mu
    std::uint64_t final_size = 0;                                       // guarded by mu
};

put_service::put_service(cache::file_cache& cache, fs::provider_instance& instance, put_limits limits,
                         std::string name)
    : cache_(cache), instance_(instance), limits_(limits), name_(std::move(name)) {}

result<std::unique_ptr<put_service>> put_service::create(cache::file_cache& cache, fs::provider_instance& instance,
                                                         put_limits limits, std::string name) {
    std::unique_ptr<put_service> s(new put_service(cache, instance, limits, std::move(name)));
    std::promise<result<void>> ready;
    auto created = ready.get_future();
    // The ring is created on the thread that will use it (SINGLE_ISSUER), as the daemon's loops are.
    s->loop_thread_ = std::thread([p = s.get(), &ready] {
        // An arena of one memfd per buffer (the loan server's) is never registered: a buffer's
        // fresh memfd would replace pages io_uring had pinned.
        auto& arena = p->cache_.buffers().arena();
        auto made = io::event_loop::create(
            {.entries = 256, .arena = arena.memfd_per_buffer() ? nullptr : &arena, .index = 0});
        if (!made) {
            ready.set_value(std::unexpected(made.error()));
            return;
        }
        p->loop_ = std::move(*made);
        ready.set_value({});  // SYNC POINT: the promise publishes loop_ to create()'s get()
        p->loop_->run();
    });
    if (auto ok = created.get(); !ok) {
        s->loop_thread_.join();
        return std::unexpected(ok.error());
    }
    auto pub = ingest::publisher::start(instance, {.mode = ingest::durability::per_upload});
    if (!pub) {
        return std::unexpected(pub.error());
    }
    s->publisher_ = std::move(*pub);
    if (!s->loop_->has_fixed_buffers() && !cache.buffers().arena().memfd_per_buffer()) {
        spdlog::info("loan server {}: puts write with plain WRITE: the arena could not be registered ({})", s->name_,
                     s->loop_->fixed_buffers_error());
    }
    return s;
}

put_service::~put_service() {
    if (loop_ != nullptr) {
        loop_->stop();
    }
    if (loop_thread_.joinable()) {
        loop_thread_.join();
    }
}

void put_service::stop() {
    std::vector<std::shared_ptr<state>> active;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        active = active_;
    }
    for (const auto& st : active) {
        cancel(st, error{errc::closed, 0, "loan put: the server is shutting down"});
    }
}

result<put_done> put_service::run(std::string_view path_view, unique_fd source, std::uint64_t length, bool replace) {
    const std::string path(path_view);
    result<put_done> done = fail(errc::closed, "loan put: the server is shutting down");
    if (length > limits_.max_bytes) {
        done = fail(errc::full, "loan put: longer than the server's max_put_bytes");
    } else if (ingest::is_temp_name(path)) {
        done = fail(errc::invalid_argument, "loan put: the name is reserved for uploads in progress");
    } else {
        bool claimed = false;
        {
            std::lock_guard lock(mu_);
            if (!stopping_) {
                claimed = paths_.insert(path).second;
                if (!claimed) {
                    done = fail(errc::busy, "loan put: another put of this path is in progress");
                }
            }
        }
        if (claimed) {
            done = ingest_and_publish(path, std::move(source), length, replace);
            std::lock_guard lock(mu_);
            paths_.erase(path);
        }
    }
    if (done) {
        counters_.puts.fetch_add(1, std::memory_order_relaxed);
        counters_.put_bytes.fetch_add(done->bytes, std::memory_order_relaxed);
    } else {
        counters_.puts_failed.fetch_add(1, std::memory_order_relaxed);
    }
    return done;
}

result<put_done> put_service::ingest_and_publish(const std::string& path, unique_fd source, std::uint64_t length,
                                                 bool replace) {
    // The target is a regular file or nothing; checked first so that a refusal creates nothing.
    auto existing = instance_.validate(path);
    if (!existing && existing.error().code != errc::not_found) {
        return std::unexpected(existing.error());
    }
    if (existing && !replace) {
        return fail(errc::busy, "loan put: the file exists and put_options::replace is false");
    }
    // Locked for its life, like the daemon's uploads: a datapumpd starting on the same root leaves it.
    auto created = ingest::create_temp(instance_, path);
    if (!created) {
        return std::unexpected(created.error());
    }
    const std::string temp = std::move(created->name);
    auto st = std::make_shared<state>();
    st->file.emplace(std::move(created->file));
    st->source = std::move(source);
    st->length = length;
    bool stopping = false;
    {
        std::lock_guard lock(mu_);
        stopping = stopping_;
        if (!stopping) {
            active_.push_back(st);
        }
    }
    if (stopping) {
        st->file.reset();
        (void)instance_.remove(temp);
        return fail(errc::closed, "loan put: the server is shutting down");
    }
    start_job(st);
    wait_done(st);
    {
        std::lock_guard lock(mu_);
        std::erase(active_, st);
    }
    st->source.reset();  // the job is gone (on_done dropped it): nothing reads the stream any more
    result<std::uint64_t> total = fail(errc::closed, "loan put: not run");
    std::uint64_t final_size = 0;
    {
        std::lock_guard lock(st->mu);  // `done` was seen under it: total and final_size are final
        total = st->total;
        final_size = st->final_size;
    }
    if (!total) {
        st->file.reset();
        (void)instance_.remove(temp);
        return std::unexpected(total.error());
    }
    // The daemon's publisher (per upload): truncate + fsync, rename (replace = false: the rename
    // itself refuses an existing name, so a file created meanwhile is never replaced), directory
    // fsync; on failure it removes the temp file.
    std::optional<fs::file>& written = st->file;
    fs::file* temp_file = written ? &*written : nullptr;
    DP_CHECK(temp_file != nullptr);  // opened above, reset only below
    std::promise<result<bool>> published;
    auto replaced_future = published.get_future();
    publisher_->post({.file = temp_file,
                      .size = final_size,
                      .temp = temp,
                      .path = path,
                      .replace = replace,
                      .done = [&published](result<bool> r) { published.set_value(std::move(r)); }});
    const result<bool> replaced = replaced_future.get();
    st->file.reset();
    if (!replaced) {
        return std::unexpected(replaced.error());
    }
    return put_done{length, !*replaced};
}

void put_service::start_job(const std::shared_ptr<state>& st) {
    loop_->post([this, st] {
        const auto finish = [](state& s, result<std::uint64_t> total, std::uint64_t final_size) {
            std::lock_guard lock(s.mu);
            s.total = total;
            s.final_size = final_size;
            s.done = true;
            s.cv.notify_all();
        };
        if (st->cancelled) {
            finish(*st, std::unexpected(*st->cancelled), 0);
            return;
        }
        ingest::callbacks cb;
        cb.on_write = [s = st.get()](std::uint64_t, result<std::uint64_t>) {
            s->progress.fetch_add(1, std::memory_order_relaxed);
        };
        cb.on_progress = [s = st.get()] { s->progress.fetch_add(1, std::memory_order_relaxed); };
        cb.on_done = [st, finish](result<std::uint64_t> total) {
            // on_done is the job's last act: it is dropped here, on its loop, before run() may
            // touch the file or the stream again.
            std::unique_ptr<ingest::job> job = std::move(st->job);
            const std::uint64_t size = job->final_size();
            job.reset();
            finish(*st, total, size);
        };
        ingest::source from;
        from.socket = st->source.get();
        ingest::options opts;
        opts.windows_in_flight = limits_.windows_in_flight;
        auto started = ingest::job::start(*loop_, cache_, from,
                                          {.file = &*st->file, .offset = 0, .length = st->length, .old_size = 0},
                                          opts, std::move(cb), &ingest_counters_);
        if (!started) {
            finish(*st, std::unexpected(started.error()), 0);
            return;
        }
        st->job = std::move(*started);
    });
}

void put_service::cancel(const std::shared_ptr<state>& st, error why) {
    loop_->post([st, why] {
        if (st->job != nullptr) {
            st->job->cancel(why);
        } else if (!st->cancelled) {
            st->cancelled = why;  // not started yet (or already finished: then nothing reads it)
        }
    });
}

void put_service::wait_done(const std::shared_ptr<state>& st) {
    using std::chrono::milliseconds;
    const auto tick = std::clamp<milliseconds>(limits_.idle_timeout / 4, milliseconds(1), milliseconds(1000));
    std::unique_lock lock(st->mu);
    std::uint64_t seen = st->progress.load(std::memory_order_relaxed);
    auto quiet_since = std::chrono::steady_clock::now();
    bool cancelled = false;
    while (!st->cv.wait_for(lock, tick, [&] { return st->done; })) {
        const std::uint64_t now_seen = st->progress.load(std::memory_order_relaxed);
        const auto now = std::chrono::steady_clock::now();
        if (now_seen != seen) {
            seen = now_seen;
            quiet_since = now;
        } else if (!cancelled && now - quiet_since >= limits_.idle_timeout) {
            cancelled = true;
            spdlog::info("loan server {}: a put's source sent nothing for {} ms; failing it", name_,
                         limits_.idle_timeout.count());
            lock.unlock();
            cancel(st, error{errc::peer_gone, 0, "loan put: the source sent nothing for put_idle_timeout"});
            lock.lock();
        }
    }
}

}  // namespace datapump::loan
