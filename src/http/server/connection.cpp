#include "connection.hpp"

#include "access_line.hpp"

#include "datapump/ingest/ingest.hpp"

#include "datapump/base/check.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/http/proto/log_escape.hpp"

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace datapump::http {

namespace {

std::size_t input_capacity(const server_config& c) {
    return std::max<std::size_t>(std::size_t{16} * 1024, std::size_t{c.max_header_bytes} + c.max_request_line + 4096);
}

// TCP keep-alive of accepted sockets: the first probe after a minute of silence, then every 10 s,
// 6 unanswered probes drop the peer (2 minutes in all; the kernel's default is 2 hours).
constexpr int keepalive_idle_s = 60;
constexpr int keepalive_interval_s = 10;
constexpr int keepalive_probes = 6;
// TCP_USER_TIMEOUT is the send timeout plus this: the daemon's own cut (counted and logged)
// comes first when the daemon sees the stall; the kernel's catches what it does not see.
constexpr std::uint64_t user_timeout_margin_ms = 1000;

}  // namespace

connection::connection(loop_context& ctx, unique_fd fd, std::string peer, std::uint64_t id, bool admin)
    : ctx_(ctx), server_(*ctx.owner), settings_(ctx.settings), fd_(std::move(fd)), peer_(std::move(peer)), id_(id),
      admin_(admin), timer_(&timer_op_),
      in_(input_capacity(*ctx.settings)),
      parser_(parser_limits{.max_request_line = ctx.settings->max_request_line,
                            .max_header_bytes = ctx.settings->max_header_bytes,
                            .defer_put_bodies = true}),
      sender_(stream::sender_env{.loop = ctx.loop.get(),
                                 .cache = ctx.owner->cache.get(),
                                 .path = ctx.owner->path,
                                 .counters = &ctx.owner->sends,
                                 .bytes_sent = &ctx.owner->bytes_sent,
                                 .limits = &ctx.owner->limits,
                                 .plain_when_copied = ctx.owner->plain_when_copied(),
                                 .page_cache_below = ctx.settings->direct_min_size},
              fd_.get(), *this, peer_) {
    recv_op_.self = send_op_.self = timer_op_.self = this;
    recv_op_.handler = &connection::on_recv;
    send_op_.handler = &connection::on_send;
    timer_op_.handler = &connection::on_timer;
    ctx_.conns.emplace(id_, this);
    bump(ctx_.connections);
    bump(server_.connections);
}

connection::~connection() {
    ctx_.conns.erase(id_);
    ctx_.connections.fetch_sub(1, std::memory_order_relaxed);
    server_.connections.fetch_sub(1, std::memory_order_relaxed);
}

void connection::hold_client(const stream::client_address& from, stream::connection_slot slot) {
    client_ = from;
    client_slot_ = std::move(slot);
}

void connection::settle(connection* c) {
    if (c->phase_ == phase::closing && c->outstanding_ == 0 && c->sender_.idle()) {
        delete c;
    }
}

// Accepted sockets get TCP keep-alive and TCP_USER_TIMEOUT, so the kernel drops a peer that
// vanished even when no send of ours is waiting on it (docs/daemon.md, "Limits and timeouts").
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

void connection::start() {
    configure_socket();
    timer_use_ = timer_use::idle;
    ctx_.loop->arm(timer_, io::clock::now() + std::chrono::milliseconds(settings_->header_timeout_ms));
    arm_recv();
}

void connection::arm_recv() {
    if (recv_armed_ || phase_ == phase::closing || phase_ == phase::upload) {
        return;  // an upload's body is the ingest job's to receive
    }
    if (in_begin_ > 0 && in_begin_ == in_end_) {
        in_begin_ = in_end_ = 0;
    }
    if (in_end_ == in_.size() && in_begin_ > 0) {
        std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
        in_end_ -= in_begin_;
        in_begin_ = 0;
    }
    if (in_end_ == in_.size()) {
        return;  // full of pipelined requests: read more once they are answered
    }
    recv_armed_ = true;
    ++outstanding_;
    ctx_.loop->recv(fd_.get(), std::span(in_).subspan(in_end_), &recv_op_);
}

void connection::on_recv(int result, std::uint32_t /*flags*/) {
    --outstanding_;
    recv_armed_ = false;
    if (phase_ == phase::closing) {
        return;
    }
    if (result == 0) {
        // HTTP clients do not half-close while they wait for a response: the client is gone, and
        // a paused or slow stream must not keep its loans for it.
        close_now(phase_ == phase::reading ? std::string_view{} : std::string_view{"the client closed"});
        return;
    }
    if (phase_ == phase::upload && upload_ != nullptr && result == -ECANCELED) {
        start_upload_job();  // cancelled by begin_upload: nothing arrived meanwhile
        return;
    }
    if (result < 0) {
        close_now(errno_text(-result));
        return;
    }
    in_end_ += static_cast<std::size_t>(result);
    if (phase_ == phase::upload) {
        start_upload_job();  // the bytes that came meanwhile are the body's first (the prefix)
        return;
    }
    if (phase_ == phase::reading) {
        process_input();
    }
    arm_recv();
}

void connection::process_input() {
    while (phase_ == phase::reading && in_begin_ < in_end_) {
        if (!parser_.started()) {
            timer_use_ = timer_use::header;
            ctx_.loop->arm(timer_, io::clock::now() + std::chrono::milliseconds(settings_->header_timeout_ms));
        }
        const auto bytes = std::span(reinterpret_cast<const char*>(in_.data()) + in_begin_, in_end_ - in_begin_);
        const parse_outcome out = parser_.feed(bytes);
        in_begin_ += out.consumed;
        if (out.status == parse_status::need_more) {
            break;
        }
        ctx_.loop->disarm(timer_);
        timer_use_ = timer_use::none;
        if (out.status == parse_status::error) {
            answer_error(out.http_status, out.reason);
            return;
        }
        request req = parser_.take();
        request_started_ = io::clock::now();
        settings_ = ctx_.settings;  // this request's settings (reload), to the end of its response
        // Escaped once here: the access line (and a cut's line) never carries a raw request byte.
        log_request_ = log_escape(req.method_name) + " " + log_escape(req.target);
        if (settings_->access_log) {
            access_method_ = log_escape(req.method_name);
            access_target_ = log_escape(req.target);
            const auto header = [&req](std::string_view name) {
                const std::string* v = req.header(name);
                return v == nullptr ? std::string() : log_escape(*v);
            };
            access_referer_ = header("referer");
            access_agent_ = header("user-agent");
            access_range_ = header("range");
            access_version_ = std::min(req.version_major, 9U) * 10 + std::min(req.version_minor, 9U);
        }
        head_request_ = req.verb == method::head;
        const bool keep = req.keep_alive && !draining_ && !server_.draining.load(std::memory_order_relaxed);
        if (auto refused = refuse_before_routing(*settings_, req, keep, admin_)) {
            answer(std::move(*refused));
            return;
        }
        if (req.body_follows) {
            begin_upload(std::move(req), keep);
            return;
        }
        answer(route(ctx_, req, keep, admin_, client_));
        return;
    }
    if (phase_ == phase::reading) {
        arm_recv();
    }
}

void connection::answer(response_plan plan) {
    if (head_request_) {
        // Every answer passes here: whatever the router built (a file, an error page, JSON), a
        // HEAD gets its head only, with the Content-Length a GET would get (RFC 9110 §9.3.2).
        // One body byte too many would be read as the start of the next response on keep-alive.
        plan.body.clear();
        plan.file.reset();
        plan.follow.reset();
    }
    status_ = plan.status;
    close_after_ = plan.close_after;
    body_sent_ = 0;
    first_byte_sent_ = false;
    readmit_refusal_logged_ = false;
    // The response's limits run from here: its send timeout starts now.
    const bool streamed = (plan.file && plan.length > 0) || plan.follow;
    sender_.watch(limits(), log_request_, streamed ? 0 : plan.body.size());
    if (plan.status >= 100 && plan.status < 600) {
        bump(server_.by_status[static_cast<std::size_t>(plan.status)]);
    }
    if (plan.file && plan.length > 0) {
        // The admitted stream splits: the connection keeps its registration (the entry, the client
        // slot), the sender takes what it paces and releases (the rt connection, the capacity).
        DP_CHECK(plan.stream.has_value());  // the router admits every file body it plans
        stream::admitted& admitted = *plan.stream;
        control_ = admitted.controls;
        stream_slot_ = std::move(admitted.slot);
        out_ = std::move(plan.head);
        out_sent_ = 0;
        phase_ = phase::head;
        begin_body();  // registers the stream; the head goes first
        const std::string path = plan.file->path();
        auto begun = sender_.begin({.file = std::move(plan.file),
                                    .start = plan.start,
                                    .length = plan.length,
                                    .file_size = plan.file_size,
                                    .controls = std::move(admitted.controls),
                                    .pacing = std::move(admitted.pacing),
                                    .capacity = std::move(admitted.capacity)});
        if (!begun) {
            spdlog::error("{}: {}", peer_, log_escape(describe(begun.error(), path)));
            close_now(server_.loans_path() ? "no cache view" : "no descriptor to send from");
            return;
        }
        send_out();
        return;
    }
    if (plan.follow) {
        // A GET of a file being uploaded: the head, then the bytes as they arrive.
        follow_ = std::move(plan.follow);
        sender_.begin(stream::growing_file{
            .view = follow_->view(),
            .length = follow_->length(),
            .framing = plan.follow_chunked ? stream::body_framing::chunked : stream::body_framing::none,
            .name = follow_->path()});
        out_ = std::move(plan.head);
        out_sent_ = 0;
        phase_ = phase::head;
        send_out();
        return;
    }
    out_ = std::move(plan.head);
    out_ += plan.body;
    out_sent_ = 0;
    body_sent_ = plan.body.size();
    phase_ = phase::memory;
    send_out();
}

// A request that never became one (malformed, or too slow): answer and close.
void connection::answer_error(int status, std::string_view reason) {
    // assign(count, char): GCC 12's -Wrestrict misfires on operator=(const char*) here
    // once TSan's instrumentation changes the inlining (a CI build failure).
    log_request_.assign(1, '-');
    access_method_.clear();  // the access line says "-" for the request
    head_request_ = false;
    request_started_ = io::clock::now();
    answer(error_response(status, reason, true));
}

void connection::send_out() {
    const auto rest = std::as_bytes(std::span(out_)).subspan(out_sent_);
    const int more = phase_ == phase::head ? MSG_MORE : 0;
    // A fresh answer's head (or a whole small answer) almost always fits the socket's buffer:
    // sent now with a non-blocking send, it saves a trip round the ring before the body (or the
    // next pipelined request) starts, the head going out with the body's first bytes (MSG_MORE).
    // What it does not take goes through the ring. The nesting is bounded: answers sent this way
    // recurse through finish_response -> process_input; past the bound they take the ring.
    if (out_sent_ == 0 && direct_depth_ < max_direct_depth) {
        const ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT | more);
        if (n > 0) {
            ++direct_depth_;
            took_out(static_cast<std::size_t>(n));
            --direct_depth_;
            return;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close_now(errno_text(errno));
            return;
        }
    }
    ++outstanding_;
    ctx_.loop->send(fd_.get(), rest, MSG_NOSIGNAL | more, &send_op_);
}

