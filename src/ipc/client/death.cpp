// The end of a client's connection: the server's death (every outstanding command fails with
// peer_gone, the completion thread stops) and deinit (wait for the commands in flight, then join).
#include "client_impl.hpp"

#include <climits>
#include <sys/socket.h>

namespace datapump::ipc {

void client::impl::server_gone() {
    dead_.store(true, std::memory_order_seq_cst);
    channel* ch = channel_.load(std::memory_order_acquire);
    if (ch != nullptr) {
        ch->stop.store(true, std::memory_order_release);
        internal::ring_consumer::wake(ch->seg.sc_ring());
        ch->completion_thread.join();
        const std::uint32_t n = ch->seg.geo().slot_count;
        for (std::uint32_t i = 0; i < n; ++i) {
            slot_record& r = ch->slots[i];
            // Dekker pair with execute_slot (slots.cpp): dead_ store above, armed load here, both seq_cst.
            if (r.armed.load(std::memory_order_seq_cst) == 0) {
                continue;
            }
            if (r.sync) {
                // The caller sleeps on done: change the word, then wake (see wait_done, slots.cpp).
                internal::slot_header* h = ch->seg.slot(i);
                h->done.store(done_local, std::memory_order_seq_cst);
                internal::futex_wake_shared(h->done, INT_MAX);
            } else if (try_claim(r)) {
                complete_async_slot(*ch, i, fail(errc::peer_gone, "ipc execute: the server is gone"));
            }
        }
    }
    std::map<std::uint32_t, std::shared_ptr<command_record>> pending;
    {
        std::lock_guard lock(backup_mu_);
        pending.swap(backup_);
    }
    for (auto& [token, rec] : pending) {
        rec->failure = error{errc::peer_gone, 0, "ipc execute: the server is gone"};
        finish_backup(*rec, 2);
    }
    bump_progress();
}

void client::impl::command_done() {
    if (outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        bump_progress();
    }
}

void client::impl::bump_progress() {
    progress_.fetch_add(1, std::memory_order_release);
    progress_.notify_all();
}

void client::impl::deinit() {
    if (closing_.exchange(true)) {
        return;
    }
    if (direct_) {
        direct_->close();
        direct_.reset();
        return;
    }
    // Let the commands in flight finish (or fail, if the server goes meanwhile).
    for (;;) {
        const std::uint32_t seen = progress_.load(std::memory_order_acquire);
        if (outstanding_.load(std::memory_order_acquire) == 0 || dead_.load(std::memory_order_acquire)) {
            break;
        }
        progress_.wait(seen, std::memory_order_acquire);
    }
    if (sock_) {
        ::shutdown(sock_.get(), SHUT_RDWR);
    }
    if (socket_thread_.joinable()) {
        socket_thread_.join();  // runs server_gone(): the completion thread is joined there
    }
    channel_.store(nullptr, std::memory_order_release);
    owned_channel_.reset();
    sock_.reset();
}

}  // namespace datapump::ipc
