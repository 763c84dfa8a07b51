// The ingest job: the receive / read-modify-write / write state machine of docs/ingest.md.
//
//   advance() is the driver, run after every event (start, a receive, a read, a write, cancel):
//     stopping or finished receiving -> wait for the writes in flight, then on_done
//     a read of a head/tail block pending, or a receive pending -> nothing to do yet
//     body complete -> seal the tail block, queue its write, finish
//     need a window -> loan the next block space (a new block: claim + read-modify-write prep)
//     pending bytes (prefix, framing spill) -> copy into the window (counted)
//     else receive from the socket straight into the window (a framed body's framing: a small buffer)
//   A source that is not a socket (a pipe) is read with READ at no offset instead of RECV; its
//   short reads are looped exactly like the socket's partial receives.
#include "datapump/ingest/ingest.hpp"

#include "framed_body.hpp"

#include "datapump/base/check.hpp"

#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <vector>

namespace datapump::ingest {

namespace {

constexpr std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }
constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
using detail::frame_recv;  // a framing receive's size: data behind it is copied

void add(std::atomic<std::uint64_t>& c, std::uint64_t n) { c.fetch_add(n, std::memory_order_relaxed); }

}  // namespace

struct job::impl {
    // One completion per kind of operation; each forwards to the impl.
    struct op final : io::completion {
        impl* self = nullptr;
        void (impl::*handler)(int, std::uint32_t) = nullptr;
        void complete(int result, std::uint32_t flags) override { (self->*handler)(result, flags); }
    };
    struct write_op final : io::completion {
        impl* self = nullptr;
        cache::writer::sealed_block block;
        std::uint64_t lo = 0;    // file range being written: [lo, hi)
        std::uint64_t hi = 0;
        std::uint64_t done = 0;  // bytes of it written so far
        bool busy = false;
        void complete(int result, std::uint32_t /*flags*/) override { self->on_write(*this, result); }
    };

    io::event_loop* loop = nullptr;
    fs::file* file = nullptr;
    std::unique_ptr<cache::writer> writer;
    callbacks cb;
    counters* stats = nullptr;
    counters own_stats;
    int socket = -1;
    bool is_socket = true;           // false: a pipe or other stream, read with READ
    body_decoder* decoder = nullptr;  // a framed body's (the caller's); null: identity

    std::uint64_t offset = 0;
    std::uint64_t length = 0;        // identity only
    std::uint64_t old_size = 0;
    std::uint64_t align = 1;
    std::uint64_t block_size = 0;
    std::uint64_t received = 0;      // body bytes in windows
    std::uint64_t to_receive = 0;    // identity: bytes still to come from the socket
    std::size_t prefix_used = 0;

    // Bytes to copy into windows before receiving more: prefix data, then framing spill.
    std::deque<std::span<const std::byte>> pending;
    // The caller's prefix, taken at start (the contract lets the caller reuse its buffer once
    // start() returned, but the windows it goes into are claimed later, one by one).
    std::vector<std::byte> prefix;
    std::array<std::byte, frame_recv> frame{};
    std::size_t frame_len = 0;       // bytes in `frame`
    std::size_t frame_pos = 0;       // of which consumed
    std::vector<std::byte> leftover; // received past the end of a framed body

    cache::write_loan loan;
    std::uint64_t window_block = ~std::uint64_t{0};
    std::uint64_t head_read_block = ~std::uint64_t{0};  // fs block read for the head (file offset)

    op kick;
    op recv_op;
    op read_op;
    unsigned reads_pending = 0;
    std::span<std::byte> pending_read;  // where the head/tail read goes (zero-filled if short)
    bool recv_pending = false;
    bool kick_pending = false;  // advance() is deferred to the end of this loop iteration
    bool readable = false;      // a load-and-play file: readers follow every receive
    bool cancel_sent = false;
    std::vector<write_op> writes;
    std::deque<cache::writer::sealed_block> queued;
    unsigned writes_in_flight = 0;
    unsigned max_windows = 4;

    bool receiving_done = false;
    std::optional<error> stopped;
    bool finished = false;

    [[nodiscard]] counters& count() { return stats != nullptr ? *stats : own_stats; }

