// File: src/ipc/server/direct_connection.hpp
//
// One in-process connection: the server side of a client in this process that calls the
// handlers directly (internal::direct_link; src/ipc/client/direct.cpp is the client side).
// Opened through the registry (registry.cpp); defined in direct_connection.cpp.
//
// Thread-safety: exec may run on many threads at once; close/disconnect from any thread (the close
// handler runs once, after every exec has returned). Fields guarded by mu_ say so.
#pragma once

#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/internal/direct.hpp"
#include "datapump/ipc/server.hpp"

#include "exec_scope.hpp"
#include "shared.hpp"

#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace datapump::ipc {

class direct_connection final : public connection, public internal::direct_link {
public:
    direct_connection(server_shared& shared, internal::notify_fn on_notify)
        : shared_(shared), id_(next_connection_id.fetch_add(1)), on_notify_(std::move(on_notify)) {}

    std::uint64_t id() const override { return id_; }
    pid_t peer_pid() const override { return ::getpid(); }
    result<void> attach_fd(unique_fd fd) override { return attach_to_current(this, std::move(fd)); }
    std::vector<unique_fd> take_fds() override { return take_from_current(this); }
    result<void> notify(std::uint32_t code, std::span<const std::byte> payload) override;
    void disconnect() override { end(); }

    result<reply> exec(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                       std::vector<unique_fd> fds) override;
    result<void> notify_server(std::uint32_t code, std::span<const std::byte> payload) override;
    [[nodiscard]] bool gone() const override;
    void close() override { end(); }

    // Closes once every exec has returned; by the client (close), the server (destroy) or a
    // handler (disconnect). Called inside one of this connection's execs, it only marks the
    // connection closed: the close handler runs when that exec (the last one) returns.
    void end();

private:
    void run_close();

    server_shared& shared_;
    std::uint64_t id_;
    internal::notify_fn on_notify_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool closed_ = false;           // guarded by mu_
    bool close_pending_ = false;    // guarded by mu_: disconnect() from inside an exec
    bool close_done_ = false;       // guarded by mu_: the close handler ran (or is running)
    std::uint32_t executing_ = 0;   // guarded by mu_
};

}  // namespace datapump::ipc
