// The body half of a connection: a file body is its stream::sender's to send (the send paths,
// pacing, the VCR controls: docs/stream-engine.md); here the stream is registered in the table
// and on the loop, and the sender's reports reach the connection (its owner). A body that follows
// an upload is follow.cpp's. See connection.hpp for the lifetime rules.
#include "connection.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/http/proto/log_escape.hpp"

#include <poll.h>

namespace datapump::http {

void connection::begin_body() {
    bump(server_.active_streams);
    bump(ctx_.stream_count);
    body_counted_ = true;
    if (control_) {
        loop_context* ctx = &ctx_;
        const std::uint64_t sid = control_->id;
        control_->client = peer_;
        control_->loop = ctx_.index;
        control_->kick = [doorbell = ctx_.doorbell, ctx, sid] {
            doorbell->ring([ctx, sid] {
                const auto it = ctx->streams.find(sid);
                if (it != ctx->streams.end()) {
                    connection* c = it->second;
                    c->kick();
                    settle(c);
                }
            });
        };
        ctx_.streams.emplace(sid, this);
        server_.table.add(control_);
    }
}

void connection::end_body() {
    if (control_) {
        control_->state.store(stream::run_state::ending, std::memory_order_relaxed);
        server_.table.remove(control_->id);
        ctx_.streams.erase(control_->id);
        control_.reset();
    }
    if (body_counted_) {
        body_counted_ = false;
        server_.active_streams.fetch_sub(1, std::memory_order_relaxed);
        ctx_.stream_count.fetch_sub(1, std::memory_order_relaxed);
    }
    if (timer_use_ == timer_use::readmit) {
        ctx_.loop->disarm(timer_);
        timer_use_ = timer_use::none;
    }
    // The rt connection ends with the body (the sender's end releases it).
    sender_.end();
    reservation_.release();
    stream_slot_.release();
    ready_.give_back();
    view_.reset();
    wait_ = wait::none;
    follow_.reset();
    follow_sending_.give_back();
    follow_frame_.clear();
    follow_pending_ = {};
    follow_started_ = false;
    follow_last_ = false;
}

void connection::pump() {
    if (phase_ != phase::body) {
        return;
    }
    if (follow_) {
        if (wait_ == wait::none) {
            note_progress();
            pump_follow();
        }
        return;
    }
    sender_.start();
}

void connection::on_socket_ready(int result, std::uint32_t /*flags*/) {
    --outstanding_;
    if (phase_ != phase::body || wait_ != wait::socket) {
        return;
    }
    wait_ = wait::none;
    if (result < 0 || (static_cast<unsigned>(result) & (POLLERR | POLLHUP)) != 0) {
        close_now(result < 0 ? errno_text(-result) : "the client went away");
        return;
    }
    pump_follow();  // only a follow body polls here (the sender polls for itself)
}

void connection::loan_async(std::uint64_t offset, std::uint64_t length,
                            void (connection::*done)(result<std::vector<cache::read_loan>>)) {
    io::event_loop* loop = ctx_.loop.get();
    loop_context* ctx = &ctx_;
    const std::uint64_t cid = id_;
    server_.cache->loan_read_async(view_, offset, length,
                                   [loop, ctx, cid, done](result<std::vector<cache::read_loan>> loans) {
        auto box = std::make_shared<result<std::vector<cache::read_loan>>>(std::move(loans));
        loop->post([ctx, cid, box, done] {
            const auto it = ctx->conns.find(cid);
            if (it != ctx->conns.end()) {
                connection* c = it->second;
                (c->*done)(std::move(*box));
                settle(c);
            }
        });
    });
}

// ---- The sender's owner ----

void connection::sender_progress(std::uint64_t n) {
    note_progress();
    body_sent_ += n;
}

void connection::sender_paused() { note_paused(); }

void connection::sender_resumed() { note_resumed(); }

bool connection::sender_admitted() { return !admission_released_ || readmit(); }

void connection::sender_done() { finish_response(); }

void connection::sender_failed(std::string_view why) { close_now(why); }

void connection::sender_debug(std::string_view detail) { spdlog::debug("{}: {}", peer_, log_escape(detail)); }

void connection::sender_settle() { settle(this); }

}  // namespace datapump::http