    void init_ops() {
        kick.self = this;
        kick.handler = &impl::on_kick;
        recv_op.self = this;
        recv_op.handler = &impl::on_recv;
        read_op.self = this;
        read_op.handler = &impl::on_read;
        for (auto& w : writes) {
            w.self = this;
        }
    }

    void on_kick(int, std::uint32_t) {
        kick_pending = false;
        advance();
    }
    // Runs advance() from the loop at the end of this iteration (never twice at once).
    void schedule() {
        if (!kick_pending) {
            kick_pending = true;
            loop->defer(&kick);
        }
    }
    void stop(error why) {
        if (!stopped) {
            stopped = why;
        }
        loan = cache::write_loan{};
        pending.clear();
        if (recv_pending && !cancel_sent) {
            cancel_sent = true;
            loop->cancel(&recv_op);
        }
    }

    [[nodiscard]] bool body_complete() const {
        if (!pending.empty()) {
            return false;
        }
        if (decoder == nullptr) {
            return to_receive == 0;
        }
        return decoder->current() == body_decoder::state::done;
    }

    void advance() {
        if (finished) {
            return;
        }
        while (true) {
            if (stopped || receiving_done) {
                pump_writes();
                if (writes_in_flight == 0 && reads_pending == 0 && !recv_pending && !kick_pending) {
                    finish();
                }
                return;
            }
            if (recv_pending || reads_pending > 0) {
                return;
            }
            if (body_complete()) {
                seal_tail();
                receiving_done = true;
                continue;
            }
            if (decoder != nullptr && pending.empty() && decoder->current() == body_decoder::state::framing) {
                if (frame_pos < frame_len) {
                    take_framing();
                    continue;
                }
                frame_len = 0;
                frame_pos = 0;
                receive(std::span<std::byte>(frame.data(), frame.size()), 0);
                return;
            }
            if (loan.empty() && !take_window()) {
                if (stopped) {
                    continue;  // no buffer, or the storage refused: finish with the error
                }
                return;  // waiting for a write slot or a head/tail read
            }
            if (!pending.empty()) {
                copy_pending();
                continue;
            }
            std::uint64_t want = loan.data().size();
            if (decoder == nullptr) {
                want = std::min(want, to_receive);
            } else {
                want = std::min(want, decoder->data_left());
            }
            DP_CHECK(want > 0);
            // MSG_WAITALL: one completion per window piece rather than one per segment burst. Not
            // for a load-and-play file: its readers' end of file is what was received so far, so
            // every receive must land (commit) as soon as it has bytes.
            receive(loan.data().first(static_cast<std::size_t>(want)), readable ? 0 : MSG_WAITALL);
            return;
        }
    }

    // One receive into `into`; on_recv gets it. `msg_flags` apply to sockets only: a pipe's READ
    // returns what the pipe holds, and advance() loops short reads like partial receives.
    void receive(std::span<std::byte> into, int msg_flags) {
        recv_pending = true;
        if (is_socket) {
            loop->recv(socket, into, &recv_op, msg_flags);
        } else {
            loop->read_stream(socket, into, &recv_op);
        }
    }

    // Runs the decoder over `bytes` (the prefix, or a framing receive): framing is consumed, data
    // becomes pending (copied into windows later), and it stops at the end of the body or on a
    // refusal. Returns the bytes used; the rest follow the body.
    std::size_t decode(std::span<const std::byte> bytes) {
        const std::size_t at =
            detail::split_framed(*decoder, bytes, [this](std::span<const std::byte> data) { pending.push_back(data); });
        if (decoder->current() == body_decoder::state::failed) {
            stop(decoder->refusal());
        }
        return at;
    }

    // A framing receive landed in `frame`: decode it; bytes past the body's end are the next
    // request's (leftover).
    void take_framing() {
        const auto rest = std::span<const std::byte>(frame.data() + frame_pos, frame_len - frame_pos);
        const std::size_t used = decode(rest);
        if (!stopped && used < rest.size()) {
            leftover.assign(rest.begin() + static_cast<std::ptrdiff_t>(used), rest.end());
        }
        frame_pos = frame_len;
    }

