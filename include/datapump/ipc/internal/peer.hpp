// File: datapump/ipc/internal/peer.hpp
//
// Local peers on a channel endpoint: the credentials of a connected peer (SO_PEERCRED, read once
// right after accept), the allow rule of server_options::peers, and the refusal sent to a peer the
// rule does not allow. Kept apart from the accept loop so that the loop only calls admit_peer.
//
// Thread-safety: stateless functions; the refusal log's rate limit is a per-server object guarded
// by its own mutex.
#pragma once

#include "datapump/ipc/server.hpp"

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace datapump::ipc::internal {

struct peer_credentials {
    pid_t pid = 0;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    bool known = false;  // SO_PEERCRED answered
};

// The peer's credentials as the kernel recorded them at connect().
[[nodiscard]] peer_credentials read_peer_credentials(int sock);

// True when `rule` allows `peer`, for a server running with effective uid `self`. A peer whose
// credentials are unknown is never allowed.
[[nodiscard]] bool peer_allowed(const peer_credentials& peer, const peer_rule& rule, uid_t self);

// Sends the refusal welcome (welcome_refused, status -EACCES) without blocking, shuts the socket
// down and drops what the peer sent before, so the refusal is what the peer reads; the caller
// closes the socket next. Never waits on the peer. Best effort: a peer already gone gets nothing.
void send_refusal(int sock);

// Logs refused peers, one line each, but at most `burst` lines per second: a flood of refused
// connections cannot flood the log; the next line logged says how many were left out.
class refusal_log {
public:
    explicit refusal_log(std::uint32_t burst = 10) : burst_(burst) {}
    void refused(std::string_view endpoint, const peer_credentials& peer);

private:
    std::mutex mu_;
    std::uint32_t burst_;
    std::chrono::steady_clock::time_point window_{};  // guarded by mu_
    std::uint32_t in_window_ = 0;                     // guarded by mu_
    std::uint64_t left_out_ = 0;                      // guarded by mu_
};

}  // namespace datapump::ipc::internal