void connection::on_send(int result, std::uint32_t /*flags*/) {
    --outstanding_;
    if (phase_ == phase::closing) {
        return;
    }
    if (result < 0) {
        close_now(errno_text(-result));
        return;
    }
    took_out(static_cast<std::size_t>(result));
}

// The socket took `n` bytes of out_ (the head, or a whole answer held in memory).
void connection::took_out(std::size_t n) {
    out_sent_ += n;
    bump(server_.bytes_sent, n);
    if (n > 0) {
        if (!first_byte_sent_) {
            first_byte_sent_ = true;
            first_byte_at_ = io::clock::now();
            server_.first_byte.observe(
                std::chrono::duration_cast<std::chrono::microseconds>(first_byte_at_ - request_started_));
        }
        sender_.owner_progress();
    }
    if (out_sent_ < out_.size()) {
        send_out();
        return;
    }
    if (phase_ == phase::head) {
        phase_ = phase::body;
        sender_.start();
        return;
    }
    finish_response();
}

void connection::response_ended(bool completed) {
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(io::clock::now() - request_started_);
    server_.request_duration.observe(took);
    if (!settings_->access_log) {
        return;
    }
    access_record r;
    r.remote_addr = address_of(peer_);
    r.time = std::chrono::system_clock::now();
    if (!access_method_.empty()) {
        r.method = access_method_;
        r.target = access_target_;
        r.protocol = access_version_ == 10 ? "HTTP/1.0" : access_version_ == 11 ? "HTTP/1.1" : "HTTP/?";
    }
    r.status = status_;
    r.body_bytes = body_sent_;
    r.referer = access_referer_;
    r.user_agent = access_agent_;
    r.range = access_range_;
    r.duration = took;
    if (first_byte_sent_) {
        r.first_byte = std::chrono::duration_cast<std::chrono::microseconds>(first_byte_at_ - request_started_);
    }
    r.completed = completed;
    const std::string line = format_access_line(r, settings_->access_format);
    if (settings_->access_sink) {
        settings_->access_sink(line);
    } else {
        spdlog::info("{}", line);
    }
}

