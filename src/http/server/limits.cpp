// Nothing a client can hold forever (docs/daemon.md, "Limits and timeouts"). A connection's guard
// timer watches each response from its first byte to its last:
//
//   the client takes no byte for send_timeout_ms ──> the response is cut (reset), counted
//   a paused stream stays paused max_pause_ms    ──> cut, counted
//   a paced stream's client takes nothing for the stall release time
//        ──> its capacity reservation and rt connection go back (others may be admitted);
//            when the socket drains, pump() takes them again (readmit), or waits and asks again
//            while the send timeout runs
//
// "The client takes no byte": a send (or a poll for room) is outstanding and nothing moved. A
// stream waiting for its rt credit, for a cache buffer, for a fallback read or for an upload it
// follows is waiting on the server, not on the client, and a paused one is bounded by the pause
// limit alone: neither runs the send timeout. Progress only moves stall_from_ (no timer work per
// send); the guard, when it fires, re-arms itself for the next instant that may matter.
//
// Accepted sockets also get TCP keep-alive and TCP_USER_TIMEOUT (configure_socket), so the kernel
// drops a peer that vanished even when no send of ours is waiting on it.
#include "connection.hpp"

#include "datapump/base/internal/log.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>

namespace datapump::http {

namespace {

// TCP keep-alive of accepted sockets: the first probe after a minute of silence, then every 10 s,
// 6 unanswered probes drop the peer (2 minutes in all; the kernel's default is 2 hours).
constexpr int keepalive_idle_s = 60;
constexpr int keepalive_interval_s = 10;
constexpr int keepalive_probes = 6;
// TCP_USER_TIMEOUT is the send timeout plus this: the daemon's own cut (counted and logged)
// comes first when the daemon sees the stall; the kernel's catches what it does not see.
constexpr std::uint64_t user_timeout_margin_ms = 1000;
// How soon a stream refused re-admission asks again.
constexpr auto readmit_retry = std::chrono::milliseconds(100);

std::chrono::milliseconds ms(std::uint64_t n) { return std::chrono::milliseconds(n); }

}  // namespace

void connection::configure_socket() {
    const int fd = fd_.get();
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_idle_s, sizeof keepalive_idle_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &keepalive_interval_s, sizeof keepalive_interval_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &keepalive_probes, sizeof keepalive_probes);
    // Data the peer has not acknowledged for the send timeout (a vanished peer, or one whose
    // window stays shut) makes the kernel drop the connection, as the send timeout would.
    const auto user_timeout = static_cast<unsigned>(
        std::min<std::uint64_t>(settings_->send_timeout_ms + user_timeout_margin_ms, 0x7fffffffU));
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

// A response begins: its send timeout starts now.
void connection::start_guard() {
    stall_from_ = io::clock::now();
    admission_released_ = false;
    readmit_refusal_logged_ = false;
    arm_guard(guard_due());
}

void connection::arm_guard(io::clock::time_point deadline) { ctx_.loop->arm(guard_, deadline); }

// The next instant the guard must look: the pause limit of a paused stream; otherwise the send
// timeout, or earlier the stall release of a stream that still holds an admission.
io::clock::time_point connection::guard_due() const {
    const server_config& c = *settings_;
    if (phase_ == phase::body && sender_.paused()) {
        return paused_since_ + ms(c.max_pause_ms);
    }
    io::clock::time_point due = stall_from_ + ms(c.send_timeout_ms);
    if (holds_admission()) {
        due = std::min(due, stall_from_ + stall_release());
    }
    return due;
}

std::chrono::milliseconds connection::stall_release() const {
    const server_config& c = *settings_;
    return ms(std::min(c.stall_release_ms, c.send_timeout_ms / 2));
}

bool connection::holds_admission() const {
    return !admission_released_ && (static_cast<bool>(sender_.pacing()) || reservation_.rate() != 0);
}

bool connection::waiting_on_client() const {
    switch (phase_) {
        case phase::head:
        case phase::memory:
            return true;  // the send of the head (or of the whole answer) is outstanding
        case phase::body:
            if (follow_) {
                return sending_ || wait_ == wait::socket;
            }
            return sender_.waiting_on_client();  // including a stream refused re-admission
        default:
            return false;
    }
}

void connection::note_progress() { stall_from_ = io::clock::now(); }

void connection::note_paused() {
    paused_since_ = io::clock::now();
    const io::clock::time_point due = paused_since_ + ms(settings_->max_pause_ms);
    if (!guard_.armed() || due < guard_.deadline()) {
        arm_guard(due);
    }
}

void connection::note_resumed() {
    stall_from_ = io::clock::now();
    arm_guard(guard_due());
}

void connection::on_guard(int /*result*/, std::uint32_t /*flags*/) {
    if (phase_ != phase::head && phase_ != phase::body && phase_ != phase::memory) {
        return;
    }
    const server_config& c = *settings_;
    const io::clock::time_point now = io::clock::now();
    if (phase_ == phase::body && sender_.paused()) {
        if (now >= paused_since_ + ms(c.max_pause_ms)) {
            bump(server_.pause_timeouts);
            spdlog::info("{}: \"{}\" paused for longer than max_pause_ms ({} ms): the stream is cut", peer_,
                         log_request_, c.max_pause_ms);
            close_now("paused for longer than max_pause_ms", true);
            return;
        }
        arm_guard(guard_due());
        return;
    }
    if (!waiting_on_client()) {
        // Waiting on the server (credit, a buffer, a read, an upload): the client owes nothing.
        stall_from_ = now;
        arm_guard(guard_due());
        return;
    }
    const auto stalled = now - stall_from_;
    if (stalled >= ms(c.send_timeout_ms)) {
        bump(server_.send_timeouts);
        spdlog::info("{}: send timeout: the client took no byte of \"{}\" for {} ms ({} body bytes sent): reset",
                     peer_, log_request_, c.send_timeout_ms, body_sent_);
        close_now("send timeout", true);
        return;
    }
    if (holds_admission() && stalled >= stall_release()) {
        release_admission();
    }
    arm_guard(guard_due());
}

// The client stopped taking bytes: its promised rate and its rt slot go to others meanwhile.
void connection::release_admission() {
    admission_released_ = true;
    reservation_.release();
    sender_.pacing().release();
    bump(server_.stall_releases);
    spdlog::debug("{}: \"{}\" took no byte for {} ms: its reservation and rt connection are given back until it "
                  "reads again",
                  peer_, log_request_, stall_release().count());
}

// The socket drained: take the admission back before the next paced byte. False when refused:
// the sender then waits for it and the readmit timer asks again shortly (sender::resume), while
// the send timeout runs.
bool connection::readmit() {
    const std::uint64_t rate = control_ ? control_->rate : 0;
    if (rate == 0) {
        admission_released_ = false;
        return true;
    }
    std::string why;
    auto reserved = server_.admission.reserve(rate, false);
    if (reserved) {
        auto paced = server_.pacing->admit(control_->id, rate, control_->burst, credit_wake(ctx_, control_->id));
        if (paced) {
            reservation_ = std::move(*reserved);
            sender_.pacing() = std::move(*paced);
            admission_released_ = false;
            if (readmit_refusal_logged_) {
                spdlog::info("{}: \"{}\" re-admitted", peer_, log_request_);
            }
            readmit_refusal_logged_ = false;
            return true;
        }
        why = "the pacing scheduler (rt): " + paced.error().reason;
    } else {
        why = reserved.error().text();
    }
    if (!readmit_refusal_logged_) {
        readmit_refusal_logged_ = true;
        spdlog::info("{}: \"{}\" reads again but cannot be re-admitted ({}): it waits and asks again until the send "
                     "timeout",
                     peer_, log_request_, why);
    }
    timer_use_ = timer_use::readmit;
    ctx_.loop->arm(timer_, io::clock::now() + readmit_retry);
    return false;
}

}  // namespace datapump::http
