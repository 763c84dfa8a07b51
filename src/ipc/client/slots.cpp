// Slot commands: take a free slot (client-local map), fill its areas and header, push its offset on
// the c->s ring, and for a sync command wait on the slot's done word and read the reply there.
#include "client_impl.hpp"

namespace datapump::ipc {

using internal::read_field;
using internal::write_field;

std::uint32_t client::impl::take_slot(channel& ch) {
    const std::uint32_t n = ch.seg.geo().slot_count;
    const std::uint32_t start = ch.cursor.load(std::memory_order_relaxed);
    for (std::uint32_t k = 0; k < n; ++k) {
        const std::uint32_t i = (start + k) % n;
        std::uint32_t expected = 0;
        // SYNC POINT: acquire pairs with the release store that freed the slot: whoever
        // completed its last command is done with its record and areas.
        if (ch.slots[i].busy.load(std::memory_order_relaxed) == 0 &&
            ch.slots[i].busy.compare_exchange_strong(expected, 1, std::memory_order_seq_cst)) {
            ch.cursor.store(i + 1, std::memory_order_relaxed);
            return i;
        }
    }
    return internal::segment::no_slot;
}

void client::impl::free_slot(channel& ch, std::uint32_t slot) {
    slot_record& r = ch.slots[slot];
    r.cb = {};
    r.payload.clear();
    r.fds.clear();
    r.armed.store(0, std::memory_order_relaxed);
    r.busy.store(0, std::memory_order_release);
}

result<reply> client::impl::execute_slot(channel& ch, std::uint32_t slot, std::uint32_t code,
                                         std::span<const std::byte> input, std::span<std::byte> output,
                                         const callbacks& cb, exec_flags flags) {
    slot_record& r = ch.slots[slot];
    // Locals, not the record, after the push: once the server has the slot, an async command
    // can complete and the slot pass to another caller before this function returns.
    const bool sync = cb.completion == nullptr;
    const std::uint64_t ticket = ++r.tickets << 1U;
    r.cb = cb;
    r.input = input;
    r.output = output;
    r.sync = sync;
    r.state.store(0, std::memory_order_relaxed);
    internal::slot_header* h = ch.seg.slot(slot);
    prepare_areas(cb, input, ch.seg.input_area(slot).first(input.size()), output,
                  ch.seg.output_area(slot).first(output.size()));
    write_field(h->code, code);
    write_field(h->flags, (sync ? internal::flag_sync : 0U) | (flags.on_worker ? internal::flag_worker : 0U));
    write_field(h->input_len, static_cast<std::uint32_t>(input.size()));
    write_field(h->output_cap, static_cast<std::uint32_t>(output.size()));
    h->done.store(done_pending, std::memory_order_relaxed);
    h->waiting.store(0, std::memory_order_relaxed);
    r.claim.store(ticket, std::memory_order_relaxed);
    outstanding_.fetch_add(1, std::memory_order_relaxed);
    if (!sync) {
        async_in_flight_.fetch_add(1, std::memory_order_relaxed);
    }
    r.armed.store(1, std::memory_order_seq_cst);
    internal::ring_status pushed;
    {
        std::lock_guard lock(ch.submit_mu);
        pushed = ch.cs.push(ch.seg.offset_of(slot));  // release: the slot is written first
    }
    if (pushed != internal::ring_status::ok) {
        // Room for every slot is guaranteed by a correct server; this one broke the ring.
        if (!sync && !claim_ticket(r, ticket)) {
            return reply{};  // the death scan completed it already
        }
        if (!sync) {
            async_in_flight_.fetch_sub(1, std::memory_order_relaxed);
        }
        free_slot(ch, slot);
        command_done();
        failed_.fetch_add(1, std::memory_order_relaxed);
        return fail(errc::protocol_error, "ipc execute: the server's ring indices are corrupt");
    }
    slot_commands_.fetch_add(1, std::memory_order_relaxed);
    if (!sync) {
        // The server may have died before its death scan could see our armed store: then we
        // see dead_ here (seq_cst on both sides) and fail the command ourselves, unless a
        // completer got there first (the ticket: only this command, not a later user of the
        // slot).
        if (dead_.load(std::memory_order_seq_cst) && claim_ticket(r, ticket)) {
            complete_async_slot(ch, slot, fail(errc::peer_gone, "ipc execute: the server is gone"));
        }
        return reply{};
    }
    wait_done(h);
    return finish_sync_slot(ch, slot);
}

void client::impl::wait_done(internal::slot_header* h) {
    // A server that died before our push was seen: the socket thread may have scanned slots
    // before we took ours; dead_ (seq_cst, after our seq_cst slot CAS) covers that window.
    if (internal::spin_phase(options_.wait, [&] {
            return h->done.load(std::memory_order_acquire) != done_pending ||
                   dead_.load(std::memory_order_relaxed);
        })) {
        return;
    }
    for (;;) {
        // Dekker pair with the server's seq_cst done store and waiting load (complete_slot, server/channel_thread.cpp).
        h->waiting.store(1, std::memory_order_seq_cst);
        if (h->done.load(std::memory_order_seq_cst) != done_pending || dead_.load(std::memory_order_seq_cst)) {
            return;
        }
        internal::futex_wait_shared(h->done, done_pending);
    }
}

result<reply> client::impl::finish_sync_slot(channel& ch, std::uint32_t slot) {
    slot_record& r = ch.slots[slot];
    internal::slot_header* h = ch.seg.slot(slot);
    const std::uint32_t done = h->done.load(std::memory_order_acquire);
    result<reply> out = fail(errc::peer_gone, "ipc execute: the server is gone");
    if (done == done_by_server) {
        out = read_slot_reply(ch, slot, r);
    } else if (r.state.load(std::memory_order_acquire) == 1) {
        // Replied over the socket (descriptors attached); output stays in the slot.
        out = read_slot_reply(ch, slot, r);
        if (out) {
            out->fds = std::move(r.fds);
        }
    } else if (done != done_pending && !dead_.load(std::memory_order_acquire)) {
        out = fail(errc::protocol_error, "ipc execute: impossible completion word from the server");
    } else if (done == done_pending && !dead_.load(std::memory_order_acquire)) {
        out = fail(errc::protocol_error, "ipc execute: woken without a completion");
    }
    if (!out) {
        failed_.fetch_add(1, std::memory_order_relaxed);
    }
    free_slot(ch, slot);
    command_done();
    return out;
}

result<reply> client::impl::read_slot_reply(channel& ch, std::uint32_t slot, slot_record& r) {
    internal::slot_header* h = ch.seg.slot(slot);
    const std::int32_t status = read_field(h->status);
    const std::uint32_t len = read_field(h->output_len);
    if (len > r.output.size()) {
        return fail(errc::protocol_error, "ipc execute: the server wrote more output than offered");
    }
    return finish_command(r.cb, r.input, ch.seg.input_area(slot).first(r.input.size()), r.output,
                          ch.seg.output_area(slot).first(len), status);
}

}  // namespace datapump::ipc
