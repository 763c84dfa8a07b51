// A socket connection's channel thread: slot commands. Pops slot offsets from the c->s ring, checks
// what the client wrote, runs exec inline or on a worker, and completes each command through its
// slot's done word (sync) or the s->c ring (async; doorbell rung in batches).
#include "socket_connection.hpp"

#include <climits>

namespace datapump::ipc {

using internal::read_field;
using internal::write_field;

void socket_connection::start_channel() {
    const auto& g = segment_.geo();
    cs_ = internal::ring_consumer(segment_.cs_ring(), segment_.cs_entries(), g.ring_capacity);
    sc_ = internal::ring_producer(segment_.sc_ring(), segment_.sc_entries(), g.ring_capacity);
    in_flight_ = std::make_unique<std::atomic<std::uint8_t>[]>(g.slot_count);
    channel_thread_ = std::thread([this] { channel_main(); });
}

void socket_connection::channel_main() {
    const wait_policy policy = shared_.options.wait;
    for (;;) {
        const internal::pop_result p = cs_.pop();
        if (p.status == internal::ring_status::empty) {
            ring_completions();  // before we wait: the client may be sleeping on them
            if (stop_.load(std::memory_order_acquire)) {
                return;
            }
            cs_.wait(policy, stop_);
            continue;
        }
        if (p.status == internal::ring_status::corrupt) {
            violation("client-to-server ring indices corrupt");
            return;
        }
        const std::uint32_t slot = segment_.slot_of(p.value);
        if (slot == internal::segment::no_slot) {
            violation("ring entry is not a slot offset");
            return;
        }
        // Acquire pairs with complete_slot's release clear. A stale 1 can only make us cut off
        // a client that resubmitted a slot before seeing its completion, which a correct
        // client never does.
        if (in_flight_[slot].exchange(1, std::memory_order_acquire) != 0) {
            violation("slot submitted twice");
            return;
        }
        slot_command(slot);
        if (unrung_ >= 32) {
            ring_completions();
        }
    }
}

void socket_connection::ring_completions() {
    if (unrung_ == 0) {
        return;
    }
    unrung_ = 0;
    std::lock_guard lock(sc_mu_);
    sc_.ring();
}

void socket_connection::slot_command(std::uint32_t slot) {
    internal::slot_header* h = segment_.slot(slot);
    const std::uint32_t code = read_field(h->code);
    const std::uint32_t flags = read_field(h->flags);
    const std::uint32_t input_len = read_field(h->input_len);
    const std::uint32_t output_cap = read_field(h->output_cap);
    shared_.counters.slot_commands.fetch_add(1, std::memory_order_relaxed);
    if (input_len > segment_.geo().input_capacity || output_cap > segment_.geo().output_capacity) {
        shared_.counters.bad_commands.fetch_add(1, std::memory_order_relaxed);
        complete_slot(slot, flags, {bad_command, 0}, {}, true);
        return;
    }
    if ((flags & internal::flag_worker) == 0) {
        scoped_exec scope(this);
        const exec_result r = run_exec(code, segment_.input_area(slot).first(input_len),
                                       segment_.output_area(slot).first(output_cap));
        complete_slot(slot, flags, r, scope.scope.fds, true);
        return;
    }
    {
        std::lock_guard lock(mu_);
        ++executing_;
    }
    shared_.pool->post([self = shared_from_this(), slot, flags, code, input_len, output_cap] {
        {
            scoped_exec scope(self.get());
            const exec_result r = self->run_exec(code, self->segment_.input_area(slot).first(input_len),
                                                 self->segment_.output_area(slot).first(output_cap));
            self->complete_slot(slot, flags, r, scope.scope.fds, false);
        }
        self->job_done(false);
    });
}

void socket_connection::complete_slot(std::uint32_t slot, std::uint32_t flags, exec_result r,
                                      const std::vector<unique_fd>& fds, bool channel_thread) {
    internal::slot_header* h = segment_.slot(slot);
    write_field(h->status, r.status);
    write_field(h->output_len, r.output_len);
    // SYNC POINT: release pairs with the channel thread's acquire exchange when the client
    // submits this slot again; the client resubmits only after seeing the completion below.
    in_flight_[slot].store(0, std::memory_order_release);
    if (!fds.empty()) {
        // Descriptors travel only on the socket; the output stays in the slot.
        send_reply(slot, r.status, r.output_len, internal::reply_for_slot, {}, fds);
        return;
    }
    if ((flags & internal::flag_sync) != 0) {
        // SYNC POINT: the store (seq_cst, so also release) pairs with the caller's acquire load
        // of done: status, output_len and the output bytes are visible once done is. The done
        // store and the waiting load are seq_cst, the Dekker pair of the caller's seq_cst
        // waiting store and done re-read (client/slots.cpp wait_done): one of us sees the other.
        h->done.store(1, std::memory_order_seq_cst);
        if (h->waiting.load(std::memory_order_seq_cst) != 0) {
            internal::futex_wake_shared(h->done, INT_MAX);
        }
        return;
    }
    internal::ring_status pushed;
    {
        std::lock_guard lock(sc_mu_);
        pushed = sc_.push(segment_.offset_of(slot), !channel_thread);
    }
    if (channel_thread) {
        ++unrung_;
    }
    if (pushed != internal::ring_status::ok) {
        // A correct client always has room: at most one completion per slot is pending.
        violation(pushed == internal::ring_status::full ? "server-to-client ring full"
                                                        : "server-to-client ring indices corrupt");
    }
}

}  // namespace datapump::ipc
