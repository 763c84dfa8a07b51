// File: src/ipc/server/worker_pool.hpp
//
// The servers' worker pool (seed 004: commands whose header asks for a worker run here).
// Thread-safety: post() from any thread; the destructor runs the queued jobs' destructors after
// joining (jobs still queued at shutdown are run first: nothing is dropped).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace datapump::ipc::internal {

class worker_pool {
public:
    explicit worker_pool(std::uint32_t threads);
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;
    ~worker_pool();

    void post(std::function<void()> job);

private:
    void run();

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;  // guarded by mu_
    bool stopping_ = false;                   // guarded by mu_
    std::vector<std::thread> threads_;
};

}  // namespace datapump::ipc::internal
