// The body half of a connection: a body is its stream::sender's to send (the send paths, pacing,
// the VCR controls, a body that follows an upload, the response's limits: docs/stream-engine.md);
// here the stream is registered in the table and on the loop, a stalled stream is admitted again,
// and the sender's reports reach the connection (its owner). See connection.hpp for the lifetime
// rules.
#include "connection.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/http/proto/log_escape.hpp"

#include <string>
#include <variant>

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
    // The rt connection and the capacity reservation end with the body (the sender's end).
    sender_.end();
    stream_slot_.release();
    follow_.reset();
}

// The upload this connection follows moved on (its entry rang the doorbell).
void connection::follow_kick() {
    if (phase_ == phase::body && follow_) {
        sender_.grown();
    }
}

stream::send_limits connection::limits() const {
    const server_config& c = *settings_;
    return {.send_timeout = std::chrono::milliseconds(c.send_timeout_ms),
            .max_pause = std::chrono::milliseconds(c.max_pause_ms),
            .stall_release = std::chrono::milliseconds(c.stall_release_ms)};
}

// The socket drained after a stall release: take the admission back (stream::readmit) before the
// next paced byte. False when refused: the sender waits for it and asks again shortly, while the
// send timeout runs.
bool connection::readmit() {
    if (!control_) {
        sender_.admit({}, {});
        return true;
    }
    auto again = stream::readmit(server_.stream_parts(), *control_, credit_wake(ctx_));
    if (again) {
        sender_.admit(std::move(again->capacity), std::move(again->pacing));
        if (readmit_refusal_logged_) {
            spdlog::info("{}: \"{}\" re-admitted", peer_, log_request_);
        }
        readmit_refusal_logged_ = false;
        return true;
    }
    if (!readmit_refusal_logged_) {
        // rt's reason alone, as this line always said (the 503's text adds the stream's figures).
        const auto* rt = std::get_if<stream::rt_refusal>(&again.error());
        const std::string why =
            rt != nullptr ? "the pacing scheduler (rt): " + rt->reason : stream::describe(again.error(), client_);
        readmit_refusal_logged_ = true;
        spdlog::info("{}: \"{}\" reads again but cannot be re-admitted ({}): it waits and asks again until the send "
                     "timeout",
                     peer_, log_request_, why);
    }
    return false;
}

// ---- The sender's owner ----

void connection::sender_progress(std::uint64_t n) { body_sent_ += n; }

// The pause limit is the sender's (its guard).
void connection::sender_paused() {}

void connection::sender_resumed() {}

bool connection::sender_admitted() { return !sender_.admission_released() || readmit(); }

void connection::sender_await_growth() { follow_->wait(ctx_.doorbell, &ctx_, id_); }

void connection::sender_done() { finish_response(); }

// A failed transfer, or a response its limits cut: reset (the client cannot use what it got).
void connection::sender_failed(std::string_view why) { close_now(why, true); }

void connection::sender_debug(std::string_view detail) { spdlog::debug("{}: {}", peer_, log_escape(detail)); }

void connection::sender_settle() { settle(this); }

}  // namespace datapump::http
