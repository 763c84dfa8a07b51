// PUT: an upload through the ingest path into a temp file beside the target, published by
// ingest::publisher (durable, then renamed: per upload or batched), then answered 201 or 204
// (docs/daemon.md "Uploads", docs/ingest.md).
//
//   reading ──PUT head──> checks (router: upload_target) ──> phase upload:
//     [a recv of ours still armed: cancel it, its bytes join the prefix]
//     open temp (create_new) ──> 100 Continue ──> ingest::job (prefix = bytes after the head)
//     ──on_done ok──> publisher ──on_published──> 201/204 ──> reading (keep-alive)
//     ──on_done error──> temp removed ──> 400/413/507/500 and close (or just close: peer gone)
//
// Bounds (docs/daemon.md "Uploads"): an upload is admitted against --max-uploads and
// --max-uploads-per-ip before its body is read (503 + Retry-After over a cap); while it runs, the
// timer cuts it (408) when no byte came for --idle-timeout-ms or when a window of
// --upload-rate-window-ms brought less than --upload-min-rate on average. No free arena buffer:
// 503 + Retry-After.
#include "connection.hpp"

#include "datapump/base/check.hpp"
#include "datapump/base/internal/log.hpp"
#include "datapump/http/proto/log_escape.hpp"
#include "datapump/ingest/upload_names.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace datapump::http {


namespace {

int status_for(const error& why) {
    switch (why.code) {
        case errc::no_buffers: return 503;  // every arena buffer is taken: a moment later, maybe not
        case errc::no_space: return 507;
        case errc::protocol_error: return 400;
        case errc::full: return 413;
        case errc::not_found: return 409;  // the folder does not exist
        case errc::escapes_root: return 403;
        case errc::io_error:  // a name the file system refuses as too long (the temp name's is longer)
            return why.sys == ENAMETOOLONG ? 414 : 500;
        case errc::not_regular_file:  // a folder is in the way
        case errc::busy: return 409;   // another upload of the name
        default: return 500;
    }
}

// A 503 that closes (the body is not read), with Retry-After: the condition is temporary.
response_plan unavailable(std::string_view why) {
    response_plan plan = error_response(503, why, true);
    constexpr std::string_view end = "\r\n\r\n";
    DP_CHECK(plan.head.ends_with(end));
    plan.head.insert(plan.head.size() - 2, "Retry-After: 1\r\n");
    return plan;
}

// The client's address without its port: "1.2.3.4:5" -> "1.2.3.4", "[::1]:5" -> "[::1]".
std::string address_of(const std::string& peer) {
    const std::size_t colon = peer.rfind(':');
    return colon == std::string::npos ? peer : peer.substr(0, colon);
}

}  // namespace

void connection::begin_upload(request req, bool keep_alive) {
    response_plan refusal;
    auto target = upload_target(server_, *settings_, req, refusal);
    if (!target) {
        answer(std::move(refusal));
        return;
    }
    auto slot = server_.uploads.admit(address_of(peer_), server_.max_uploads, settings_->max_uploads_per_ip);
    if (!slot) {
        spdlog::warn("upload {} from {} refused: {}", *target, peer_, slot.error().what);
        answer(unavailable(slot.error().what));
        return;
    }
    upload_ = std::make_shared<upload_state>();
    upload_->slot = std::move(*slot);
    upload_->path = std::move(*target);
    upload_->req = std::move(req);
    upload_->keep_alive = keep_alive;
    upload_timed_out_ = false;
    phase_ = phase::upload;
    bump(server_.uploads_started);
    if (recv_armed_) {
        // Our receive into the head buffer is still armed: the body must not go there. Its
        // completion (with whatever it got) starts the job.
        ctx_.loop->cancel(&recv_op_);
        return;
    }
    start_upload_job();
}

