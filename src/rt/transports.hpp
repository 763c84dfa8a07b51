// File: src/rt/transports.hpp
//
// What the core asks of the system's transports: the ports of other processes ("proc@…", over
// ipc) and machines ("tcp@…"). The transports live above the core, in src/rt/transport/; the core
// knows them only by this interface, so that the scheduler's part includes no transport header
// and links neither ipc nor OpenSSL.
//
//   system::create (src/rt/transport/) ──makes──> the transports, then the core's system
//   system_state ──owns──> transports (this interface)
//   system::connect ──a remote name──> transports::connect
//   ~system ──> transports::stop_serving, then (connections gone) transports::close_peers
//
// The transports reach back into the core through detail::remote (a friend of system): claim
// ports, measure budgets, admit, disconnect. system::serve, serve_tcp and tcp_stats are defined
// in the transports' part and never pass through here.
//
// Thread-safety: is_remote may be called from any thread; connect from any thread but an upcall
// (as system::connect); stop_serving and close_peers by ~system only.
#pragma once

#include "datapump/rt/qos.hpp"
#include "datapump/rt/system.hpp"

#include <cstddef>
#include <expected>
#include <span>
#include <string_view>

namespace datapump::rt::detail {

class transports {
public:
    transports() = default;
    transports(const transports&) = delete;
    transports& operator=(const transports&) = delete;
    transports(transports&&) = delete;
    transports& operator=(transports&&) = delete;
    virtual ~transports() = default;

    // Whether `name` names a port these transports reach (not one of this system: a local port
    // name has no '@'). Pure.
    [[nodiscard]] virtual bool is_remote(std::string_view name) const = 0;
    // Connects a chain whose ports from chain[first_remote] on are remote (is_remote); the ones
    // before are this system's. Returns the connection, or the refusal (this system's or the
    // peer's) with its reason.
    [[nodiscard]] virtual std::expected<connection, refusal> connect(system& s, std::span<const std::string_view> chain,
                                                                     std::size_t first_remote, const qos& q) = 0;
    // ~system, before the connections are disconnected: stop serving (ipc and TCP), so that no
    // peer connects meanwhile.
    virtual void stop_serving(system& s) = 0;
    // ~system, after the connections are disconnected: close the channels to other processes.
    virtual void close_peers(system& s) = 0;
};

}  // namespace datapump::rt::detail
