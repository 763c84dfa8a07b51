// The client side of the command channel: slots, the completion and socket threads, the backup
// path, death handling, the in-process path. See docs/ipc.md.
#include "datapump/ipc/client.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/ipc/internal/direct.hpp"
#include "datapump/ipc/internal/segment.hpp"
#include "datapump/ipc/internal/wire.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace datapump::ipc {

using internal::msg;
using internal::wire_header;

namespace {

// Values of a slot's done word.
constexpr std::uint32_t done_pending = 0;
constexpr std::uint32_t done_by_server = 1;
constexpr std::uint32_t done_local = 2;  // written by this client: the server died, or replied by socket

using internal::read_field;
using internal::write_field;

// Runs the post callbacks (or the default copy-out) and returns the reply, for every path.
reply finish_command(const callbacks& cb, std::span<const std::byte> input, std::span<const std::byte> input_area,
                     std::span<std::byte> output, std::span<const std::byte> output_area, std::int32_t status) {
    if (cb.input_post != nullptr) {
        cb.input_post(cb.context, input, input_area);
    }
    if (cb.output_post != nullptr) {
        cb.output_post(cb.context, output, output_area);
    } else if (!output_area.empty() && output_area.data() != output.data()) {
        std::memcpy(output.data(), output_area.data(), output_area.size());
    }
    reply r;
    r.status = status;
    r.output_len = static_cast<std::uint32_t>(output_area.size());
    return r;
}

void prepare_areas(const callbacks& cb, std::span<const std::byte> input, std::span<std::byte> input_area,
                   std::span<std::byte> output, std::span<std::byte> output_area) {
    if (cb.input_prepare != nullptr) {
        cb.input_prepare(cb.context, input, input_area);
    } else if (!input.empty()) {
        std::memcpy(input_area.data(), input.data(), input.size());
    }
    if (cb.output_prepare != nullptr) {
        cb.output_prepare(cb.context, output, output_area);
    }
}

void complete_async(const callbacks& cb, outcome o) { cb.completion(cb.context, o); }

// Descriptors a command may carry: at most max_fds, each open (checked before anything is sent,
// so a bad one fails the command cleanly instead of the socket send).
result<void> check_fds(std::span<const int> fds) {
    if (fds.size() > internal::max_fds) {
        return fail(errc::invalid_argument, "ipc execute: more than 16 descriptors");
    }
    for (const int fd : fds) {
        if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
            const int why = fd < 0 ? EBADF : errno;
            return fail(errc::invalid_argument, "ipc execute: a descriptor to send is not open", why);
        }
    }
    return {};
}

}  // namespace

// One command in flight: what the caller passed, kept in client memory (never in the segment).
struct command_record {
    callbacks cb;
    std::span<const std::byte> input;
    std::span<std::byte> output;
    bool sync = false;
    // Backup commands and socket replies to slot commands: the reply the socket thread received.
    std::atomic<std::uint32_t> state{0};  // 0 pending, 1 replied, 2 failed
    std::int32_t status = 0;
    std::vector<std::byte> payload;
    std::vector<unique_fd> fds;
    error failure{};
    std::vector<std::byte> sent;  // backup: the message as sent (its input area, for input_post)
};

struct slot_record : command_record {
    // 0 free, 1 taken. Taken by CAS (any executing thread); freed by whoever completed it.
    std::atomic<std::uint32_t> busy{0};
    // 1 once the record is filled and the command may be failed by the socket thread's death scan
    // (Dekker pair with dead_: see execute_slot and server_gone).
    std::atomic<std::uint32_t> armed{0};
    // Async commands: claim = ticket << 1 | claimed. Whoever sets the claimed bit completes the
    // command (the completion thread, the socket thread, or a caller that saw the server die):
    // exactly once. The ticket (bumped per use of the slot) keeps a late caller from claiming a
    // later command that reuses the slot.
    std::atomic<std::uint64_t> claim{0};
    std::uint64_t tickets = 0;  // only the slot's current taker touches it
};