    // Loans space at the frontier; a new block is prepared first (read-modify-write).
    bool take_window() {
        auto got = writer->loan_write(~std::size_t{0});
        if (!got) {
            stop(got.error());
            return false;
        }
        const std::uint64_t block = got->file_offset() / block_size;
        if (block != window_block) {
            // A new window: it needs a write slot when it fills.
            if (queued.size() + writes_in_flight >= max_windows) {
                // Dropped uncommitted: the same space is loaned again when a write completes.
                *got = cache::write_loan{};
                return false;
            }
            window_block = block;
            loan = std::move(*got);
            prepare_window(block);
            return reads_pending == 0;
        }
        loan = std::move(*got);
        return true;
    }

    // Read-modify-write preparation of window `block`: the file-system blocks holding an
    // unaligned first or last byte of this ingest are read (inside the old file) or zeroed.
    void prepare_window(std::uint64_t block) {
        if (align <= 1) {
            return;
        }
        const std::uint64_t base = block * block_size;
        const std::uint64_t lo = std::max(base, offset);
        auto buf = writer->current_buffer();
        // `counted`: the fs block was already counted (the head's, zeroed, holds the tail too).
        const auto fill = [&](std::uint64_t fs_block, std::uint64_t from, std::uint64_t to, bool counted) {
            if (fs_block < old_size) {
                issue_read(fs_block, buf.subspan(static_cast<std::size_t>(fs_block - base), static_cast<std::size_t>(align)));
                return true;
            }
            std::memset(buf.data() + (from - base), 0, static_cast<std::size_t>(to - from));
            if (!counted) {
                add(count().zero_filled, 1);
            }
            return false;
        };
        std::uint64_t head_zeroed_block = ~std::uint64_t{0};
        if (lo % align != 0) {
            const std::uint64_t hb = align_down(lo, align);
            if (fill(hb, hb, lo, false)) {
                head_read_block = hb;
            } else {
                head_zeroed_block = hb;
            }
        }
        if (decoder == nullptr) {
            const std::uint64_t end = offset + length;
            if (end > base && end < base + block_size && end % align != 0) {
                const std::uint64_t tb = align_down(end, align);
                if (tb != head_read_block) {
                    fill(tb, end, tb + align, tb == head_zeroed_block);
                }
            }
        }
    }

    void issue_read(std::uint64_t fs_block, std::span<std::byte> into) {
        auto where = file->extent(fs_block, into.size());
        if (!where) {
            stop(where.error());
            return;
        }
        ++reads_pending;
        add(count().rmw_reads, 1);
        // A whole fs block into its place in the window; bytes past the old end come back short
        // and are zeroed in on_read.
        pending_read = into;
        loop->read(where->fd, where->device_offset, into, writer->current_index(), &read_op);
    }

    void on_read(int result, std::uint32_t /*flags*/) {
        --reads_pending;
        if (result < 0) {
            stop(error{errc::io_error, -result, "ingest: read of a block for read-modify-write"});
        } else if (static_cast<std::size_t>(result) < pending_read.size()) {
            std::memset(pending_read.data() + result, 0, pending_read.size() - static_cast<std::size_t>(result));
        }
        advance();
    }

    void copy_pending() {
        auto& p = pending.front();
        const std::size_t n = std::min(p.size(), loan.data().size());
        std::memcpy(loan.data().data(), p.data(), n);
        p = p.subspan(n);
        if (p.empty()) {
            pending.pop_front();
        }
        add(count().copied, n);
        committed(n);
    }

    void on_recv(int result, std::uint32_t /*flags*/) {
        recv_pending = false;
        if (stopped) {
            advance();
            return;
        }
        if (result < 0) {
            const int e = -result;
            stop(e == ECONNRESET || e == EPIPE ? error{errc::peer_gone, e, "ingest: the client reset the connection"}
                                               : error{errc::io_error, e, "ingest: receive"});
        } else if (result == 0) {
            stop(error{errc::peer_gone, 0, "ingest: the client closed before the end of the body"});
        } else if (decoder != nullptr && decoder->current() == body_decoder::state::framing) {
            frame_len = static_cast<std::size_t>(result);
            frame_pos = 0;
        } else {
            const auto n = static_cast<std::size_t>(result);
            if (decoder == nullptr) {
                to_receive -= n;
            } else {
                decoder->took_data(n);
            }
            committed(n);
        }
        advance();
    }