void connection::finish_response() {
    response_ended(true);
    end_body();
    sender_.unwatch();
    out_.clear();
    out_sent_ = 0;
    phase_ = phase::reading;  // the response is whole: a close from here is an orderly one
    if (close_after_ || draining_) {
        close_now({});
        return;
    }
    timer_use_ = timer_use::idle;
    ctx_.loop->arm(timer_, io::clock::now() + std::chrono::milliseconds(settings_->idle_timeout_ms));
    process_input();
}

void connection::close_now(std::string_view why, bool reset) {
    if (phase_ == phase::closing) {
        return;
    }
    if (!why.empty()) {
        spdlog::debug("{}: connection closed: {}", peer_, log_escape(why));  // may name a file
    }
    // A body cut short is lost to the client anyway: reset the connection, which also frees
    // the socket's queue at once, so zero-copy notifications (and the loans they hold) come back
    // now rather than when a vanished peer would have acknowledged the data.
    const bool abortive = reset || phase_ == phase::head || phase_ == phase::body;
    if (abortive || phase_ == phase::memory) {
        response_ended(false);
        if (settings_->access_log && !why.empty()) {
            // Why it was cut goes to the daemon log; the access line says only completed: false
            // (JSON) and the bytes that were sent.
            spdlog::info("{} \"{}\" {} {} cut: {}", peer_, log_request_, status_, body_sent_, log_escape(why));
        }
    }
    const bool uploading = phase_ == phase::upload;
    phase_ = phase::closing;
    ctx_.loop->disarm(timer_);
    sender_.unwatch();
    end_body();
    if (uploading && upload_ != nullptr && upload_->job != nullptr) {
        upload_->job->cancel(error{errc::closed, 0, "upload: the connection was closed"});
    }
    // Every pending operation on the socket now completes (recv with 0, sends with EPIPE, a poll
    // with POLLHUP); the last completion deletes the connection. io_uring holds its own reference
    // to the socket, so closing the descriptor early is safe: no new operation names it.
    ::shutdown(fd_.get(), SHUT_RDWR);
    if (abortive) {
        const linger rst{1, 0};
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
        fd_.reset();
    }
}

void connection::on_timer(int /*result*/, std::uint32_t /*flags*/) {
    const timer_use use = timer_use_;
    timer_use_ = timer_use::none;
    switch (use) {
        case timer_use::idle:
            if (phase_ == phase::reading) {
                close_now("idle timeout");
            }
            break;
        case timer_use::header:
            if (phase_ == phase::reading) {
                answer_error(408, "the request head did not arrive in time");
            }
            break;
        case timer_use::upload:
            upload_timer();
            break;
        case timer_use::none:
            break;
    }
}

void connection::kick() {
    if (phase_ == phase::body) {
        sender_.kick();  // the controls are read when the body starts
    }
}

void connection::on_credit() {
    if (phase_ == phase::body) {
        sender_.on_credit();
    }
}

void connection::cut() { close_now("server shutdown"); }

void connection::drain() {
    draining_ = true;
    if (phase_ == phase::reading && !parser_.started()) {
        close_now({});
    }
}

}  // namespace datapump::http
