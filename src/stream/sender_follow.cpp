// A growing file followed (load-and-play, docs/ingest.md): the body is a file being written, sent
// from the arena as it arrives. At the frontier the sender asks its owner to have the writer kick
// it (sender_await_growth, then grown()) and sleeps.
//
//   pump_growing: bytes past pos_ committed? ── loan (try_loan, else a fallback read)
//                     ──> [chunk line: frame_op_] ──> data: a slot's send (MSG_DONTWAIT)
//                 at the frontier: writing ──> wait::growth ──grown()──> pump
//                                  complete ──> last chunk / declared length reached ──> done
//                                  complete short of the declared length, or failed ──> failed
//
// Chunked bodies frame each send of data: "\r\n" (ending the previous chunk) + size + "\r\n",
// then the data; the end is "\r\n0\r\n\r\n". Chunk lines are plain sends that wait in the kernel
// (they hold no buffer), with MSG_MORE when their data follows.
// Data goes out with MSG_DONTWAIT from a send slot, as on the loan paths: a full socket answers at
// once, the loan goes back to the cache, and the bytes still owed (the resend range, which may be
// the rest of an announced chunk: no new line for it) are sent from a fresh loan once the socket
// has room again, so a stalled follower holds no arena buffer while it waits.
#include "datapump/stream/sender.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <span>
#include <utility>

namespace datapump::stream {

void sender::begin(growing_file g) {
    end();
    ++generation_;
    growing_ = true;
    path_ = env_.path;  // plain sends from arena loans, whatever it is (growing_)
    view_ = std::move(g.view);
    declared_ = g.length;
    framing_ = g.framing;
    growing_name_ = std::move(g.name);
    pos_ = 0;
    sent_ = 0;
    speed_ = 1;
    paused_ = false;
    wait_ = wait::none;
    sending_ = false;
    chunk_started_ = false;
    last_frame_ = false;
    frame_.clear();
    frame_sent_ = 0;
    active_ = true;
}

void sender::grown() {
    if (active_ && growing_ && wait_ == wait::growth) {
        wait_ = wait::none;
        pump();  // the writer moved: the send timeout counts from here
    }
}

// Takes the loan of the block holding byte `at` into ready_ (true), or starts a fallback read of
// it (the block was evicted after its write, or is busy), or fails.
bool sender::take_growing_loan(std::uint64_t at, std::uint64_t size) {
    const std::uint64_t bs = env_.cache->block_size();
    auto hit = env_.cache->try_loan(*view_, at / bs);
    if (hit && hit->covers(at)) {
        ready_ = std::move(*hit);
        return true;
    }
    if (!hit && hit.error().code != errc::would_block && hit.error().code != errc::no_buffers) {
        fail(describe(hit.error(), growing_name_));
        return false;
    }
    wait_ = wait::loan;
    loan_async(at, std::min(bs - at % bs, size - at));
    return false;
}

void sender::pump_growing() {
    while (active_ && wait_ == wait::none && !sending_) {
        const std::uint64_t size = view_->size();
        if (declared_ && pos_ >= *declared_ && resend_len_ == 0) {
            finish();
            return;
        }
        if (resend_len_ > 0 || pos_ < size) {
            const std::uint64_t at = loan_pos();
            if (!ready_.covers(at)) {
                ready_.give_back();
                if (!take_growing_loan(at, size)) {
                    return;
                }
            }
            // One send at a time: a slot is always free here (a plain send's slot frees on its CQE).
            const auto slot = std::find_if(slots_.begin(), slots_.end(), [](const send_slot& s) { return s.free(); });
            if (slot == slots_.end()) {
                fail("no free send slot");  // an internal bug: every send completed
                return;
            }
            const std::uint64_t loan_end = ready_.file_offset() + ready_.size();
            const bool owed = resend_len_ > 0;
            std::uint64_t n = 0;
            if (owed) {
                // The rest of what was already framed (or counted): no new chunk line.
                n = std::min(loan_end - at, resend_len_);
                resend_pos_ += n;
                resend_len_ -= n;
            } else {
                n = std::min(loan_end, size) - pos_;
                if (declared_) {
                    n = std::min(n, *declared_ - pos_);
                }
                pos_ += n;
            }
            slot->offset = static_cast<std::size_t>(at - ready_.file_offset());
            slot->length = static_cast<std::size_t>(n);
            slot->sent = 0;
            slot->loan = std::move(ready_);
            if (framing_ == body_framing::chunked && !owed) {
                // New data: its chunk line goes first.
                char line[32];
                const int len = std::snprintf(line, sizeof line, "%s%llx\r\n", chunk_started_ ? "\r\n" : "",
                                              static_cast<unsigned long long>(n));
                frame_.assign(line, static_cast<std::size_t>(len));
                frame_sent_ = 0;
                chunk_started_ = true;
                after_frame_ = &*slot;
                send_frame();
                return;
            }
            submit_slot(*slot);
            return;
        }
        const cache::file_status status = view_->status();
        if (status == cache::file_status::complete && view_->size() == pos_) {
            if (declared_ && pos_ < *declared_) {
                fail("the upload ended before its declared length");
                return;
            }
            if (framing_ == body_framing::chunked && !last_frame_) {
                last_frame_ = true;
                frame_ = chunk_started_ ? "\r\n0\r\n\r\n" : "0\r\n\r\n";
                frame_sent_ = 0;
                send_frame();
                return;
            }
            finish();
            return;
        }
        if (status == cache::file_status::failed) {
            fail("the upload this body follows failed");
            return;
        }
        if (status == cache::file_status::complete) {
            continue;  // the last bytes came with the completion
        }
        // At the frontier: ask for a kick, then look again (a change in between is not lost).
        owner_.sender_await_growth();
        if (view_->size() == size && view_->status() == cache::file_status::writing) {
            wait_ = wait::growth;
            return;
        }
    }
}

void sender::send_frame() {
    sending_ = true;
    ++outstanding_;
    // MSG_MORE only when the chunk's data follows at once: never on the last line, which would
    // then sit in the socket (corked) until the kernel's timer.
    const int more = after_frame_ != nullptr ? MSG_MORE : 0;
    env_.loop->send(socket_, std::as_bytes(std::span(frame_)).subspan(frame_sent_), MSG_NOSIGNAL | more, &frame_op_);
}

void sender::on_frame_sent(int result, std::uint32_t /*flags*/) {
    --outstanding_;
    sending_ = false;
    if (!active_) {
        return;  // end() gave the chunk's data back
    }
    if (result < 0) {
        fail(errno_text(-result));
        return;
    }
    // Chunk lines count as bytes sent (the server's and the send path's), not as body bytes.
    const auto n = static_cast<std::uint64_t>(result);
    env_.bytes_sent->fetch_add(n, std::memory_order_relaxed);
    env_.counters->send_bytes.fetch_add(n, std::memory_order_relaxed);
    if (n > 0) {
        progress();
    }
    frame_sent_ += static_cast<std::size_t>(n);
    if (frame_sent_ < frame_.size()) {
        send_frame();
        return;
    }
    if (send_slot* data = std::exchange(after_frame_, nullptr)) {
        submit_slot(*data);
        return;
    }
    if (last_frame_) {
        finish();
        return;
    }
    pump();
}

}  // namespace datapump::stream