    // `n` bytes landed at the frontier: publish them, and queue the block if it is full.
    void committed(std::size_t n) {
        if (auto ok = std::move(loan).commit(n); !ok) {
            stop(ok.error());
            return;
        }
        loan = cache::write_loan{};
        received += n;
        add(count().received, n);
        if (auto full = writer->take_sealed()) {
            queued.push_back(std::move(*full));
            pump_writes();
        }
        if (cb.on_progress) {
            cb.on_progress();
        }
    }

    void seal_tail() {
        auto tail = writer->take_tail();
        if (!tail) {
            return;
        }
        const std::uint64_t end = offset + received;
        if (align > 1 && end % align != 0 && decoder != nullptr) {
            // Past the old end of the file (framed ingests only append): zero the padding. A
            // block the head read already holds past the old end was zeroed and counted as read.
            auto buf = tail->ref.owner()->data(tail->ref.index());
            const std::uint64_t from = end - tail->offset;
            std::memset(buf.data() + from, 0, static_cast<std::size_t>(align_up(end, align) - end));
            if (align_down(end, align) != head_read_block) {
                add(count().zero_filled, 1);
            }
        }
        queued.push_back(std::move(*tail));
        pump_writes();
    }

    void pump_writes() {
        while (!queued.empty()) {
            if (stopped) {
                queued.clear();  // never written: the pins go back
                return;
            }
            auto slot = std::find_if(writes.begin(), writes.end(), [](const write_op& w) { return !w.busy; });
            if (slot == writes.end()) {
                return;
            }
            cache::writer::sealed_block blk = std::move(queued.front());
            queued.pop_front();
            const std::uint64_t lo = std::max(blk.offset, offset);
            const std::uint64_t hi = std::min(blk.offset + block_size, offset + received);
            if (hi <= lo) {
                continue;  // an empty tail
            }
            slot->block = std::move(blk);
            slot->lo = align > 1 ? align_down(lo, align) : lo;
            slot->hi = align > 1 ? align_up(hi, align) : hi;
            slot->done = 0;
            slot->busy = true;
            ++writes_in_flight;
            submit(*slot);
        }
    }

    void submit(write_op& w) {
        const std::uint64_t at = w.lo + w.done;
        auto where = file->extent(at, w.hi - at);
        if (!where) {
            w.busy = false;
            --writes_in_flight;
            w.block = {};
            stop(where.error());
            return;
        }
        const std::uint64_t n = std::min(where->length, w.hi - at);
        auto buf = w.block.ref.owner()->data(w.block.ref.index());
        const auto bytes = std::span<const std::byte>(buf.data() + (at - w.block.offset), static_cast<std::size_t>(n));
        add(count().writes, 1);
        loop->write(where->fd, where->device_offset, bytes, w.block.ref.index(), &w);
    }

    void on_write(write_op& w, int result) {
        const std::uint64_t lo = w.lo;
        if (result <= 0) {
            const error e = result == 0 ? error{errc::io_error, 0, "ingest: the storage write made no progress"}
                                        : fail_errno("ingest: storage write", -result).error();
            w.busy = false;
            --writes_in_flight;
            w.block = {};
            if (cb.on_write) {
                cb.on_write(lo, std::unexpected(e));
            }
            stop(e);
            advance();
            return;
        }
        w.done += static_cast<std::uint64_t>(result);
        add(count().written, static_cast<std::uint64_t>(result));
        if (w.lo + w.done < w.hi && !stopped) {
            submit(w);  // a short write, or the next extent
            if (stopped) {
                advance();  // its extent failed: it may have been the last operation in flight
            }
            return;
        }
        const std::uint64_t bytes = w.done;
        w.busy = false;
        --writes_in_flight;
        w.block = {};  // on storage: unpinned, it stays cached until evicted
        if (cb.on_write) {
            cb.on_write(lo, bytes);
        }
        pump_writes();
        advance();
    }

    void finish() {
        finished = true;
        loan = cache::write_loan{};
        result<std::uint64_t> outcome = received;
        if (stopped) {
            writer->fail(*stopped);
            outcome = std::unexpected(*stopped);
        }
        auto done = std::move(cb.on_done);
        // The caller may destroy the job from on_done: nothing of `this` is touched after it.
        done(outcome);
    }
};

