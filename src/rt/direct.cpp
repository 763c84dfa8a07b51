#include "direct.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace datapump::rt::detail {

namespace {

// The most a pipe may hold here without CAP_SYS_RESOURCE (/proc/sys/fs/pipe-max-size).
constexpr std::size_t max_pipe = std::size_t{1} << 20;

bool is_stream(mode_t mode) { return S_ISSOCK(mode) || S_ISFIFO(mode); }

}  // namespace

result<std::shared_ptr<direct_mover>> direct_mover::create(io::event_loop& engine, const direct_ends& ends,
                                                           std::size_t chunk, done_fn done) {
    struct stat from{};
    struct stat to{};
    if (ends.from < 0 || ::fstat(ends.from, &from) != 0 || ends.to < 0 || ::fstat(ends.to, &to) != 0) {
        return fail(errc::invalid_argument, "rt: direct connection: a descriptor is not open");
    }
    bool from_ok = (S_ISREG(from.st_mode) && ends.from_offset >= 0) || (is_stream(from.st_mode) && ends.from_offset < 0);
    bool to_ok = (S_ISREG(to.st_mode) && ends.to_offset >= 0) || (is_stream(to.st_mode) && ends.to_offset < 0);
    if (!from_ok || !to_ok) {
        return fail(errc::invalid_argument,
                    "rt: direct connection: each end is a regular file (with an offset) or a socket or pipe (without)");
    }
    if (chunk == 0) {
        return fail(errc::invalid_argument, "rt: direct connection: the chunk (buffer size) must be above 0");
    }
    std::shared_ptr<direct_mover> m(new direct_mover(engine, ends, chunk, std::move(done)));
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        return fail(errc::no_buffers, "rt: direct connection: pipe2", errno);
    }
    m->pipe_r_ = unique_fd(fds[0]);
    m->pipe_w_ = unique_fd(fds[1]);
    // Best effort: a larger pipe moves a chunk in fewer splices; the kernel caps it.
    ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(std::min(chunk, max_pipe)));
    int size = ::fcntl(fds[1], F_GETPIPE_SZ);
    m->pipe_size_ = size > 0 ? static_cast<std::size_t>(size) : 65536;
    return m;
}

direct_mover::~direct_mover() = default;

void direct_mover::enqueue(const job& j) {
    engine_.post([self = shared_from_this(), j] {
        self->queue_.push_back(j);
        self->start_next();
    });
}

void direct_mover::stop(std::function<void()> then) {
    engine_.post([self = shared_from_this(), then = std::move(then)]() mutable {
        self->stopping_ = true;
        self->queue_.clear();
        if (self->in_flight_) {
            self->stopped_ = std::move(then);
            self->engine_.cancel(self.get());
        } else {
            then();
        }
    });
}

void direct_mover::start_next() {
    while (!busy_ && !stopping_ && !queue_.empty()) {
        current_ = queue_.front();
        queue_.pop_front();
        chunk_moved_ = 0;
        if (ended_) {
            // The source ended with an earlier chunk: these come back empty.
            done_(chunk_done{current_, 0, true, error{}, false});
            continue;
        }
        busy_ = true;
        issue();
    }
}

void direct_mover::issue() {
    in_flight_ = true;
    self_ = shared_from_this();
    if (in_pipe_ > 0) {
        filling_ = false;
        std::int64_t off = ends_.to_offset < 0 ? -1 : ends_.to_offset + static_cast<std::int64_t>(total_out_);
        engine_.splice(pipe_r_.get(), -1, ends_.to, off, static_cast<unsigned>(in_pipe_), 0, this);
        return;
    }
    std::uint64_t want = std::min<std::uint64_t>(chunk_ - chunk_moved_, pipe_size_);
    if (ends_.length != 0) {
        want = std::min(want, ends_.length - total_in_);
    }
    filling_ = true;
    std::int64_t off = ends_.from_offset < 0 ? -1 : ends_.from_offset + static_cast<std::int64_t>(total_in_);
    engine_.splice(ends_.from, off, pipe_w_.get(), -1, static_cast<unsigned>(want), 0, this);
}

void direct_mover::finish_chunk(bool end, int err) {
    busy_ = false;
    chunk_done d{current_, chunk_moved_, end, error{}, false};
    if (err != 0) {
        d.failed = true;
        d.end = true;
        d.failure = error{errc::io_error, err, filling_ ? "rt: direct connection: reading the source"
                                                      : "rt: direct connection: writing the sink"};
    }
    if (d.end) {
        ended_ = true;
    }
    done_(d);
    start_next();
}

void direct_mover::complete(int result, std::uint32_t /*flags*/) {
    in_flight_ = false;
    std::shared_ptr<direct_mover> keep = std::move(self_);
    if (stopping_) {
        if (stopped_) {
            std::function<void()> then = std::move(stopped_);
            then();
        }
        return;
    }
    if (polling_) {
        polling_ = false;
        issue();
        return;
    }
    if (result == -EAGAIN) {
        // A non-blocking socket or pipe with nothing to give or no room: wait for it.
        polling_ = true;
        in_flight_ = true;
        self_ = std::move(keep);
        engine_.poll_once(filling_ ? ends_.from : ends_.to, filling_ ? POLLIN : POLLOUT, this);
        return;
    }
    if (result < 0) {
        finish_chunk(true, -result);
        return;
    }
    auto n = static_cast<std::uint64_t>(result);
    if (filling_) {
        if (n == 0) {
            finish_chunk(true, 0);  // the source's end
            return;
        }
        in_pipe_ += n;
        total_in_ += n;
        issue();
        return;
    }
    if (n == 0) {
        finish_chunk(true, EPIPE);  // the sink takes nothing more
        return;
    }
    in_pipe_ -= n;
    total_out_ += n;
    chunk_moved_ += n;
    bool all = ends_.length != 0 && total_out_ == ends_.length;
    if (in_pipe_ == 0 && (all || chunk_moved_ >= chunk_)) {
        finish_chunk(all, 0);
    } else {
        issue();  // drain what is left in the pipe, or fill it again
    }
}

}  // namespace datapump::rt::detail
