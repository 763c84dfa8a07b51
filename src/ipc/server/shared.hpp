// File: src/ipc/server/shared.hpp
//
// What one server shares with its connections (socket and in-process): its endpoint, handlers,
// options, the worker pool, the counters behind server_stats, and the eventfd a finished
// connection writes so that the listener joins it. Owned by server::impl, which outlives every
// connection it joins (socket connections) or ends (in-process ones).
//
// Thread-safety: set before the listener starts and then read-only, except the counters (relaxed
// atomics: statistics only, nothing is ordered by them).
#pragma once

#include "datapump/ipc/server.hpp"

#include "worker_pool.hpp"

#include <atomic>
#include <cstdint>
#include <string>

namespace datapump::ipc {

// Connection ids, unique across this process's servers and both kinds of connection.
inline std::atomic<std::uint64_t> next_connection_id{1};

struct server_counters {
    std::atomic<std::uint64_t> clients_accepted{0};
    std::atomic<std::uint64_t> clients_closed{0};
    std::atomic<std::uint64_t> slot_commands{0};
    std::atomic<std::uint64_t> backup_commands{0};
    std::atomic<std::uint64_t> bad_commands{0};
    std::atomic<std::uint64_t> protocol_disconnects{0};
    std::atomic<std::uint64_t> shm_refused{0};
    std::atomic<std::uint32_t> clients_now{0};
    std::atomic<std::uint64_t> peers_refused{0};
};

struct server_shared {
    std::string endpoint;
    server_handlers handlers;
    server_options options;
    internal::worker_pool* pool;
    server_counters counters;
    int reap_fd = -1;  // eventfd: a connection finished (the listener joins it)
};

}  // namespace datapump::ipc
