// The publisher thread (include/datapump/ingest/publisher.hpp, docs/ingest.md "Publishing").
#include "datapump/ingest/publisher.hpp"

#include <spdlog/spdlog.h>

#include <utility>

namespace datapump::ingest {

result<std::unique_ptr<publisher>> publisher::start(const fs::provider_instance& instance, publish_options options) {
    if (instance.empty()) {
        return datapump::fail(errc::invalid_argument, "publisher: no provider instance");
    }
    if (options.max_batch == 0) {
        return datapump::fail(errc::invalid_argument, "publisher: max_batch must be at least 1");
    }
    if (options.mode == durability::batched && (instance.ops().resize == nullptr || instance.ops().sync == nullptr)) {
        return datapump::fail(errc::unsupported,
                              "publisher: batched durability needs a provider with resize and sync");
    }
    return std::unique_ptr<publisher>(new publisher(instance, options));
}

publisher::publisher(const fs::provider_instance& instance, publish_options options)
    : instance_(instance), options_(options), thread_([this] { run(); }) {}

publisher::~publisher() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

void publisher::post(publish_request request) {
    {
        const std::lock_guard lock(mutex_);
        queue_.push_back({std::move(request), std::chrono::steady_clock::now()});
    }
    wake_.notify_one();
}

publish_stats publisher::stats() const {
    return {.published = published_.load(std::memory_order_relaxed),
            .failed = failed_.load(std::memory_order_relaxed),
            .batches = batches_.load(std::memory_order_relaxed),
            .syncs = syncs_.load(std::memory_order_relaxed)};
}

void publisher::run() {
    std::unique_lock lock(mutex_);
    while (true) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) {
            return;  // stopping, and everything posted has been published
        }
        if (options_.mode == durability::per_upload) {
            pending next = std::move(queue_.front());
            queue_.pop_front();
            lock.unlock();
            publish_one(next.request);
            lock.lock();
            continue;
        }
        // Batched: the first request waits for its window (or a full batch, or stop).
        const auto deadline = queue_.front().arrived + options_.batch_window;
        wake_.wait_until(lock, deadline, [this] { return stopping_ || queue_.size() >= options_.max_batch; });
        std::deque<pending> batch;
        while (!queue_.empty() && batch.size() < options_.max_batch) {
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
        }
        lock.unlock();
        publish_batch(batch);
        lock.lock();
    }
}

void publisher::fail(publish_request& r, const error& why) {
    // The temp file goes; the old version (if any) was never touched, unless the rename happened
    // and only the last sync failed (then the temp name is gone already and this is a no-op).
    (void)instance_.remove(r.temp);
    failed_.fetch_add(1, std::memory_order_relaxed);
    if (r.done) {
        r.done(std::unexpected(why));
    }
}

namespace {
// The temp file's lock (create_temp) kept other processes' start-ups off it; under its final name
// it must not get in the way of anyone's range locks.
void release_temp_lock(const publish_request& r) {
    (void)r.file->unlock_range({.offset = 0, .length = 0});
}
}  // namespace

void publisher::publish_one(publish_request& r) {
    batches_.fetch_add(1, std::memory_order_relaxed);
    syncs_.fetch_add(1, std::memory_order_relaxed);
    if (auto synced = r.file->truncate_and_sync(r.size); !synced) {
        fail(r, synced.error());
        return;
    }
    syncs_.fetch_add(1, std::memory_order_relaxed);  // the directory's
    auto replaced = instance_.rename(r.temp, r.path, true, r.replace);
    if (!replaced) {
        fail(r, replaced.error());
        return;
    }
    release_temp_lock(r);
    published_.fetch_add(1, std::memory_order_relaxed);
    if (r.done) {
        r.done(replaced);
    }
}

void publisher::publish_batch(std::deque<pending>& batch) {
    batches_.fetch_add(1, std::memory_order_relaxed);
    // 1. Sizes, then one sync: every file's bytes and size are durable before any name changes.
    std::deque<pending*> sized;
    for (pending& p : batch) {
        if (auto resized = p.request.file->resize(p.request.size); !resized) {
            fail(p.request, resized.error());
        } else {
            sized.push_back(&p);
        }
    }
    if (sized.empty()) {
        return;
    }
    syncs_.fetch_add(1, std::memory_order_relaxed);
    if (auto synced = instance_.sync(); !synced) {
        spdlog::error("publish: sync of a batch of {} uploads failed: {}", sized.size(), describe(synced.error()));
        for (pending* p : sized) {
            fail(p->request, synced.error());
        }
        return;
    }
    // 2. Names, then one sync for all the directories touched.
    std::deque<std::pair<pending*, bool>> renamed;
    for (pending* p : sized) {
        auto replaced = instance_.rename(p->request.temp, p->request.path, false, p->request.replace);
        if (!replaced) {
            fail(p->request, replaced.error());
        } else {
            release_temp_lock(p->request);
            renamed.emplace_back(p, *replaced);
        }
    }
    if (renamed.empty()) {
        return;
    }
    syncs_.fetch_add(1, std::memory_order_relaxed);
    auto synced = instance_.sync();
    if (!synced) {
        spdlog::error("publish: sync after renaming {} uploads failed: {}", renamed.size(), describe(synced.error()));
    }
    for (auto& [p, replaced] : renamed) {
        if (!synced) {
            fail(p->request, synced.error());
            continue;
        }
        published_.fetch_add(1, std::memory_order_relaxed);
        if (p->request.done) {
            p->request.done(replaced);
        }
    }
}

}  // namespace datapump::ingest
