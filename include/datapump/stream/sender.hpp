// File: include/datapump/stream/sender.hpp
//
// One transfer to a socket on an io::event_loop (docs/stream-engine.md): a file range by one of
// the send paths, paced by the stream's rt credit, with the VCR controls (pause, seek, speed)
// applied between sends, read-ahead advised ahead of the position; or a growing file (an upload
// being written: load-and-play, docs/ingest.md) followed from the arena as it arrives.
//
//   begin(transfer) ──> start() ──> pump ─┬─ sendfile | splice  (page cache, poll for room)
//                                         └─ loans -> send_zc | send  (slots hold the loans;
//                                              send_zc may send plainly once the kernel said it copies)
//   begin(growing_file) ─> start() ─> pump: loans -> [chunk line] -> send; at the frontier: wait
//        waits: socket room · rt credit · a cache buffer (retry) · a fallback read · a slot's
//               notification · paused · the owner's admission · the writer (grown())
//   ──> owner.sender_done() (every byte handed to the kernel) | owner.sender_failed(why)
//   end(): the transfer is over (done, cut or closed); slots still in the kernel keep their loans
//          until their final completion.
//
// The limits of a response (docs/daemon.md, "Limits and timeouts"; sender_limits.cpp): from
// watch() to unwatch() the sender's guard timer cuts a response whose client takes no byte for
// the send timeout, or that stays paused past the maximum pause (owner.sender_failed, counted in
// limit_counters), and a paced stream whose client stalls gives its admission (capacity
// reservation, rt connection) back until it reads again. The owner's own sends of the response
// (its head, an answer held in memory) count too: until start() the response waits on them.
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
#include "datapump/stream/admission.hpp"
#include "datapump/stream/rt_pacing.hpp"
#include "datapump/stream/send_path.hpp"
#include "datapump/stream/stream_table.hpp"

#include <array>
#include <atomic>
#include <chrono>
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

// Responses cut or streams released by the limits (the server's monitoring counters; relaxed).
struct limit_counters {
    std::atomic<std::uint64_t> send_timeouts{0};   // cut: the client took no byte for the send timeout
    std::atomic<std::uint64_t> pause_timeouts{0};  // cut: paused longer than the maximum pause
    std::atomic<std::uint64_t> stall_releases{0};  // stalled paced streams that gave their admission back
};

// The limits of one response (the request's settings).
struct send_limits {
    std::chrono::milliseconds send_timeout{60000};
    std::chrono::milliseconds max_pause{300000};
    // A stalled paced stream gives its admission back after this (at most half the send timeout).
    std::chrono::milliseconds stall_release{2000};
};

// What a sender is told as it goes. Every call comes on the loop thread.
class sender_owner {
public:
    // The client took `n` body bytes (0: the stream stopped waiting on the server and goes on).
    virtual void sender_progress(std::uint64_t n) = 0;
    // The stream was paused / resumed by its controls.
    virtual void sender_paused() = 0;
    virtual void sender_resumed() = 0;
    // Before each round of sends: may the stream go on? A stream whose admission was given back
    // while its client stalled (admission_released()) takes it again here (admit()). False: refused
    // for now; the sender asks again shortly (resume() asks at once), while the send timeout runs.
    virtual bool sender_admitted() = 0;
    // A growing file's frontier: ask its writer to call grown() once at its next change (bytes
    // committed, or the end). The sender looks at the file again after this call, so a change
    // between the two is not lost.
    virtual void sender_await_growth() = 0;
    // Every byte of the transfer is in the kernel.
    virtual void sender_done() = 0;
    // The transfer cannot go on, or the limits cut the response (`why` may name the file; the
    // owner escapes it for its logs). The owner ends the transfer and resets the connection.
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
    limit_counters* limits = nullptr;  // null: the limits count nothing
    // send_zc: once a notification says the kernel copied (a loopback or local peer, a device
    // without scatter-gather), send the connection's rest plainly. Worth it when the arena is in
    // huge pages: a plain send copies through the user mapping, a copied SEND_ZC through the
    // kernel's (huge-page) direct map, and with a small-page arena the first costs far more TLB
    // walks (docs/benchmarks.md, "Cold files from the arena").
    bool plain_when_copied = false;
    // On a loan path, files smaller than this go by sendfile when their provider has page-cache
    // descriptors (stream::path_for). 0: every file by the loan path.
    std::uint64_t page_cache_below = 0;
};

// One body: `length` (> 0) bytes of `file` from `start`.
struct transfer {
    std::shared_ptr<fs::file> file;  // not null; may be shared with other transfers (an open-file cache)
    std::uint64_t start = 0;
    std::uint64_t length = 0;
    std::uint64_t file_size = 0;
    std::shared_ptr<control> controls;  // the stream's VCR controls and progress; may be null
    rt_stream pacing;                   // empty: unpaced
    reservation capacity{};             // the stream's share of the capacity; empty: none
};

// How a growing file's body is framed on the wire. chunked: each send of data is an HTTP/1.1
// chunk ("\r\n" ending the previous one, the size in hex, "\r\n"), the end "\r\n0\r\n\r\n".
enum class body_framing : std::uint8_t { none, chunked };

