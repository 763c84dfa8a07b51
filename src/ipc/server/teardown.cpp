// The end of a socket connection (the client deinitialised or died, or the server disconnected it):
// stop the channel thread, wait for the execs running on workers, close, tell the listener.
#include "socket_connection.hpp"

#include <unistd.h>

#include <cstdint>
#include <sys/socket.h>

namespace datapump::ipc {

void socket_connection::job_done(bool backup) {
    {
        std::lock_guard lock(mu_);
        --executing_;
        if (backup) {
            --backup_on_workers_;
        }
    }
    cv_.notify_all();
}

void socket_connection::teardown(bool opened) {
    if (channel_thread_.joinable()) {
        stop_.store(true, std::memory_order_release);
        internal::ring_consumer::wake(segment_.cs_ring());
        channel_thread_.join();
    }
    {
        // Drain: every exec of this connection has returned before close.
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return executing_ == 0; });
    }
    if (opened && shared_.handlers.close) {
        shared_.handlers.close(*this);
    }
    segment_ = {};
    ::shutdown(sock_.get(), SHUT_RDWR);
    shared_.counters.clients_closed.fetch_add(1, std::memory_order_relaxed);
    shared_.counters.clients_now.fetch_sub(1, std::memory_order_relaxed);
    finished_.store(true, std::memory_order_release);
    // Tell the listener to join us and drop the socket now, not at the next accept.
    const std::uint64_t one = 1;
    (void)!::write(shared_.reap_fd, &one, sizeof(one));
}

}  // namespace datapump::ipc
