// File: src/rt/system_state.hpp
//
// The system's own record (behind rt::system's pointer), shared by system.cpp and, through
// detail::remote, by the transports (src/rt/transport/).
#pragma once

#include "state.hpp"
#include "transports.hpp"
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

    // The ports of other processes and machines (src/rt/transport/): made by system::create,
    // before this record, and never replaced. Destroyed first (the last member), after ~system
    // stopped them.
    std::unique_ptr<transports> remote;
};


}  // namespace datapump::rt::detail
