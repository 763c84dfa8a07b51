// A GET that follows an upload in progress (docs/ingest.md, "Load-and-play"): the body is the
// upload's load-and-play file, sent from the arena as it arrives. At the frontier the connection
// registers with the upload and sleeps; the upload kicks it when bytes arrive or it ends.
//
//   pump_follow: bytes past pos_ committed? ── loan (try_loan, else a fallback read) ──> send
//                at the frontier: writing ──> wait (upload_entry::wait) ──follow_kick──> pump
//                                 complete ──> last chunk / whole length ──> finish_response
//                                 failed ──> close_now (the client sees a truncated body)
// Chunked answers frame each send: "\r\n" (ending the previous chunk) + size + "\r\n", then the
// data; the end is "\r\n0\r\n\r\n".
// Data goes out with MSG_DONTWAIT: a socket that is full (a client that stopped reading) answers
// at once, the loan goes back to the cache, and the bytes still owed (follow_owed_, which may be
// the rest of an announced chunk) are sent from a fresh loan once the socket has room again, so a
// stalled follower holds no arena buffer while it waits (docs/daemon.md, "Limits and timeouts").
#include "connection.hpp"

#include "datapump/base/log.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace datapump::http {

void connection::follow_kick() {
    if (phase_ == phase::body && follow_ && wait_ == wait::follow) {
        wait_ = wait::none;
        note_progress();  // the upload moved: the send timeout counts from here
        pump_follow();
    }
}

void connection::pump_follow() {
    const std::uint64_t bs = server_.block_size();
    while (phase_ == phase::body && wait_ == wait::none && !sending_ && follow_pending_.empty()) {
        const auto length = follow_->length();
        const std::uint64_t size = view_->size();
        if (length && pos_ >= *length && follow_owed_ == 0) {
            finish_response();
            return;
        }
        if (follow_owed_ > 0 || pos_ < size) {
            // The next byte to send: the first one a full socket left unsent, else pos_.
            const std::uint64_t at = pos_ - follow_owed_;
            if (!ready_.covers(at)) {
                ready_.give_back();
                auto hit = server_.cache->try_loan(*view_, at / bs);
                if (hit && hit->covers(at)) {
                    ready_ = std::move(*hit);
                } else if (!hit && hit.error().code != errc::would_block && hit.error().code != errc::no_buffers) {
                    close_now(describe(hit.error(), follow_->path()));
                    return;
                } else {
                    // Evicted after its write (or busy): a fallback worker reads it from the temp file.
                    wait_ = wait::loan;
                    loan_async(at, std::min(bs - at % bs, size - at), &connection::on_follow_loans);
                    return;
                }
            }
            if (follow_owed_ > 0) {
                // The rest of what was already framed (or counted): no new chunk line.
                const std::uint64_t n = std::min(ready_.file_offset() + ready_.size() - at, follow_owed_);
                const auto bytes = ready_.bytes().subspan(static_cast<std::size_t>(at - ready_.file_offset()),
                                                          static_cast<std::size_t>(n));
                follow_sending_ = std::move(ready_);
                follow_owed_ -= n;
                follow_send(bytes, true);
                return;
            }
            std::uint64_t n = std::min(ready_.file_offset() + ready_.size(), size) - pos_;
            if (length) {
                n = std::min(n, *length - pos_);
            }
            const auto bytes = ready_.bytes().subspan(static_cast<std::size_t>(pos_ - ready_.file_offset()),
                                                      static_cast<std::size_t>(n));
            follow_sending_ = std::move(ready_);
            pos_ += n;
            body_sent_ += n;
            if (follow_chunked_) {
                char line[32];
                const int len = std::snprintf(line, sizeof line, "%s%llx\r\n", follow_started_ ? "\r\n" : "",
                                              static_cast<unsigned long long>(n));
                follow_frame_.assign(line, static_cast<std::size_t>(len));
                follow_started_ = true;
                follow_pending_ = bytes;
                follow_send(std::as_bytes(std::span(follow_frame_)), false);
            } else {
                follow_send(bytes, true);
            }
            return;
        }
        const cache::file_status status = view_->status();
        if (status == cache::file_status::complete && view_->size() == pos_) {
            if (length && pos_ < *length) {
                close_now("the upload ended before its declared length");
                return;
            }
            if (follow_chunked_ && !follow_last_) {
                follow_last_ = true;
                follow_frame_ = follow_started_ ? "\r\n0\r\n\r\n" : "0\r\n\r\n";
                follow_send(std::as_bytes(std::span(follow_frame_)), false);
                return;
            }
            finish_response();
            return;
        }
        if (status == cache::file_status::failed) {
            close_now("the upload this body follows failed");
            return;
        }
        if (status == cache::file_status::complete) {
            continue;  // the last bytes came with the completion
        }
        // At the frontier: ask for a kick, then look again (a notify in between is not lost).
        follow_->wait(ctx_.doorbell, &ctx_, id_);
        if (view_->size() == size && view_->status() == cache::file_status::writing) {
            wait_ = wait::follow;
            return;
        }
    }
}

