// File: include/datapump/stream/sender.hpp
//
// One transfer of a file range to a socket on an io::event_loop, by one of the send paths
// (docs/stream-engine.md): paced by the stream's rt credit, with the VCR controls (pause, seek,
// speed) applied between sends, read-ahead advised ahead of the position.
//
//   begin(transfer) ──> start() ──> pump ─┬─ sendfile | splice  (page cache, poll for room)
//                                         └─ loans -> send_zc | send  (slots hold the loans)
//        waits: socket room · rt credit · a cache buffer (retry) · a fallback read · a slot's
//               notification · paused · the owner's admission
//   ──> owner.sender_done() (every byte handed to the kernel) | owner.sender_failed(why)
//   end(): the transfer is over (done, cut or closed); slots still in the kernel keep their loans
//          until their final completion.
//
// A sender belongs to one connection (its `owner`) and serves its transfers one after another;
// the splice path's pipe and the send slots outlive a transfer. Every completion the sender
// receives ends with owner.sender_settle(), which may delete the owner (and the sender with it):
// the owner must not delete itself while the sender is not idle().
//
// Invariants: no loan is given back before the kernel is done with its bytes (the final CQE, or
// for SEND_ZC the notification); bytes leave in file order, exactly once, whatever the short
// sends, retries, seeks and stalls; a full socket pins no buffer (what the kernel did not take is
// re-loaned when it has room).
//
// Thread-safety: loop thread only.
#pragma once

#include "datapump/base/unique_fd.hpp"
#include "datapump/cache/file_cache.hpp"
#include "datapump/cache/loans.hpp"
#include "datapump/fs/file.hpp"
#include "datapump/io/event_loop.hpp"
#include "datapump/stream/rt_pacing.hpp"
#include "datapump/stream/send_path.hpp"
#include "datapump/stream/stream_table.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::stream {

// Bytes moved by each path, and the read-ahead advice given (the server's monitoring counters;
// relaxed increments).
struct send_counters {
    std::atomic<std::uint64_t> sendfile_bytes{0};
    std::atomic<std::uint64_t> splice_bytes{0};
    std::atomic<std::uint64_t> send_zc_bytes{0};
    std::atomic<std::uint64_t> send_zc_sends{0};
    std::atomic<std::uint64_t> send_zc_copied{0};
    std::atomic<std::uint64_t> send_bytes{0};
    std::atomic<std::uint64_t> readahead_advice{0};
};

// What a sender is told as it goes. Every call comes on the loop thread.
class sender_owner {
public:
    // The client took `n` body bytes (0: the stream stopped waiting on the server and goes on).
    virtual void sender_progress(std::uint64_t n) = 0;
    // The stream was paused / resumed by its controls.
    virtual void sender_paused() = 0;
    virtual void sender_resumed() = 0;
    // Before each round of sends: may the stream go on? False: the owner (which gave its admission
    // back while the client stalled, and could not take it again) calls resume() later.
    virtual bool sender_admitted() = 0;
    // Every byte of the transfer is in the kernel.
    virtual void sender_done() = 0;
    // The transfer cannot go on (`why` may name the file; the owner escapes it for its logs).
    virtual void sender_failed(std::string_view why) = 0;
    // A detail for the debug log (may name a file: the owner escapes it).
    virtual void sender_debug(std::string_view detail) = 0;
    // Ends every loop entry the sender received (a completion, a timer, a posted task).
    virtual void sender_settle() = 0;

protected:
    sender_owner() = default;
    sender_owner(const sender_owner&) = default;
    sender_owner& operator=(const sender_owner&) = default;
    ~sender_owner() = default;
};

// What a sender works with for its life.
struct sender_env {
    io::event_loop* loop = nullptr;
    cache::file_cache* cache = nullptr;  // block size, prefetch notes, fallback reads
    send_path path = send_path::sendfile;  // never automatic
    send_counters* counters = nullptr;
    std::atomic<std::uint64_t>* bytes_sent = nullptr;  // the server's total of bytes sent
};

// One body: `length` (> 0) bytes of `file` from `start`.
struct transfer {
    std::shared_ptr<fs::file> file;  // not null; may be shared with other transfers (an open-file cache)
    std::uint64_t start = 0;
    std::uint64_t length = 0;
    std::uint64_t file_size = 0;
    std::shared_ptr<control> controls;  // the stream's VCR controls and progress; may be null
    rt_stream pacing;                   // empty: unpaced
};

class sender {
public:
    // `peer`: the connection's name for log lines; outlives the sender.
    sender(sender_env env, int socket, sender_owner& owner, std::string_view peer);
    sender(const sender&) = delete;
    sender& operator=(const sender&) = delete;
    ~sender();

    // Takes the transfer and opens its source (the cache view or the page-cache descriptor). Fails
    // with the reason; the transfer then is not active.
    [[nodiscard]] result<void> begin(transfer t);
    // The first sends (after the response head).
    void start();
    // Ends the transfer (done, cut or closed): its loans, pacing and source go; slots still in the
    // kernel keep theirs until their final completion. Idempotent.
    void end();

    // A control request changed the stream (from a posted task).
    void kick();
    // Credit came for the paced stream (from the task a VP posted).
    void on_credit();
    // The owner may take the stream on again (after sender_admitted() said no).
    void resume();

