// File: src/ipc/client/client_impl.hpp
//
// The private interface between the pieces of the client side of the command channel (see
// docs/ipc.md): what a command in flight keeps in client memory (never in the segment), the
// shared-memory half once set up, and client::impl, whose methods live one job per file:
//
//   client.cpp         the public API; execute() picks a command's path; stats, notify
//   callbacks.cpp      the seed's callback order, shared by every path
//   setup.cpp          connect (hello/welcome), the segment, its later retry (shm_offer)
//   slots.cpp          slot commands: take a slot, fill and push it, wait (sync), read the reply
//   completion.cpp     the s->c ring's one consumer: the completion thread, or a submitter
//                      with no free slot; the claim that completes an async command once
//   backup.cpp         backup commands: whole over the socket, and their replies
//   socket_thread.cpp  the socket thread: everything the server sends
//   death.cpp          the server gone (fail everything outstanding), deinit (drain, join)
//   direct.cpp         the in-process path: the server's handlers called directly
//
// Thread-safety: as include/datapump/ipc/client.hpp; each field says who may touch it.
#pragma once

#include "datapump/ipc/client.hpp"
#include "datapump/ipc/internal/direct.hpp"
#include "datapump/ipc/internal/segment.hpp"
#include "datapump/ipc/internal/wire.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace datapump::ipc {

// Values of a slot's done word.
inline constexpr std::uint32_t done_pending = 0;
inline constexpr std::uint32_t done_by_server = 1;
inline constexpr std::uint32_t done_local = 2;  // written by this client: the server died, or replied by socket

// callbacks.cpp. Runs the post callbacks (or the default copy-out) and returns the reply, for
// every path.
reply finish_command(const callbacks& cb, std::span<const std::byte> input, std::span<const std::byte> input_area,
                     std::span<std::byte> output, std::span<const std::byte> output_area, std::int32_t status);
// callbacks.cpp. Runs the prepare callbacks (or copies the input into its area).
void prepare_areas(const callbacks& cb, std::span<const std::byte> input, std::span<std::byte> input_area,
                   std::span<std::byte> output, std::span<std::byte> output_area);
// callbacks.cpp. Hands an async command's outcome to its completion callback.
void complete_async(const callbacks& cb, outcome o);

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
    // (Dekker pair with dead_: see execute_slot in slots.cpp and server_gone in death.cpp).
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

    // --- setup.cpp: set-up ---------------------------------------------------------------------

    result<void> connect();
    std::optional<internal::segment> make_segment();
    void shm_failed();
    result<void> send_offer(internal::msg type, const internal::segment* seg);
    void activate(internal::segment seg);
    // Offers a new segment when the last one failed and the retry interval has passed.
    void maybe_retry_segment();
    // The server's welcome to a later shm_offer (on the socket thread).
    void offer_answered(bool accepted);

    // --- client.cpp: the public API ----------------------------------------------------------------

    result<reply> execute(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                          const callbacks& cb, exec_flags flags);
    client_stats stats() const;
    bool peer_gone() const;
    result<void> notify(std::uint32_t code, std::span<const std::byte> payload);

    // --- slots.cpp: slot commands --------------------------------------------------------------

    std::uint32_t take_slot(channel& ch);
    void free_slot(channel& ch, std::uint32_t slot);
    result<reply> execute_slot(channel& ch, std::uint32_t slot, std::uint32_t code, std::span<const std::byte> input,
                               std::span<std::byte> output, const callbacks& cb, exec_flags flags);
    // Waits for a sync slot's done word: the server's store, or this client's (death, socket reply).
    void wait_done(internal::slot_header* h);
    result<reply> finish_sync_slot(channel& ch, std::uint32_t slot);
    // Reads status and output length the server wrote; runs the post callbacks.
    result<reply> read_slot_reply(channel& ch, std::uint32_t slot, slot_record& r);

    // --- completion.cpp: the completion thread (async slot commands) -----------------------------

    struct reap_result {
        std::uint32_t count = 0;
        bool ring_ok = true;  // false: the server broke the ring (it is being cut off)
    };

    // Pops and completes what the server finished, at most `limit`. Only the holder of
    // ch.reaping (the completion thread, or a submitter that found no free slot) calls this: the
    // ring has one consumer at a time.
    reap_result reap(channel& ch, std::uint32_t limit);

    // Takes the consumer end of the s->c ring if nobody holds it. An atomic flag, not a mutex:
    // a completion callback that executes again may come back here on the same thread.
    static bool try_reaping(channel& ch) { return !ch.reaping.exchange(true, std::memory_order_acquire); }
    static void stop_reaping(channel& ch) { ch.reaping.store(false, std::memory_order_release); }

    // A submitter with no free slot completes finished commands itself (no thread switch: on a
    // machine with few cores the completion thread may be waiting for our core). True when it
    // freed at least one slot.
    bool help_reap(channel& ch);
    // No slot free: complete finished commands ourselves, or give the ones in flight a moment
    // (spin_for) to finish; the caller goes over the socket only if none does.
    std::uint32_t wait_for_slot(channel& ch);
    void completion_main(channel& ch);

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
    void complete_async_slot(channel& ch, std::uint32_t slot, outcome o);
    void server_broke(const char* what);

    // --- backup.cpp: backup commands -------------------------------------------------------------

    result<reply> execute_backup(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                                 const callbacks& cb, exec_flags flags);
    // After the socket thread filled the record: the reply and post callbacks, or the failure.
    result<reply> backup_outcome(command_record& rec);
    void backup_reply(internal::received& m);
    void finish_backup(command_record& rec, std::uint32_t state);

    // --- socket_thread.cpp: the socket thread ----------------------------------------------------

    void socket_main();
    // A reply over the socket to a slot command (the handler attached descriptors).
    bool slot_reply(internal::received& m);

    // --- death.cpp: the server gone, deinit ------------------------------------------------------

    // The server is gone (or we closed): fail everything outstanding, stop the completion thread.
    void server_gone();
    void command_done();
    // Wakes deinit(): it waits on this word, read before it checks outstanding_ and dead_, so a
    // change of either after its check is never missed.
    void bump_progress();
    void deinit();

    // --- direct.cpp: in-process ----------------------------------------------------------------

    result<reply> execute_direct(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                                 const callbacks& cb, std::span<const int> fds);

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

}  // namespace datapump::ipc
