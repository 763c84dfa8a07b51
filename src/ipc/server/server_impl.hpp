// File: src/ipc/server/server_impl.hpp
//
// server::impl: one endpoint. Its jobs, one file each:
//
//   listener.cpp   the endpoint's socket (bind, mode, a stale file replaced), the listener thread
//                  (accept, the peer rule, max_clients, reaping finished connections), destroy
//   registry.cpp   the in-process path's way in: the registry of this process's endpoints and
//                  the direct connections opened through it
//   server.cpp     the public API: server_runtime (the worker pool, create) and server, stats
//   worker_pool.*  the pool a server_runtime gives its servers (workers run execs that ask for one)
//
// The connections it owns: socket_connection.hpp, direct_connection.hpp.
// Thread-safety: as include/datapump/ipc/server.hpp; fields guarded by mu_ say so.
#pragma once

#include "datapump/base/accept_guard.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/internal/direct.hpp"
#include "datapump/ipc/internal/peer.hpp"
#include "datapump/ipc/server.hpp"

#include "direct_connection.hpp"
#include "shared.hpp"
#include "socket_connection.hpp"
#include "worker_pool.hpp"

#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace datapump::ipc {

class server::impl {
public:
    impl(std::string endpoint, server_handlers handlers, server_options options, internal::worker_pool* pool)
        : shared_{std::move(endpoint), std::move(handlers), std::move(options), pool, {}, -1} {}

    ~impl() { destroy(); }

    result<void> listen();

    // A path endpoint's file exists. It is removed only when it is a socket nobody listens on
    // (connect refused): a live server's socket is busy, and anything else (a regular file, a
    // socket whose state cannot be told) is never deleted.
    result<void> remove_stale_socket();

    void destroy();

    server_stats stats() const;

    const std::string& endpoint() const { return shared_.endpoint; }

    result<std::shared_ptr<internal::direct_link>> open_direct(internal::notify_fn on_notify);

private:
    void accept_loop();

    // The poll timeout while accepting is paused (ms, rounded up), or -1 when it is not.
    static int accept_pause_left(std::chrono::steady_clock::time_point until);

    // The peer rule (server_options::peers), checked once right after accept: a refused peer gets
    // the refusal welcome and is closed here, before any thread or buffer is spent on it.
    bool admit_peer(unique_fd& sock, const internal::peer_credentials& cred);

    // Joins connections whose socket thread has finished.
    void reap();

    void do_destroy();

public:
    // registry.cpp: enters this server in the registry under its endpoint / takes it out (only
    // if the entry is still this server's).
    void register_endpoint();
    void unregister();

private:
    server_shared shared_;
    unique_fd listener_;
    unique_fd wake_;
    unique_fd reap_;
    std::string path_;
    bool bound_ = false;
    std::thread listener_thread_;
    std::unique_ptr<accept_guard> accept_guard_;  // the accept loop's back-off and spare descriptor
    internal::refusal_log refusals_;
    std::once_flag destroyed_;
    std::mutex mu_;
    bool stopping_ = false;                                      // guarded by mu_
    std::list<std::shared_ptr<socket_connection>> connections_;  // guarded by mu_
    std::vector<std::shared_ptr<direct_connection>> direct_;     // guarded by mu_
};

}  // namespace datapump::ipc
