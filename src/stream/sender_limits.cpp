// Nothing a client can hold forever (docs/daemon.md, "Limits and timeouts"). The sender's guard
// timer watches a response from watch() (before its head) to unwatch() (its last byte, or a cut):
//
//   the client takes no byte for the send timeout ──> cut (owner.sender_failed: a reset), counted
//   a paused stream stays paused the maximum pause ──> cut, counted
//   a paced stream's client takes nothing for the stall release time
//        ──> its capacity reservation and rt connection go back (others may be admitted); when
//            the socket drains, pump() has the owner take them again (sender_admitted -> admit),
//            or waits and asks again every 100 ms while the send timeout runs
//
// "The client takes no byte": a send (or a poll for room) is outstanding and nothing moved, or the
// owner's own send of the response (its head, an answer in memory) has not finished. A stream
// waiting for its rt credit, for a cache buffer, for a fallback read or for the writer of a
// growing file is waiting on the server, not on the client, and a paused one is bounded by the
// pause limit alone: neither runs the send timeout. Progress only moves stall_from_ (no timer work
// per send); the guard, when it fires, re-arms itself for the next instant that may matter.
#include "datapump/stream/sender.hpp"

#include "datapump/base/internal/log.hpp"

#include <algorithm>

namespace datapump::stream {

namespace {

void count(std::atomic<std::uint64_t> limit_counters::*which, limit_counters* counters) {
    if (counters != nullptr) {
        (counters->*which).fetch_add(1, std::memory_order_relaxed);  // monitoring only
    }
}

}  // namespace

void sender::watch(const send_limits& limits, std::string_view request, std::uint64_t body_bytes) {
    watching_ = true;
    limits_ = limits;
    request_ = request;
    body_bytes_ = body_bytes;
    stall_from_ = io::clock::now();
    admission_released_ = false;
    arm_guard(guard_due());
}

void sender::unwatch() {
    watching_ = false;
    env_.loop->disarm(guard_timer_);
}

void sender::owner_progress() { progress(); }

void sender::progress() { stall_from_ = io::clock::now(); }

void sender::admit(reservation capacity, rt_stream pacing) {
    capacity_ = std::move(capacity);
    pacing_ = std::move(pacing);
    admission_released_ = false;
}

bool sender::holds_admission() const {
    return active_ && !admission_released_ && (static_cast<bool>(pacing_) || capacity_.rate() != 0);
}

// The owner's send of the head (before start()) or of an answer held in memory (no transfer), or
// one of the sender's waits on the client.
bool sender::response_waits_on_client() const { return !active_ || !started_ || waiting_on_client(); }

std::chrono::milliseconds sender::stall_release() const {
    return std::min(limits_.stall_release, limits_.send_timeout / 2);
}

// The next instant the guard must look: the pause limit of a paused stream; otherwise the send
// timeout, or earlier the stall release of a stream that still holds an admission.
io::clock::time_point sender::guard_due() const {
    if (paused()) {
        return paused_since_ + limits_.max_pause;
    }
    io::clock::time_point due = stall_from_ + limits_.send_timeout;
    if (holds_admission()) {
        due = std::min(due, stall_from_ + stall_release());
    }
    return due;
}

void sender::arm_guard(io::clock::time_point deadline) { env_.loop->arm(guard_timer_, deadline); }

void sender::on_guard(int /*result*/, std::uint32_t /*flags*/) {
    if (!watching_) {
        return;
    }
    const io::clock::time_point now = io::clock::now();
    if (paused()) {
        if (now >= paused_since_ + limits_.max_pause) {
            count(&limit_counters::pause_timeouts, env_.limits);
            spdlog::info("{}: \"{}\" paused for longer than max_pause_ms ({} ms): the stream is cut", peer_, request_,
                         limits_.max_pause.count());
            unwatch();
            fail("paused for longer than max_pause_ms");
            return;
        }
        arm_guard(guard_due());
        return;
    }
    if (!response_waits_on_client()) {
        // Waiting on the server (credit, a buffer, a read, the writer): the client owes nothing.
        stall_from_ = now;
        arm_guard(guard_due());
        return;
    }
    const auto stalled = now - stall_from_;
    if (stalled >= limits_.send_timeout) {
        count(&limit_counters::send_timeouts, env_.limits);
        spdlog::info("{}: send timeout: the client took no byte of \"{}\" for {} ms ({} body bytes sent): reset",
                     peer_, request_, limits_.send_timeout.count(), body_bytes_);
        unwatch();
        fail("send timeout");
        return;
    }
    if (holds_admission() && stalled >= stall_release()) {
        release_admission();
    }
    arm_guard(guard_due());
}

// The client stopped taking bytes: its promised rate and its rt slot go to others meanwhile.
void sender::release_admission() {
    admission_released_ = true;
    capacity_.release();
    pacing_.release();
    count(&limit_counters::stall_releases, env_.limits);
    spdlog::debug("{}: \"{}\" took no byte for {} ms: its reservation and rt connection are given back until it "
                  "reads again",
                  peer_, request_, stall_release().count());
}

}  // namespace datapump::stream