// The shared-memory half, once set up. Never replaced while the client lives.
struct channel {
    internal::segment seg;
    std::unique_ptr<slot_record[]> slots;
    std::atomic<std::uint32_t> cursor{0};   // relaxed hint where to look for a free slot
    std::mutex submit_mu;
    internal::ring_producer cs;             // guarded by submit_mu
    internal::ring_consumer sc;             // whoever holds `reaping`
    std::atomic<bool> reaping{false};
    std::atomic<bool> stop{false};
    std::thread completion_thread;
};

class client::impl {
public:
    impl(std::string endpoint, client_options options)
        : geometry_(internal::make_geometry(options.slots, options.input_capacity, options.output_capacity)),
          endpoint_(std::move(endpoint)),
          options_(std::move(options)) {}

    ~impl() { deinit(); }

    // --- set-up ------------------------------------------------------------------------------

    result<void> connect() {
        if (options_.in_process) {
            auto link = internal::open_direct(endpoint_, options_.on_notify);
            if (!link) {
                return std::unexpected(link.error());
            }
            if (*link) {
                direct_ = std::move(*link);
                return {};
            }
        }
        auto sock = internal::connect_endpoint(endpoint_);
        if (!sock) {
            return std::unexpected(sock.error());
        }
        sock_ = std::move(*sock);
        internal::size_socket_buffers(sock_.get(), std::size_t{options_.max_message} * 4 + 4096);
        std::optional<internal::segment> seg;
        if (options_.use_shared_memory) {
            seg = make_segment();
        }
        // A server that refuses this process sends its refusal and closes at once, maybe before
        // the hello arrives: the refusal is still read below.
        if (auto sent = send_offer(msg::hello, seg ? &*seg : nullptr); !sent && sent.error().code != errc::peer_gone) {
            return sent;
        }
        internal::received m;
        auto got = internal::receive_message(sock_.get(), 0, m);
        if (!got) {
            return std::unexpected(got.error().code == errc::peer_gone
                                       ? error{errc::peer_gone, 0, "ipc init: the server closed the connection"}
                                       : got.error());
        }
        if (m.header.type != static_cast<std::uint32_t>(msg::welcome)) {
            return fail(errc::protocol_error, "ipc init: no welcome from the server");
        }
        if ((m.header.flags & internal::welcome_refused) != 0) {
            return fail(errc::peer_gone,
                        "ipc init: the server refused this process (its uid/gid is not allowed on the endpoint)",
                        EACCES);
        }
        if (seg && m.header.status == 0) {
            activate(std::move(*seg));
        } else if (seg) {
            shm_failed();
        }
        socket_thread_ = std::thread([this] { socket_main(); });
        return {};
    }

    std::optional<internal::segment> make_segment() {
        if (options_.simulate_shm_failure) {
            shm_failed();
            return std::nullopt;
        }
        auto seg = internal::segment::create(geometry_);
        if (!seg) {
            spdlog::info("ipc client {}: shared memory set-up failed ({}); backup mode", endpoint_,
                      describe(seg.error()));
            shm_failed();
            return std::nullopt;
        }
        return std::move(*seg);
    }

    void shm_failed() {
        shm_setups_failed_.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(retry_mu_);
        next_retry_ = std::chrono::steady_clock::now() + options_.shm_retry;
    }

    result<void> send_offer(msg type, const internal::segment* seg) {
        wire_header h{};
        h.type = static_cast<std::uint32_t>(type);
        h.code = geometry_.slot_count;
        h.a = geometry_.input_capacity;
        h.b = geometry_.output_capacity;
        h.pid = static_cast<std::uint32_t>(::getpid());
        int fd = seg != nullptr ? seg->fd() : -1;
        return internal::send_message(sock_.get(), h, {}, seg != nullptr ? std::span<const int>(&fd, 1)
                                                                          : std::span<const int>());
    }

    void activate(internal::segment seg) {
        auto ch = std::make_unique<channel>();
        const auto& g = seg.geo();
        ch->slots = std::make_unique<slot_record[]>(g.slot_count);
        ch->cs = internal::ring_producer(seg.cs_ring(), seg.cs_entries(), g.ring_capacity);
        ch->sc = internal::ring_consumer(seg.sc_ring(), seg.sc_entries(), g.ring_capacity);
        ch->seg = std::move(seg);
        channel* raw = ch.get();
        raw->completion_thread = std::thread([this, raw] { completion_main(*raw); });
        owned_channel_ = std::move(ch);
        // SYNC POINT: release pairs with execute()'s acquire load: a thread that sees the channel
        // sees it fully built.
        channel_.store(raw, std::memory_order_release);
    }

