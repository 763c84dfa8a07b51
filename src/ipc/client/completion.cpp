// Completion of async slot commands: the s->c ring's one consumer at a time (the completion thread,
// or a submitter that found no free slot), and the claim that completes each command exactly once.
#include "datapump/base/internal/log.hpp"

#include "client_impl.hpp"

#include <algorithm>
#include <chrono>
#include <sys/socket.h>
#include <thread>

namespace datapump::ipc {

client::impl::reap_result client::impl::reap(channel& ch, std::uint32_t limit) {
    reap_result out;
    while (out.count < limit) {
        const internal::pop_result p = ch.sc.pop();
        if (p.status == internal::ring_status::empty) {
            return out;
        }
        if (p.status == internal::ring_status::corrupt) {
            server_broke("server-to-client ring indices corrupt");
            out.ring_ok = false;
            return out;
        }
        const std::uint32_t slot = ch.seg.slot_of(p.value);
        if (slot == internal::segment::no_slot || ch.slots[slot].armed.load(std::memory_order_acquire) == 0 ||
            ch.slots[slot].sync) {
            server_broke("completion for a slot with no async command");
            out.ring_ok = false;
            return out;
        }
        ++out.count;
        if (try_claim(ch.slots[slot])) {
            complete_async_slot(ch, slot, read_slot_reply(ch, slot, ch.slots[slot]));
        }
    }
    return out;
}

bool client::impl::help_reap(channel& ch) {
    if (!try_reaping(ch)) {
        return false;
    }
    const reap_result r = reap(ch, ch.seg.geo().slot_count);
    stop_reaping(ch);
    return r.count > 0;
}

std::uint32_t client::impl::wait_for_slot(channel& ch) {
    // Spinning callers wait up to 200 us; spin_then_sleep ones up to their spin time.
    const auto bound = options_.wait.strategy == wait_strategy::spin
                           ? std::chrono::microseconds{200}
                           : std::min(options_.wait.spin_for, std::chrono::microseconds{200});
    const auto until = std::chrono::steady_clock::now() + bound;
    for (;;) {
        const bool reaped = help_reap(ch);
        const std::uint32_t slot = take_slot(ch);
        if (slot != internal::segment::no_slot || dead_.load(std::memory_order_relaxed)) {
            return slot;
        }
        if (options_.wait.strategy == wait_strategy::sleep || std::chrono::steady_clock::now() >= until) {
            return internal::segment::no_slot;
        }
        if (!reaped) {
            std::this_thread::yield();  // the completion thread may hold the ring on our core
        }
    }
}

void client::impl::completion_main(channel& ch) {
    const wait_policy idle{wait_strategy::sleep, {}};
    for (;;) {
        if (!try_reaping(ch)) {
            std::this_thread::yield();  // a submitter is reaping; look again soon
            continue;
        }
        const reap_result r = reap(ch, 256);
        const std::uint32_t seen = ch.sc.position();
        stop_reaping(ch);
        if (!r.ring_ok) {
            return;
        }
        if (r.count > 0) {
            continue;
        }
        if (ch.stop.load(std::memory_order_acquire)) {
            return;
        }
        // Sync use (no async command out): sleep until the server rings, so a busy-polling
        // sync caller keeps its core. Async commands out: a `spin` client polls; otherwise
        // poll every 20 us without arming the doorbell, so the server never pays a wake-up
        // per batch and a submitter that runs out of slots reaps for itself (wait_for_slot).
        if (async_in_flight_.load(std::memory_order_relaxed) == 0) {
            ch.sc.wait_beyond(seen, idle, ch.stop);
        } else if (options_.wait.strategy == wait_strategy::spin) {
            ch.sc.wait_beyond(seen, options_.wait, ch.stop);
        } else {
            std::this_thread::sleep_for(std::chrono::microseconds{20});
        }
    }
}

void client::impl::complete_async_slot(channel& ch, std::uint32_t slot, outcome o) {
    const callbacks cb = ch.slots[slot].cb;
    if (!o) {
        failed_.fetch_add(1, std::memory_order_relaxed);
    }
    // Seed order: post callbacks (done in read_slot_reply), free the slot, then completion.
    async_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    free_slot(ch, slot);
    complete_async(cb, std::move(o));
    command_done();
}

void client::impl::server_broke(const char* what) {
    spdlog::warn("ipc client {}: the server broke the protocol ({}); disconnecting", endpoint_, what);
    ::shutdown(sock_.get(), SHUT_RDWR);  // the socket thread fails everything outstanding
}

}  // namespace datapump::ipc