job::job(std::unique_ptr<impl> state) : impl_(std::move(state)) {}

job::~job() { DP_CHECK(impl_ == nullptr || impl_->finished); }

result<std::unique_ptr<job>> job::start(io::event_loop& loop, cache::file_cache& cache, const source& from,
                                        const target& to, const options& opts, callbacks done, counters* stats) {
    if (to.file == nullptr || from.socket < 0 || !done.on_done) {
        return fail(errc::invalid_argument, "ingest: no file, socket or completion");
    }
    if (from.decoder != nullptr && to.old_size > to.offset) {
        return fail(errc::invalid_argument, "ingest: a framed body can only append (unknown length)");
    }
    if (opts.load_and_play && to.offset != 0) {
        return fail(errc::invalid_argument, "ingest: load-and-play needs a whole new file (offset 0)");
    }
    if (from.decoder == nullptr && to.offset > ~std::uint64_t{0} - to.length) {
        return fail(errc::invalid_argument, "ingest: offset + length overflows");
    }
    struct stat from_stat {};
    if (::fstat(from.socket, &from_stat) != 0) {
        return fail(errc::invalid_argument, "ingest: the source descriptor is not open", errno);
    }
    auto where = to.file->extent(to.offset, 1);
    if (!where) {
        return std::unexpected(where.error());
    }
    auto st = std::make_unique<impl>();
    impl& s = *st;
    s.loop = &loop;
    s.file = to.file;
    s.cb = std::move(done);
    s.stats = stats;
    s.socket = from.socket;
    s.is_socket = S_ISSOCK(from_stat.st_mode);
    s.decoder = from.decoder;
    s.offset = to.offset;
    s.length = to.length;
    s.old_size = to.old_size;
    s.align = std::max<std::uint32_t>(where->alignment, 1);
    s.block_size = cache.block_size();
    if (s.align > 1 && s.block_size % s.align != 0) {
        return fail(errc::invalid_argument, "ingest: the arena buffer size is not a multiple of the storage alignment");
    }
    s.max_windows = std::max(opts.windows_in_flight, 1U);
    s.writes.resize(s.max_windows);
    s.writer = cache.create_ingest_writer(to.file->source(fs::unknown_size), to.offset, opts.load_and_play);
    s.init_ops();

    // The prefix: identity takes up to the length; a framed body runs the decoder over it.
    const std::size_t keep = from.decoder == nullptr
                                 ? static_cast<std::size_t>(std::min<std::uint64_t>(from.prefix.size(), to.length))
                                 : from.prefix.size();
    s.prefix.assign(from.prefix.begin(), from.prefix.begin() + static_cast<std::ptrdiff_t>(keep));
    if (from.decoder == nullptr) {
        s.prefix_used = keep;
        if (s.prefix_used > 0) {
            s.pending.emplace_back(s.prefix.data(), s.prefix_used);
        }
        s.to_receive = to.length - s.prefix_used;
    } else {
        s.prefix_used = s.decode(s.prefix);
    }
    s.readable = opts.load_and_play;
    // The first step runs from the loop, so on_done never runs inside start().
    s.schedule();
    return std::unique_ptr<job>(new job(std::move(st)));
}

std::size_t job::prefix_used() const { return impl_->prefix_used; }

std::span<const std::byte> job::leftover() const { return impl_->leftover; }

std::uint64_t job::final_size() const { return std::max(impl_->old_size, impl_->offset + impl_->received); }

std::uint64_t job::received() const { return impl_->received; }

std::shared_ptr<cache::cached_file> job::view() const {
    return impl_->readable ? impl_->writer->file() : nullptr;
}

void job::publish_succeeded() {
    DP_CHECK(impl_->finished);
    impl_->writer->complete();
}

void job::publish_failed(error why) {
    DP_CHECK(impl_->finished);
    impl_->writer->fail(why);
}

void job::cancel(error why) {
    if (impl_->finished) {
        return;
    }
    impl_->stop(why);
    impl_->schedule();
}

}  // namespace datapump::ingest