// One body that follows a file while it is written (load-and-play): the bytes committed so far,
// then the rest as they come. Unpaced, without controls. It ends when `length` bytes are sent
// (the file then must reach it: complete short of it fails), else when the file is complete;
// a failed file fails the body.
struct growing_file {
    std::shared_ptr<cache::cached_file> view;  // status writing, complete or failed
    std::optional<std::uint64_t> length;       // the declared length; none: to the file's end
    body_framing framing = body_framing::none;
    std::string name;  // for error texts (may name a file: the owner escapes them)
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
    // Takes a growing file to follow (sender_follow.cpp). Its data goes by plain sends from arena
    // loans, whatever the path (counted in send_bytes), MSG_DONTWAIT like the loan paths.
    void begin(growing_file g);
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
    // The growing file being followed changed (after sender_await_growth()).
    void grown();

    // The limits (sender_limits.cpp). watch(): a response begins (before its head is sent, before
    // or after begin()); its send timeout starts now. `request` names it in log lines and must
    // stay valid until unwatch() or the next watch(); `body_bytes`: body bytes already counted (an
    // answer held in memory counts its whole body). unwatch(): the response is over. Idempotent.
    void watch(const send_limits& limits, std::string_view request, std::uint64_t body_bytes);
    void unwatch();
    // The owner's own send of the response (its head, an answer in memory) moved bytes.
    void owner_progress();
    // The stream gave its admission back while its client stalled, and has not taken it again.
    [[nodiscard]] bool admission_released() const { return admission_released_; }
    // The admission taken again (from sender_admitted()).
    void admit(reservation capacity, rt_stream pacing);

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
    // growth: at a growing file's frontier, until grown().
    enum class wait : std::uint8_t { none, socket, retry, credit, loan, paused, send, admission, growth };

    void pump();
    bool apply_controls();
    void advise_ahead();
    void sent_bytes(std::uint64_t n);
    void account_sent(std::uint64_t n, std::atomic<std::uint64_t>& path_counter);
    std::uint64_t paced_allowance(std::uint64_t want);
    void fail(std::string_view why);
    void finish();
    [[nodiscard]] std::string_view source_name() const;

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

    // A growing file (sender_follow.cpp).
    void pump_growing();
    bool take_growing_loan(std::uint64_t at, std::uint64_t size);
    void send_frame();
    void on_frame_sent(int result, std::uint32_t flags);

    // The limits (sender_limits.cpp).
    void progress();
    [[nodiscard]] bool holds_admission() const;
    [[nodiscard]] bool response_waits_on_client() const;
    [[nodiscard]] std::chrono::milliseconds stall_release() const;
    [[nodiscard]] io::clock::time_point guard_due() const;
    void arm_guard(io::clock::time_point deadline);
    void on_guard(int result, std::uint32_t flags);
    void release_admission();

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
    io::timer retry_timer_{&retry_op_};  // a cache buffer (wait::retry) or re-admission (wait::admission)
    op frame_op_;
    op guard_op_;
    io::timer guard_timer_{&guard_op_};

    // The transfer.
    bool active_ = false;
    bool started_ = false;  // start() came: the owner's head is sent
    send_path path_ = send_path::sendfile;  // this transfer's (env_.path, or sendfile: path_for)
    wait wait_ = wait::none;
    std::shared_ptr<fs::file> file_;
    std::shared_ptr<cache::cached_file> view_;  // loan paths
    int body_fd_ = -1;                          // page-cache paths
    std::shared_ptr<control> control_;
    rt_stream pacing_;
    reservation capacity_;
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
    // A SEND_ZC notification of this socket said the kernel copied the bytes: it will copy every
    // one (its route and device stay those of the connection), so with env_.plain_when_copied
    // the send_zc path sends plainly.
    bool zc_copies_ = false;
    // Body bytes a loan send left unsent because the socket was full (MSG_DONTWAIT): already
    // counted in pos_ and the credit, they go first when the socket has room, from a fresh loan of
    // the same file range, so that a stalled client pins no buffer (only what the kernel took).
    std::uint64_t resend_pos_ = 0;
    std::uint64_t resend_len_ = 0;

    // A growing file (view_ is its file; pos_ the next byte not yet handed to a send; the resend
    // range is data already framed). One send at a time: a chunk line, then its data.
    bool growing_ = false;
    std::optional<std::uint64_t> declared_;
    body_framing framing_ = body_framing::none;
    std::string growing_name_;
    bool chunk_started_ = false;    // a chunk was sent: the next line starts by ending it
    bool last_frame_ = false;       // the last chunk's line is being sent
    std::string frame_;             // the chunk line being sent
    std::size_t frame_sent_ = 0;
    send_slot* after_frame_ = nullptr;  // the chunk's data, sent when its line is in

    // The limits of the response being watched.
    bool watching_ = false;
    send_limits limits_;
    std::string_view request_;
    std::uint64_t body_bytes_ = 0;          // for the send timeout's log line
    io::clock::time_point stall_from_{};    // since when the client took no byte
    io::clock::time_point paused_since_{};
    bool admission_released_ = false;
};

}  // namespace datapump::stream

DATAPUMP_API_END