void connection::start_upload_job() {
    upload_state& up = *upload_;
    const request& req = up.req;
    // Locked for its life: another daemon sharing the root removes it at its start-up only once
    // we are gone.
    auto created = ingest::create_temp(server_.instance, up.path);
    if (!created) {
        const error why = created.error();
        if (why.code != errc::not_found && why.sys != ENAMETOOLONG) {
            spdlog::error("upload {}: {}", log_escape(up.path), log_escape(describe(why, up.path)));
        }
        upload_failed(why, status_for(why));
        return;
    }
    up.temp = std::move(created->name);
    up.file.emplace(std::move(created->file));
    const auto prefix = std::span(in_).subspan(in_begin_, in_end_ - in_begin_);
    const std::string* expect = req.header("expect");
    if (expect != nullptr && prefix.empty() && req.version_minor >= 1) {
        // The client waits for this before it sends the body (RFC 9110 §10.1.1). A fresh
        // connection's send buffer takes 25 bytes at once; if not, the client's own timer sends.
        static constexpr char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
        (void)::send(fd_.get(), go_on, sizeof go_on - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    const std::uint64_t max = settings_->max_upload == 0 ? ~std::uint64_t{0} : settings_->max_upload;
    ingest::callbacks cb;
    cb.on_done = [this](result<std::uint64_t> total) {
        on_upload_done(total);
        settle(this);
    };
    cb.on_progress = [this] { upload_progress(); };
    if (req.body_chunked) {
        up.decoder = std::make_unique<chunked_body>(chunked_limits{.max_body = max});
    }
    auto job = ingest::job::start(
        *ctx_.loop, *server_.cache, {.socket = fd_.get(), .prefix = prefix, .decoder = up.decoder.get()},
        {.file = &*up.file, .offset = 0, .length = req.body_length, .old_size = 0},
        {.windows_in_flight = server_.config.upload_windows, .load_and_play = true}, std::move(cb),
        &server_.ingest);
    if (!job) {
        const int status = status_for(job.error());
        if (status >= 500 && status != 503) {
            spdlog::error("upload {}: {}", log_escape(up.path), describe(job.error()));
        }
        (void)server_.instance.remove(up.temp);
        upload_failed(job.error(), status);
        return;
    }
    up.job = std::move(*job);
    in_begin_ += up.job->prefix_used();
    ++outstanding_;  // the job: on_done is its last act
    up.entry = std::make_shared<upload_entry>(
        up.path, up.job->view(), req.body_chunked ? std::nullopt : std::optional<std::uint64_t>(req.body_length));
    if (!server_.uploads.add(up.entry)) {
        // Another PUT to the same name got there first (on another loop).
        up.entry.reset();
        up.job->cancel(error{errc::busy, 0, "upload: another upload to this name is in progress"});
        return;
    }
    const auto now = io::clock::now();
    up.last_progress = now;
    up.window_start = now;
    up.window_received = 0;
    arm_upload_timer();
}

void connection::arm_upload_timer() {
    const upload_state& up = *upload_;
    auto deadline = up.last_progress + std::chrono::milliseconds(settings_->idle_timeout_ms);
    if (settings_->upload_min_rate != 0) {
        deadline = std::min(deadline, up.window_start + std::chrono::milliseconds(settings_->upload_rate_window_ms));
    }
    timer_use_ = timer_use::upload;
    ctx_.loop->arm(timer_, deadline);
}

void connection::upload_progress() {
    if (upload_ && upload_->entry) {
        upload_->entry->notify();
    }
    if (upload_) {
        // Only noted: the timer is not moved on every receive (a byte every few seconds must not
        // keep an upload alive for ever); it looks at this when it fires.
        upload_->last_progress = io::clock::now();
    }
}

void connection::upload_timer() {
    if (phase_ != phase::upload || upload_ == nullptr || upload_->job == nullptr) {
        return;
    }
    upload_state& up = *upload_;
    const auto now = io::clock::now();
    const char* cut = nullptr;
    if (now - up.last_progress >= std::chrono::milliseconds(settings_->idle_timeout_ms)) {
        cut = "upload: no body bytes for --idle-timeout-ms";
    } else if (const std::uint64_t min_rate = settings_->upload_min_rate;
               min_rate != 0 &&
               now - up.window_start >= std::chrono::milliseconds(settings_->upload_rate_window_ms)) {
        const std::uint64_t received = up.job->received();
        const auto elapsed = std::chrono::duration<double>(now - up.window_start).count();
        if (static_cast<double>(received - up.window_received) < static_cast<double>(min_rate) * elapsed) {
            cut = "upload: slower than --upload-min-rate";
        } else {
            up.window_start = now;
            up.window_received = received;
        }
    }
    if (cut != nullptr) {
        spdlog::warn("upload {} from {} cut (408): {}", up.path, peer_, cut);
        upload_timed_out_ = true;
        up.job->cancel(error{errc::closed, ETIMEDOUT, cut});
        return;
    }
    arm_upload_timer();
}

void connection::on_upload_done(result<std::uint64_t> total) {
    --outstanding_;
    std::shared_ptr<upload_state> up = upload_;
    if (timer_use_ == timer_use::upload) {
        ctx_.loop->disarm(timer_);
        timer_use_ = timer_use::none;
    }
    if (!total) {
        const error why = total.error();
        (void)server_.instance.remove(up->temp);
        if (up->entry) {
            server_.uploads.remove(*up->entry);
            up->entry->notify();  // followers find the file failed
        }
        if (phase_ == phase::closing) {
            bump(server_.uploads_failed);
            upload_.reset();
            return;
        }
        int status = status_for(why);  // a refused chunked body: 400 or 413 (chunked_body)
        if (upload_timed_out_) {
            status = 408;
        }
        if (why.code == errc::peer_gone) {
            bump(server_.uploads_failed);
            upload_.reset();
            close_now(describe(why, up->path));
            return;
        }
        if (status >= 500) {
            spdlog::error("upload {}: {}", log_escape(up->path), describe(why));
        }
        upload_failed(why, status);
        return;
    }
    // Bytes of the next request that arrived with the end of a chunked body.
    const auto extra = up->job->leftover();
    if (!extra.empty()) {
        // The job only reads past a chunked body after taking every prefix byte, so the buffer's
        // unread part is empty here and the (at most 64) extra bytes fit once it is rewound.
        if (in_begin_ > 0) {
            std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
            in_end_ -= in_begin_;
            in_begin_ = 0;
        }
        if (in_end_ + extra.size() > in_.size()) {
            close_now("no room for the bytes after a chunked body");  // never lose a request silently
            return;
        }
        std::copy(extra.begin(), extra.end(), in_.begin() + static_cast<std::ptrdiff_t>(in_end_));
        in_end_ += extra.size();
    }
    // Durable, then named: off the loop (fsync and rename block).
    std::optional<fs::file>& written = up->file;
    fs::file* temp_file = written ? &*written : nullptr;
    DP_CHECK(temp_file != nullptr);  // the job wrote into it
    server::state* s = &server_;
    loop_context* ctx = &ctx_;
    const std::uint64_t cid = id_;
    auto published = [s, ctx, cid, up, bell = ctx_.doorbell](result<bool> replaced) {
        if (replaced) {
            up->job->publish_succeeded();
            bump(s->uploads_completed);
        } else {
            up->job->publish_failed(replaced.error());  // the publisher removed the temp file
            bump(s->uploads_failed);
        }
        if (up->entry) {
            s->uploads.remove(*up->entry);
            up->entry->notify();
        }
        bell->ring([ctx, cid, replaced] {
            const auto it = ctx->conns.find(cid);
            if (it != ctx->conns.end()) {
                connection* c = it->second;
                c->on_published(replaced);
                settle(c);
            }
        });
    };
    s->publishing->post({.file = temp_file,
                         .size = up->job->final_size(),
                         .temp = up->temp,
                         .path = up->path,
                         .done = std::move(published)});
}

void connection::on_published(result<bool> replaced) {
    if (phase_ != phase::upload || !upload_) {
        return;
    }
    std::shared_ptr<upload_state> up = std::exchange(upload_, nullptr);
    // The caps' slot goes back before the answer: a client that has its 201 may start the next
    // upload at once (the publisher may still hold the state a moment longer).
    up->slot.release();
    if (!replaced) {
        spdlog::error("upload {}: {}", log_escape(up->path), describe(replaced.error()));
        upload_failed(replaced.error(), status_for(replaced.error()), false);
        return;
    }
    const bool close = !up->keep_alive || draining_;
    body_sent_ = 0;
    answer(*replaced ? empty_response(204, close) : empty_response(201, close, up->req.path));
}

void connection::upload_failed(const error& why, int http_status, bool count) {
    if (count) {
        bump(server_.uploads_failed);
    }
    if (upload_) {
        upload_->slot.release();  // before the answer, as in on_published
    }
    upload_.reset();
    phase_ = phase::reading;  // answer() takes it from here
    // The body was not read to its end: the connection cannot carry another request.
    answer(http_status == 503 ? unavailable(why.what) : error_response(http_status, why.what, true));
}

}  // namespace datapump::http
