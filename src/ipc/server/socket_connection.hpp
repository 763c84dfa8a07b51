// File: src/ipc/server/socket_connection.hpp
//
// One client connection over the endpoint's socket, with an optional shared-memory segment (see
// docs/ipc.md). Its threads and their jobs, one file each:
//
//   socket_thread.cpp   the socket thread: hello/welcome (the segment checked), then every message
//                       the client sends; notifications to the client; protocol violations
//   backup.cpp          backup commands (inline on the socket thread or on a worker) and every
//                       reply sent over the socket
//   channel_thread.cpp  the channel thread: slot commands popped from the c->s ring, validated,
//                       run inline or on a worker, completed through done or the s->c ring
//   exec_scope.cpp      run_exec: the handler's call, with what it claims clamped
//   teardown.cpp        the end: stop the channel thread, drain the execs, close, tell the listener
//
// Lifetime: shared; the socket thread and each job posted to a worker hold a reference, the
// server's list another until the listener joins the socket thread.
// Thread-safety: each field says which thread touches it; handlers may run on several workers at
// once.
#pragma once

#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/internal/segment.hpp"
#include "datapump/ipc/internal/wire.hpp"
#include "datapump/ipc/server.hpp"

#include "exec_scope.hpp"
#include "shared.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <sys/socket.h>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace datapump::ipc {

class socket_connection final : public connection, public std::enable_shared_from_this<socket_connection> {
public:
    socket_connection(server_shared& shared, unique_fd sock, pid_t pid)
        : shared_(shared), sock_(std::move(sock)), id_(next_connection_id.fetch_add(1)), pid_(pid) {}

    ~socket_connection() override {
        // The server joins the socket thread before it lets go of a connection; when a worker's
        // reference is the last one, the thread has been joined already. Only if the socket
        // thread itself drops the last reference (server destroyed meanwhile) is it still
        // joinable here, on itself: detach then.
        if (socket_thread_.joinable()) {
            socket_thread_.detach();
        }
    }

    std::uint64_t id() const override { return id_; }
    pid_t peer_pid() const override { return pid_; }
    result<void> attach_fd(unique_fd fd) override { return attach_to_current(this, std::move(fd)); }
    std::vector<unique_fd> take_fds() override { return take_from_current(this); }
    result<void> notify(std::uint32_t code, std::span<const std::byte> payload) override;
    void disconnect() override { ::shutdown(sock_.get(), SHUT_RDWR); }

    void start() {
        auto self = shared_from_this();
        socket_thread_ = std::thread([self] { self->socket_main(); });
    }
    void join() {
        if (socket_thread_.joinable()) {
            socket_thread_.join();
        }
    }
    [[nodiscard]] bool finished() const { return finished_.load(std::memory_order_acquire); }

private:
    // --- socket_thread.cpp ---------------------------------------------------------------------

    void violation(const char* what);
    // Maps a segment offered in hello or shm_offer; false (and the reason logged) when refused.
    bool accept_segment(const internal::received& m);
    result<void> send_welcome(bool shm);
    void socket_main();
    void command_loop(internal::received& m);

    // --- backup.cpp ----------------------------------------------------------------------------

    void backup_command(internal::received& m);
    void send_reply(std::uint32_t token, std::int32_t status, std::uint32_t output_len, std::uint32_t flags,
                    std::span<const std::byte> output, const std::vector<unique_fd>& fds);

    // --- exec_scope.cpp ------------------------------------------------------------------------

    exec_result run_exec(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output);

    // --- channel_thread.cpp: slot commands -------------------------------------------------------

    void start_channel();
    void channel_main();
    // Wakes the client for the completions pushed quietly (channel thread only).
    void ring_completions();
    void slot_command(std::uint32_t slot);
    // channel_thread: pushed quietly, rung in a batch by channel_main (ring_completions).
    void complete_slot(std::uint32_t slot, std::uint32_t flags, exec_result r, const std::vector<unique_fd>& fds,
                       bool channel_thread);

    // --- teardown.cpp --------------------------------------------------------------------------

    void job_done(bool backup);
    void teardown(bool opened);

    server_shared& shared_;
    unique_fd sock_;
    std::uint64_t id_;
    pid_t pid_;
    std::thread socket_thread_;
    std::thread channel_thread_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> violated_{false};
    std::atomic<bool> finished_{false};

    internal::segment segment_;                   // set before the channel thread starts
    internal::ring_consumer cs_;                  // channel thread only
    std::mutex sc_mu_;
    internal::ring_producer sc_;                  // guarded by sc_mu_
    std::unique_ptr<std::atomic<std::uint8_t>[]> in_flight_;
    std::uint32_t unrung_ = 0;                    // channel thread only: quiet completions

    std::mutex mu_;
    std::condition_variable cv_;
    std::uint32_t executing_ = 0;                 // guarded by mu_: execs on workers
    std::uint32_t backup_on_workers_ = 0;         // guarded by mu_
};

}  // namespace datapump::ipc