    [[nodiscard]] bool active() const { return active_; }
    [[nodiscard]] bool paused() const { return active_ && wait_ == wait::paused; }
    // Waiting on the client: for room in the socket, a send in the kernel, or every slot waiting
    // for the peer's acknowledgement (or the owner's admission, bounded by its send timeout too).
    [[nodiscard]] bool waiting_on_client() const;
    // No operation of the sender is in the kernel.
    [[nodiscard]] bool idle() const { return outstanding_ == 0; }
    [[nodiscard]] rt_stream& pacing() { return pacing_; }
    [[nodiscard]] const rt_stream& pacing() const { return pacing_; }

private:
    struct op final : io::completion {
        sender* self = nullptr;
        void (sender::*handler)(int, std::uint32_t) = nullptr;
        void complete(int result, std::uint32_t flags) override;
    };
    struct send_slot;
    struct slot_op final : io::completion {
        sender* self = nullptr;
        send_slot* slot = nullptr;
        void complete(int result, std::uint32_t flags) override;
    };
    // A body send in flight, holding the loan its bytes live in until the kernel is done.
    struct send_slot {
        slot_op completion;
        cache::read_loan loan;
        std::size_t offset = 0;  // into loan.bytes(): the next byte to send
        std::size_t length = 0;  // bytes of the loan this slot sends, from its first offset
        std::size_t sent = 0;
        unsigned sqes = 0;       // SQEs whose final CQE has not come
        bool zero_copy = false;  // the send in flight is a SEND_ZC (else the kernel copies)
        [[nodiscard]] bool free() const { return sqes == 0 && loan.empty(); }
    };
    // socket: room in the socket (poll); retry: the cache had no free buffer; credit: out of rt
    // credit until the tick's wake-up; loan: a fallback read; send: every slot waits for its
    // notification; admission: the owner's, until resume().
    enum class wait : std::uint8_t { none, socket, retry, credit, loan, paused, send, admission };

    void pump();
    bool apply_controls();
    void advise_ahead();
    void sent_bytes(std::uint64_t n);
    void account_sent(std::uint64_t n, std::atomic<std::uint64_t>& path_counter);
    std::uint64_t paced_allowance(std::uint64_t want);
    void fail(std::string_view why);

    // The page-cache paths (sendfile, splice).
    void pump_page_cache();
    std::uint64_t next_piece(std::uint64_t chunk);
    bool took_from_file(ssize_t n);
    bool turn_spent(std::uint64_t& budget, std::uint64_t sent);
    void wait_for_room();
    bool open_pipe();

    // The loan paths (send_zc, send).
    void pump_loans();
    bool take_loan();
    [[nodiscard]] std::uint64_t loan_pos() const;
    void loan_async(std::uint64_t offset, std::uint64_t length);
    void on_loans(result<std::vector<cache::read_loan>> loans);
    void retry_later();
    void submit_slot(send_slot& slot);
    void stash_unsent(send_slot& slot);

    void on_socket_ready(int result, std::uint32_t flags);
    void on_deferred(int result, std::uint32_t flags);
    void on_retry(int result, std::uint32_t flags);
    void on_slot(send_slot& slot, int result, std::uint32_t flags);

    sender_env env_;
    int socket_;
    sender_owner& owner_;
    std::string_view peer_;
    unsigned outstanding_ = 0;
    // Posted fallback reads find the sender through this (null once it is gone), and drop what
    // they bring when the transfer they were for has ended (generation).
    std::shared_ptr<sender*> self_ref_;
    std::uint64_t generation_ = 0;

    op poll_op_;
    op defer_op_;
    op retry_op_;
    io::timer retry_timer_{&retry_op_};

    // The transfer.
    bool active_ = false;
    wait wait_ = wait::none;
    std::shared_ptr<fs::file> file_;
    std::shared_ptr<cache::cached_file> view_;  // loan paths
    int body_fd_ = -1;                          // page-cache paths
    std::shared_ptr<control> control_;
    rt_stream pacing_;
    std::uint64_t pos_ = 0;
    std::uint64_t source_end_ = 0;
    std::uint64_t remaining_ = 0;
    std::uint64_t file_size_ = 0;
    std::uint64_t advised_until_ = 0;
    std::uint64_t sent_ = 0;  // body bytes the kernel took
    std::uint32_t speed_ = 1;
    bool paused_ = false;

    // The splice path's pipe (made at the first spliced body, kept for the sender's life) and the
    // body bytes in it: moved from the file, not yet taken by the socket.
    unique_fd pipe_read_;
    unique_fd pipe_write_;
    std::uint64_t piped_ = 0;

    // The loan paths.
    cache::read_loan ready_;
    std::array<send_slot, 4> slots_;
    bool sending_ = false;  // a body send's result CQE is pending (one ordered send at a time)
    // Body bytes a loan send left unsent because the socket was full (MSG_DONTWAIT): already
    // counted in pos_ and the credit, they go first when the socket has room, from a fresh loan of
    // the same file range, so that a stalled client pins no buffer (only what the kernel took).
    std::uint64_t resend_pos_ = 0;
    std::uint64_t resend_len_ = 0;
};

}  // namespace datapump::stream

DATAPUMP_API_END