    // Offers a new segment when the last one failed and the retry interval has passed.
    void maybe_retry_segment() {
        if (!options_.use_shared_memory || offer_pending_.load(std::memory_order_relaxed)) {
            return;
        }
        {
            std::lock_guard lock(retry_mu_);
            if (std::chrono::steady_clock::now() < next_retry_ || offer_pending_.load(std::memory_order_relaxed)) {
                return;
            }
            next_retry_ = std::chrono::steady_clock::now() + options_.shm_retry;
            offer_pending_.store(true, std::memory_order_relaxed);
        }
        auto seg = make_segment();
        if (!seg) {
            offer_pending_.store(false, std::memory_order_relaxed);
            return;
        }
        std::lock_guard lock(retry_mu_);
        if (!send_offer(msg::shm_offer, &*seg)) {
            offer_pending_.store(false, std::memory_order_relaxed);
            return;
        }
        offered_ = std::move(*seg);  // the socket thread activates it on the server's welcome
    }

    // --- execute -------------------------------------------------------------------------------

    result<reply> execute(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                          const callbacks& cb, exec_flags flags) {
        if (closing_.load(std::memory_order_acquire)) {
            return fail(errc::closed, "ipc execute: the client is being deinitialised");
        }
        if (auto ok = check_fds(flags.fds); !ok) {
            return std::unexpected(ok.error());
        }
        if (direct_) {
            return execute_direct(code, input, output, cb, flags.fds);
        }
        if (dead_.load(std::memory_order_acquire)) {
            return fail(errc::peer_gone, "ipc execute: the server is gone");
        }
        channel* ch = channel_.load(std::memory_order_acquire);
        if (ch == nullptr) {
            maybe_retry_segment();
        } else if (flags.fds.empty() && input.size() <= ch->seg.geo().input_capacity &&
                   output.size() <= ch->seg.geo().output_capacity) {
            // Descriptors travel only on the socket: such a command is a backup command.
            std::uint32_t slot = take_slot(*ch);
            if (slot == internal::segment::no_slot) {
                slot = wait_for_slot(*ch);
            }
            if (slot != internal::segment::no_slot) {
                return execute_slot(*ch, slot, code, input, output, cb, flags);
            }
        }
        return execute_backup(code, input, output, cb, flags);
    }