void connection::on_follow_loans(result<std::vector<cache::read_loan>> loans) {
    if (phase_ != phase::body || wait_ != wait::loan || !follow_) {
        return;
    }
    wait_ = wait::none;
    if (!loans) {
        close_now(describe(loans.error(), follow_->path()));
        return;
    }
    if (loans->empty() || !loans->front().covers(pos_ - follow_owed_)) {
        close_now("the upload's bytes could not be read back");
        return;
    }
    ready_ = std::move(loans->front());
    pump_follow();
}

void connection::follow_send(std::span<const std::byte> bytes, bool data) {
    sending_ = true;
    ++outstanding_;
    follow_frame_sent_ = bytes.data();
    follow_frame_left_ = bytes.size();
    follow_data_ = data;
    // MSG_MORE only when the data of a chunk follows its frame at once: never on a last send,
    // which would then sit in the socket (corked) until the kernel's timer. MSG_DONTWAIT on data
    // (from a loan): a full socket answers at once instead of the send waiting with the loan.
    // Chunk lines wait in the kernel: they hold no buffer.
    const int more = follow_pending_.empty() ? 0 : MSG_MORE;
    ctx_.loop->send(fd_.get(), bytes, MSG_NOSIGNAL | more | (data ? MSG_DONTWAIT : 0), &follow_op_);
}

// The socket took only part of a data send (or nothing): the rest is owed, the loan goes back,
// and the stream waits for room (on_socket_ready), then sends the owed bytes from a new loan.
void connection::follow_stash_unsent(std::size_t unsent) {
    follow_owed_ += unsent;
    follow_sending_.give_back();
    ready_.give_back();
    wait_ = wait::socket;
    ++outstanding_;
    ctx_.loop->poll_once(fd_.get(), POLLOUT, &poll_op_);
}

void connection::on_follow_sent(int result, std::uint32_t /*flags*/) {
    --outstanding_;
    sending_ = false;
    if (phase_ != phase::body) {
        return;
    }
    if (result == -EAGAIN && follow_data_) {
        follow_stash_unsent(follow_frame_left_);
        return;
    }
    if (result < 0) {
        close_now(errno_text(-result));
        return;
    }
    bump(server_.bytes_sent, static_cast<std::uint64_t>(result));
    bump(server_.sends.send_bytes, static_cast<std::uint64_t>(result));
    if (result > 0) {
        note_progress();
    }
    const auto n = static_cast<std::size_t>(result);
    if (n < follow_frame_left_) {
        if (follow_data_) {
            follow_stash_unsent(follow_frame_left_ - n);
            return;
        }
        follow_send(std::span<const std::byte>(follow_frame_sent_ + n, follow_frame_left_ - n), false);
        return;
    }
    if (!follow_pending_.empty()) {
        const auto data = std::exchange(follow_pending_, {});
        follow_send(data, true);
        return;
    }
    follow_sending_.give_back();
    if (follow_last_) {
        finish_response();
        return;
    }
    pump_follow();
}

}  // namespace datapump::http
