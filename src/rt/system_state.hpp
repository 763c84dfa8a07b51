// File: src/rt/system_state.hpp
//
// The system's own record (behind rt::system's pointer), shared by system.cpp and remote.cpp.
#pragma once

#include "state.hpp"
#include "tcp_auth.hpp"
#include "vp.hpp"

#include "datapump/io/event_loop.hpp"
#include "datapump/rt/system.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace datapump::rt::detail {

struct remote_state;

struct system_state {
    system_config config;
    const clock* time = nullptr;

    std::mutex mutex;  // guards everything below but the VPs' own state and the engine
    // Signalled when a connect's claimed ports are registered or given back (close_port waits).
    std::condition_variable ports_cv;
    std::map<std::string, std::unique_ptr<port_state>, std::less<>> ports;
    std::vector<std::vector<task>> vp_tasks;                  // per VP, parallel to vp_ids
    std::vector<std::vector<std::uint64_t>> vp_ids;
    std::vector<std::shared_ptr<connection_state>> connections;
    std::size_t pool_bytes = 0;
    std::uint64_t next_id = 1;
    bool warned_unlocked = false;

    std::vector<std::unique_ptr<vp>> vps;

    std::unique_ptr<io::event_loop> engine;
    std::thread engine_thread;
    std::mutex posted_mutex;
    std::vector<std::function<void()>> posted;  // manual clock: run by run_until; guarded by posted_mutex
    std::atomic<bool> closing{false};

    // Inter-process ports (remote.cpp): this system's ipc endpoint, and its channels to others.
    std::unique_ptr<remote_state> remote;
    // Inter-machine links: the shared key of config.tcp, loaded at create (empty: none).
    tcp_key key;
};


}  // namespace datapump::rt::detail