    std::uint32_t take_slot(channel& ch) {
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

    void free_slot(channel& ch, std::uint32_t slot) {
        slot_record& r = ch.slots[slot];
        r.cb = {};
        r.payload.clear();
        r.fds.clear();
        r.armed.store(0, std::memory_order_relaxed);
        r.busy.store(0, std::memory_order_release);
    }

    result<reply> execute_slot(channel& ch, std::uint32_t slot, std::uint32_t code, std::span<const std::byte> input,
                               std::span<std::byte> output, const callbacks& cb, exec_flags flags) {
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

    // Waits for a sync slot's done word: the server's store, or this client's (death, socket reply).
    void wait_done(internal::slot_header* h) {
        // A server that died before our push was seen: the socket thread may have scanned slots
        // before we took ours; dead_ (seq_cst, after our seq_cst slot CAS) covers that window.
        if (internal::spin_phase(options_.wait, [&] {
                return h->done.load(std::memory_order_acquire) != done_pending ||
                       dead_.load(std::memory_order_relaxed);
            })) {
            return;
        }
        for (;;) {
            // Dekker pair with the server's seq_cst done store and waiting load (complete_slot).
            h->waiting.store(1, std::memory_order_seq_cst);
            if (h->done.load(std::memory_order_seq_cst) != done_pending || dead_.load(std::memory_order_seq_cst)) {
                return;
            }
            internal::futex_wait_shared(h->done, done_pending);
        }
    }

    result<reply> finish_sync_slot(channel& ch, std::uint32_t slot) {
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

    // Reads status and output length the server wrote; runs the post callbacks.
    result<reply> read_slot_reply(channel& ch, std::uint32_t slot, slot_record& r) {
        internal::slot_header* h = ch.seg.slot(slot);
        const std::int32_t status = read_field(h->status);
        const std::uint32_t len = read_field(h->output_len);
        if (len > r.output.size()) {
            return fail(errc::protocol_error, "ipc execute: the server wrote more output than offered");
        }
        return finish_command(r.cb, r.input, ch.seg.input_area(slot).first(r.input.size()), r.output,
                              ch.seg.output_area(slot).first(len), status);
    }

    // --- the completion thread (async slot commands) ---------------------------------------------

    struct reap_result {
        std::uint32_t count = 0;
        bool ring_ok = true;  // false: the server broke the ring (it is being cut off)
    };

    // Pops and completes what the server finished, at most `limit`. Only the holder of
    // ch.reaping (the completion thread, or a submitter that found no free slot) calls this: the
    // ring has one consumer at a time.
    reap_result reap(channel& ch, std::uint32_t limit) {
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

    // Takes the consumer end of the s->c ring if nobody holds it. An atomic flag, not a mutex:
    // a completion callback that executes again may come back here on the same thread.
    static bool try_reaping(channel& ch) { return !ch.reaping.exchange(true, std::memory_order_acquire); }
    static void stop_reaping(channel& ch) { ch.reaping.store(false, std::memory_order_release); }

    // A submitter with no free slot completes finished commands itself (no thread switch: on a
    // machine with few cores the completion thread may be waiting for our core). True when it
    // freed at least one slot.
    bool help_reap(channel& ch) {
        if (!try_reaping(ch)) {
            return false;
        }
        const reap_result r = reap(ch, ch.seg.geo().slot_count);
        stop_reaping(ch);
        return r.count > 0;
    }

    // No slot free: complete finished commands ourselves, or give the ones in flight a moment
    // (spin_for) to finish; the caller goes over the socket only if none does.
    std::uint32_t wait_for_slot(channel& ch) {
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

    void completion_main(channel& ch) {
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

    // Claims the slot's current command (the one a ring entry or the death scan refers to).
    static bool try_claim(slot_record& r) {
        std::uint64_t w = r.claim.load(std::memory_order_acquire);
        return (w & 1U) == 0 && r.claim.compare_exchange_strong(w, w | 1U, std::memory_order_acq_rel);
    }
    // Claims the command with this ticket only.
    static bool claim_ticket(slot_record& r, std::uint64_t ticket) {
        std::uint64_t expected = ticket;
        return r.claim.compare_exchange_strong(expected, ticket | 1U, std::memory_order_acq_rel);
    }

    // Only the winner of the record's claim calls this.
    void complete_async_slot(channel& ch, std::uint32_t slot, outcome o) {
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

    void server_broke(const char* what) {
        spdlog::warn("ipc client {}: the server broke the protocol ({}); disconnecting", endpoint_, what);
        ::shutdown(sock_.get(), SHUT_RDWR);  // the socket thread fails everything outstanding
    }

    // --- backup commands --------------------------------------------------------------------------

    result<reply> execute_backup(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                                 const callbacks& cb, exec_flags flags) {
        if (input.size() > options_.max_message || output.size() > options_.max_message) {
            return fail(errc::invalid_argument, "ipc execute: input or output larger than max_message");
        }
        auto rec = std::make_shared<command_record>();
        rec->cb = cb;
        rec->input = input;
        rec->output = output;
        rec->sync = cb.completion == nullptr;
        const bool prepared_output = cb.output_prepare != nullptr;
        std::vector<std::byte> message(input.size() + (prepared_output ? output.size() : 0));
        prepare_areas(cb, input, std::span(message).first(input.size()), output,
                      prepared_output ? std::span(message).subspan(input.size()) : std::span<std::byte>());
        wire_header h{};
        h.type = static_cast<std::uint32_t>(msg::command);
        h.code = code;
        h.flags = (flags.on_worker ? internal::flag_worker : 0U) |
                  (prepared_output ? internal::flag_prepared_output : 0U);
        h.a = static_cast<std::uint32_t>(input.size());
        h.b = static_cast<std::uint32_t>(output.size());
        // The record keeps the message: its input area is what input_post shows. It is complete
        // before the record is visible to the socket thread (which may fail it at once).
        rec->sent = std::move(message);
        {
            std::lock_guard lock(backup_mu_);
            if (dead_.load(std::memory_order_acquire)) {
                return fail(errc::peer_gone, "ipc execute: the server is gone");
            }
            h.token = next_token_++;
            outstanding_.fetch_add(1, std::memory_order_relaxed);  // before anyone can complete it
            backup_[h.token] = rec;
        }
        if (auto sent = internal::send_message(sock_.get(), h, rec->sent, flags.fds); !sent) {
            bool ours = false;
            {
                std::lock_guard lock(backup_mu_);
                ours = backup_.erase(h.token) == 1;
            }
            if (ours) {
                command_done();
                return std::unexpected(sent.error());
            }
            // The socket thread failed it already (the server died as we sent).
        }
        backup_commands_.fetch_add(1, std::memory_order_relaxed);
        if (!rec->sync) {
            return reply{};
        }
        rec->state.wait(0, std::memory_order_acquire);
        result<reply> out = backup_outcome(*rec);
        command_done();
        return out;
    }

    // After the socket thread filled the record: the reply and post callbacks, or the failure.
    result<reply> backup_outcome(command_record& rec) {
        const auto input_area = std::span<const std::byte>(rec.sent).first(rec.input.size());
        if (rec.state.load(std::memory_order_acquire) != 1) {
            failed_.fetch_add(1, std::memory_order_relaxed);
            return std::unexpected(rec.failure);
        }
        if (rec.payload.size() > rec.output.size()) {
            failed_.fetch_add(1, std::memory_order_relaxed);
            return fail(errc::protocol_error, "ipc execute: the server replied with more output than offered");
        }
        reply r = finish_command(rec.cb, rec.input, input_area, rec.output, rec.payload, rec.status);
        r.fds = std::move(rec.fds);
        return r;
    }

    // --- the socket thread ------------------------------------------------------------------------

    void socket_main() {
        internal::received m;
        const std::size_t max_payload = std::size_t{options_.max_message} * 2;
        for (;;) {
            auto got = internal::receive_message(sock_.get(), max_payload, m);
            if (!got) {
                if (got.error().code == errc::protocol_error) {
                    spdlog::warn("ipc client {}: {}", endpoint_, got.error().what);
                }
                break;
            }
            const auto type = static_cast<msg>(m.header.type);
            if (type == msg::reply && (m.header.flags & internal::reply_for_slot) != 0) {
                if (!slot_reply(m)) {
                    break;
                }
            } else if (type == msg::reply) {
                backup_reply(m);
            } else if (type == msg::notify) {
                if (options_.on_notify) {
                    options_.on_notify(m.header.code, m.payload);
                }
            } else if (type == msg::welcome) {
                offer_answered(m.header.status == 0);
            } else {
                spdlog::warn("ipc client {}: unexpected message type {} from the server", endpoint_, m.header.type);
                break;
            }
        }
        server_gone();
    }

    void offer_answered(bool accepted) {
        std::optional<internal::segment> seg;
        {
            std::lock_guard lock(retry_mu_);
            seg = std::move(offered_);
            offered_.reset();
        }
        if (accepted && seg && channel_.load(std::memory_order_acquire) == nullptr) {
            activate(std::move(*seg));
            spdlog::info("ipc client {}: shared memory set up; leaving backup mode", endpoint_);
        } else if (!accepted) {
            shm_failed();
        }
        offer_pending_.store(false, std::memory_order_relaxed);
    }

    // A reply over the socket to a slot command (the handler attached descriptors).
    bool slot_reply(internal::received& m) {
        channel* ch = channel_.load(std::memory_order_acquire);
        const std::uint32_t slot = m.header.token;
        if (ch == nullptr || slot >= ch->seg.geo().slot_count ||
            ch->slots[slot].armed.load(std::memory_order_acquire) == 0) {
            spdlog::warn("ipc client {}: socket reply for a slot with no command", endpoint_);
            return false;
        }
        slot_record& r = ch->slots[slot];
        r.fds = std::move(m.fds);
        if (!r.sync) {
            if (!try_claim(r)) {
                return true;
            }
            complete_async_slot(*ch, slot, [&]() -> outcome {
                auto o = read_slot_reply(*ch, slot, r);
                if (o) {
                    o->fds = std::move(r.fds);
                }
                return o;
            }());
            return true;
        }
        r.state.store(1, std::memory_order_release);
        internal::slot_header* h = ch->seg.slot(slot);
        h->done.store(done_local, std::memory_order_release);
        internal::futex_wake_shared(h->done, INT_MAX);
        return true;
    }

    void backup_reply(internal::received& m) {
        std::shared_ptr<command_record> rec;
        {
            std::lock_guard lock(backup_mu_);
            auto it = backup_.find(m.header.token);
            if (it == backup_.end()) {
                spdlog::warn("ipc client {}: reply for an unknown command", endpoint_);
                return;
            }
            rec = std::move(it->second);
            backup_.erase(it);
        }
        if ((m.header.flags & internal::reply_bad) != 0 || m.header.a != m.payload.size()) {
            rec->failure = error{errc::protocol_error, 0,
                                 (m.header.flags & internal::reply_bad) != 0
                                     ? "ipc execute: the server refused the command as malformed"
                                     : "ipc execute: reply length disagrees with its payload"};
            finish_backup(*rec, 2);
            return;
        }
        rec->status = m.header.status;
        rec->payload = std::move(m.payload);
        rec->fds = std::move(m.fds);
        m.payload = {};
        finish_backup(*rec, 1);
    }

    void finish_backup(command_record& rec, std::uint32_t state) {
        if (rec.sync) {
            rec.state.store(state, std::memory_order_release);
            rec.state.notify_all();
            return;
        }
        rec.state.store(state, std::memory_order_relaxed);
        outcome o = backup_outcome(rec);
        complete_async(rec.cb, std::move(o));
        command_done();
    }

    // The server is gone (or we closed): fail everything outstanding, stop the completion thread.
    void server_gone() {
        dead_.store(true, std::memory_order_seq_cst);
        channel* ch = channel_.load(std::memory_order_acquire);
        if (ch != nullptr) {
            ch->stop.store(true, std::memory_order_release);
            internal::ring_consumer::wake(ch->seg.sc_ring());
            ch->completion_thread.join();
            const std::uint32_t n = ch->seg.geo().slot_count;
            for (std::uint32_t i = 0; i < n; ++i) {
                slot_record& r = ch->slots[i];
                // Dekker pair with execute_slot: dead_ store above, armed load here, both seq_cst.
                if (r.armed.load(std::memory_order_seq_cst) == 0) {
                    continue;
                }
                if (r.sync) {
                    // The caller sleeps on done: change the word, then wake (see wait_done).
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

    // --- in-process ---------------------------------------------------------------------------------

    result<reply> execute_direct(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                                 const callbacks& cb, std::span<const int> fds) {
        // The server's copies of the descriptors, as SCM_RIGHTS would make them: the caller keeps
        // its own; exec closes what its handler does not take.
        std::vector<unique_fd> copies;
        copies.reserve(fds.size());
        for (const int fd : fds) {
            unique_fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
            if (!copy) {
                return fail_errno("ipc execute: duplicating a descriptor to send");
            }
            copies.push_back(std::move(copy));
        }
        // Areas: the caller's own buffers unless a prepare callback wants somewhere to build.
        std::vector<std::byte> in_area;
        std::vector<std::byte> out_area;
        std::span<const std::byte> in = input;
        std::span<std::byte> out = output;
        if (cb.input_prepare != nullptr) {
            in_area.resize(input.size());
            cb.input_prepare(cb.context, input, in_area);
            in = in_area;
        }
        if (cb.output_prepare != nullptr || cb.output_post != nullptr) {
            out_area.resize(output.size());
            out = out_area;
            if (cb.output_prepare != nullptr) {
                cb.output_prepare(cb.context, output, out_area);
            }
        }
        direct_commands_.fetch_add(1, std::memory_order_relaxed);
        auto r = direct_->exec(code, in, out, std::move(copies));
        outcome o = std::move(r);
        if (o) {
            std::vector<unique_fd> attached = std::move(o->fds);
            o = finish_command(cb, input, in, output, out.first(o->output_len), o->status);
            o->fds = std::move(attached);
        } else {
            failed_.fetch_add(1, std::memory_order_relaxed);
        }
        if (cb.completion == nullptr) {
            return o;
        }
        complete_async(cb, std::move(o));
        return reply{};
    }

    // --- deinit ------------------------------------------------------------------------------------

    void command_done() {
        if (outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            bump_progress();
        }
    }

    // Wakes deinit(): it waits on this word, read before it checks outstanding_ and dead_, so a
    // change of either after its check is never missed.
    void bump_progress() {
        progress_.fetch_add(1, std::memory_order_release);
        progress_.notify_all();
    }

    void deinit() {
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

    client_stats stats() const {
        client_stats s;
        s.slot_commands = slot_commands_.load(std::memory_order_relaxed);
        s.backup_commands = backup_commands_.load(std::memory_order_relaxed);
        s.direct_commands = direct_commands_.load(std::memory_order_relaxed);
        s.failed_commands = failed_.load(std::memory_order_relaxed);
        s.shm_setups_failed = shm_setups_failed_.load(std::memory_order_relaxed);
        s.shared_memory = channel_.load(std::memory_order_acquire) != nullptr;
        return s;
    }

    bool peer_gone() const {
        return direct_ ? direct_->gone() : dead_.load(std::memory_order_acquire);
    }

    result<void> notify(std::uint32_t code, std::span<const std::byte> payload) {
        if (payload.size() > options_.max_message) {
            return fail(errc::invalid_argument, "ipc notify: payload larger than max_message");
        }
        if (direct_) {
            return direct_->notify_server(code, payload);
        }
        if (dead_.load(std::memory_order_acquire)) {
            return fail(errc::peer_gone, "ipc notify: the server is gone");
        }
        wire_header h{};
        h.type = static_cast<std::uint32_t>(msg::notify);
        h.code = code;
        return internal::send_message(sock_.get(), h, payload);
    }

private:
    const internal::geometry geometry_;  // of the segments this client offers
    std::string endpoint_;
    client_options options_;
    unique_fd sock_;
    std::thread socket_thread_;
    std::shared_ptr<internal::direct_link> direct_;

    std::atomic<channel*> channel_{nullptr};
    std::unique_ptr<channel> owned_channel_;  // set once (connect or the socket thread), freed by deinit

    std::mutex retry_mu_;
    std::chrono::steady_clock::time_point next_retry_{};  // guarded by retry_mu_
    std::optional<internal::segment> offered_;            // guarded by retry_mu_
    std::atomic<bool> offer_pending_{false};

    std::mutex backup_mu_;
    std::uint32_t next_token_ = 1;                                          // guarded by backup_mu_
    std::map<std::uint32_t, std::shared_ptr<command_record>> backup_;      // guarded by backup_mu_

    std::atomic<bool> dead_{false};
    std::atomic<bool> closing_{false};
    std::atomic<std::uint64_t> outstanding_{0};
    std::atomic<std::uint32_t> progress_{0};  // bumped when outstanding_ reaches 0 or the server goes
    std::atomic<std::uint64_t> async_in_flight_{0};  // slot commands only; a hint for waiting

    std::atomic<std::uint64_t> slot_commands_{0};
    std::atomic<std::uint64_t> backup_commands_{0};
    std::atomic<std::uint64_t> direct_commands_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> shm_setups_failed_{0};
};

result<std::unique_ptr<client>> client::init(std::string_view endpoint, client_options options) {
    if (options.slots == 0 || options.slots > 4096 || options.max_message == 0 ||
        options.input_capacity > (1U << 20) || options.output_capacity > (1U << 20)) {
        return fail(errc::invalid_argument, "ipc init: slots must be 1..4096, capacities at most 1 MiB");
    }
    auto i = std::make_unique<impl>(std::string(endpoint), std::move(options));
    if (auto ok = i->connect(); !ok) {
        return std::unexpected(ok.error());
    }
    return std::unique_ptr<client>(new client(std::move(i)));
}

client::client(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
client::~client() = default;

result<reply> client::execute(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                              const callbacks& cb, exec_flags flags) {
    return impl_->execute(code, input, output, cb, flags);
}

result<void> client::notify(std::uint32_t code, std::span<const std::byte> payload) {
    return impl_->notify(code, payload);
}

void client::deinit() { impl_->deinit(); }
client_stats client::stats() const { return impl_->stats(); }
bool client::peer_gone() const { return impl_->peer_gone(); }

}  // namespace datapump::ipc
