// stream::sender: a file range streamed to a socket by one of the send paths, paced, with the VCR
// controls applied between sends. See sender.hpp for the states and the lifetime rules; a growing
// file is sender_follow.cpp's, the limits (send timeout, pause, stall release) sender_limits.cpp's.
#include "datapump/stream/sender.hpp"

#include "datapump/base/internal/log.hpp"

#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <string>

namespace datapump::stream {

namespace {

// sendfile() per call, like nginx's sendfile_max_chunk: big enough to amortise the call, small
// enough that one fast client does not hold its loop.
constexpr std::uint64_t max_sendfile_chunk = std::uint64_t{2} << 20;
// The splice path's pipe size: each file->pipe->socket round moves up to this much. 1 MiB is
// the default /proc/sys/fs/pipe-max-size; the pipe holds page references, not copies.
constexpr int splice_pipe_size = 1 << 20;
// Bytes one connection may send per loop turn before it yields to the others.
constexpr std::uint64_t turn_budget = std::uint64_t{4} << 20;
// How far ahead of the send position the page cache is asked to read (posix) and how many cache
// blocks the prefetcher is asked for (loans: the cache's readahead_blocks).
constexpr std::uint64_t advise_window = std::uint64_t{8} << 20;
// A page-cache body with no more than this left gets no read-ahead advice: the kernel's own
// read-ahead (128 KiB, growing as the reads go on) covers it as sendfile/splice reads it, and the
// advice would cost two cachestat(2) calls (and a cold window an FADV_WILLNEED) per request: 7 % of
// the syscalls of a small-file request, measured (docs/benchmarks.md, "Small files").
constexpr std::uint64_t no_advice_below = std::uint64_t{256} << 10;
// How soon a stream that found every cache buffer pinned asks again.
constexpr auto retry_delay = std::chrono::milliseconds(2);
// How soon a stream refused re-admission (after its stall release) asks again.
constexpr auto readmit_retry = std::chrono::milliseconds(100);

void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) {
    counter.fetch_add(by, std::memory_order_relaxed);
}

// cachestat(2) (Linux 6.5): how much of a file range is in the page cache, without reading it.
// Debian 12's kernel headers predate it, so its number and structs are spelled out here.
constexpr long sys_cachestat = 451;  // the same number on every architecture
struct cachestat_range {
    std::uint64_t off;
    std::uint64_t len;
};
struct cachestat_counts {
    std::uint64_t nr_cache;
    std::uint64_t nr_dirty;
    std::uint64_t nr_writeback;
    std::uint64_t nr_evicted;
    std::uint64_t nr_recently_evicted;
};

// Whether every page of [offset, offset + length) is in the page cache. Without cachestat
// (older kernels: ENOSYS, said once in the log) a window counts as cold, so it is advised as
// before. A probe that reads (RWF_NOWAIT) would not do: on a miss it starts read-ahead itself,
// and on a fast disk that read can finish before the probe looks, so cold reads as warm.
bool window_cached(int fd, std::uint64_t offset, std::uint64_t length) {
    static std::atomic<bool> unsupported{false};
    if (unsupported.load(std::memory_order_relaxed)) {
        return false;
    }
    cachestat_range range{.off = offset, .len = length};
    cachestat_counts counts{};
    if (::syscall(sys_cachestat, fd, &range, &counts, 0) != 0) {
        if (errno == ENOSYS && !unsupported.exchange(true, std::memory_order_relaxed)) {
            spdlog::info("the kernel has no cachestat(2): every read-ahead window is advised");
        }
        return false;
    }
    static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t pages = (offset + length + page - 1) / page - offset / page;
    return counts.nr_cache >= pages;
}

// Whether the peer has announced room for `n` bytes beyond those already queued (its receive
// window, TCP_INFO's tcpi_snd_wnd, against SIOCOUTQ's unacknowledged + unsent bytes). Bytes
// within the window reach the peer's receive buffer and are acknowledged whether or not it reads,
// so a SEND_ZC of them gets its notification (and gives its loan back) in a round trip; bytes
// beyond it would sit in the send queue, pinning the loan, for as long as the client reads
// nothing. Unknown (an error, a kernel without tcpi_snd_wnd): false, the bytes are copied.
bool peer_window_takes(int fd, std::size_t n) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
        len < offsetof(tcp_info, tcpi_snd_wnd) + sizeof info.tcpi_snd_wnd) {
        return false;
    }
    int queued = 0;
    if (::ioctl(fd, SIOCOUTQ, &queued) != 0 || queued < 0) {
        return false;
    }
    return std::uint64_t{info.tcpi_snd_wnd} >= static_cast<std::uint64_t>(queued) + n;
}

}  // namespace

void sender::op::complete(int result, std::uint32_t flags) {
    sender* s = self;
    sender_owner& owner = s->owner_;
    (s->*handler)(result, flags);
    owner.sender_settle();  // may delete the owner and this sender: nothing after it
}

void sender::slot_op::complete(int result, std::uint32_t flags) {
    sender* s = self;
    sender_owner& owner = s->owner_;
    s->on_slot(*slot, result, flags);
    owner.sender_settle();
}

sender::sender(sender_env env, int socket, sender_owner& owner, std::string_view peer)
    : env_(env), socket_(socket), owner_(owner), peer_(peer), self_ref_(std::make_shared<sender*>(this)) {
    poll_op_.self = defer_op_.self = retry_op_.self = frame_op_.self = guard_op_.self = this;
    poll_op_.handler = &sender::on_socket_ready;
    defer_op_.handler = &sender::on_deferred;
    retry_op_.handler = &sender::on_retry;
    frame_op_.handler = &sender::on_frame_sent;
    guard_op_.handler = &sender::on_guard;
    for (send_slot& slot : slots_) {
        slot.completion.self = this;
        slot.completion.slot = &slot;
    }
}

sender::~sender() { *self_ref_ = nullptr; }

result<void> sender::begin(transfer t) {
    end();
    ++generation_;
    file_ = std::move(t.file);
    pos_ = t.start;
    source_end_ = t.start + t.length;
    remaining_ = t.length;
    file_size_ = t.file_size;
    advised_until_ = t.start;
    control_ = std::move(t.controls);
    pacing_ = std::move(t.pacing);
    capacity_ = std::move(t.capacity);
    sent_ = 0;
    speed_ = 1;
    paused_ = false;
    wait_ = wait::none;
    sending_ = false;
    // The page-cache descriptor, asked only when this body may go by it: on a page-cache path, or
    // on a loan path for a file below page_cache_below (asking clears the direct provider's
    // O_DIRECT, which a file sent from the arena keeps). A provider that cannot give one keeps a
    // small file on the loan path (path_for).
    const bool may_page_cache = !sends_loans(env_.path) || t.file_size < env_.page_cache_below;
    const result<int> fd =
        may_page_cache ? file_->send_fd() : result<int>(datapump::fail(errc::unsupported, "a body sent from the arena"));
    path_ = path_for(env_.path, env_.page_cache_below, t.file_size, fd.has_value());
    if (sends_loans(path_)) {
        auto view = file_->cached();
        if (!view) {
            return std::unexpected(view.error());
        }
        view_ = std::move(*view);
    } else {
        if (!fd) {
            return std::unexpected(fd.error());
        }
        body_fd_ = *fd;
        env_.loop->fadvise(body_fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    active_ = true;
    if (watching_) {
        arm_guard(guard_due());  // a paced stream's stall release comes before the send timeout
    }
    return {};
}

void sender::start() {
    if (active_) {
        started_ = true;
        pump();
    }
}

void sender::end() {
    active_ = false;
    if (retry_timer_.armed()) {
        env_.loop->disarm(retry_timer_);
    }
    // The rt connection ends with the body: disconnecting waits for the VP (briefly) if it is
    // running this stream's tick, never for this loop; a wake-up it posted finds no stream.
    pacing_.release();
    capacity_.release();
    admission_released_ = false;
    control_.reset();
    ready_.give_back();
    resend_len_ = 0;
    if (after_frame_ != nullptr) {
        // A chunk's data never handed to the kernel (its line was in flight).
        after_frame_->loan.give_back();
        after_frame_->sent = after_frame_->length;
        after_frame_ = nullptr;
    }
    growing_ = false;
    declared_.reset();
    started_ = false;
    view_.reset();
    file_.reset();
    body_fd_ = -1;
    if (piped_ > 0) {
        // A body cut short: its bytes must not lead the next response.
        pipe_read_.reset();
        pipe_write_.reset();
        piped_ = 0;
    }
    wait_ = wait::none;
    remaining_ = 0;
}

void sender::fail(std::string_view why) {
    owner_.sender_failed(why);  // the owner ends the transfer (end())
}

// Every byte of the transfer is in the kernel.
void sender::finish() {
    active_ = false;
    owner_.sender_done();
}

std::string_view sender::source_name() const {
    if (growing_) {
        return growing_name_;
    }
    return file_ ? std::string_view(file_->path()) : std::string_view{};
}

void sender::pump() {
    if (!active_ || wait_ != wait::none) {
        return;
    }
    // Whatever the stream waited for (the socket, credit, a buffer, a read, the writer), the wait
    // is over: the send timeout counts from here.
    progress();
    owner_.sender_progress(0);
    if (!apply_controls()) {
        return;
    }
    if (!owner_.sender_admitted()) {
        wait_ = wait::admission;
        env_.loop->arm(retry_timer_, io::clock::now() + readmit_retry);
        return;
    }
    if (growing_) {
        pump_growing();
    } else if (sends_loans(path_)) {
        pump_loans();
    } else {
        pump_page_cache();
    }
}

void sender::kick() {
    if (!active_) {
        return;
    }
    if (wait_ == wait::retry) {
        env_.loop->disarm(retry_timer_);
        wait_ = wait::none;
        pump();
    } else if (wait_ == wait::paused || wait_ == wait::credit) {
        wait_ = wait::none;
        pump();  // out of credit still: back to waiting for it (the stream's mark stays set)
    }
    // Waiting on the socket, a loan or a send: that completion runs pump(), which reads the controls.
}

void sender::on_credit() {
    // A wake-up may be stale (the stream got credit meanwhile and waits on something else now):
    // only a stream waiting for credit pumps.
    if (active_ && wait_ == wait::credit) {
        wait_ = wait::none;
        pump();
    }
}

void sender::resume() {
    if (active_ && wait_ == wait::admission) {
        env_.loop->disarm(retry_timer_);
        wait_ = wait::none;
        pump();
    }
}

bool sender::waiting_on_client() const {
    if (!active_) {
        return false;
    }
    // Page-cache paths: waiting for room (poll). Loan paths: a send in the kernel, or every slot
    // waiting for the notification that the peer acknowledged its bytes. A stream the owner could
    // not admit again is bounded by the send timeout too.
    return wait_ == wait::socket || wait_ == wait::send || wait_ == wait::admission || sending_;
}

bool sender::apply_controls() {
    if (!control_) {
        return true;
    }
    auto set_pattern = [this](cache::play_mode mode) {
        if (auto ok = file_->set_access_pattern({.mode = mode, .speed = speed_}, pos_); !ok) {
            owner_.sender_debug(describe(ok.error(), file_->path()));
        }
    };
    const std::uint64_t bs = env_.cache->block_size();
    // Acquire pairs with the control caller's release store: the request is seen whole.
    const bool want_pause = control_->pause_requested.load(std::memory_order_acquire);
    if (want_pause && !paused_) {
        paused_ = true;
        paused_since_ = io::clock::now();
        if (watching_) {
            // The pause limit may come before the guard's next look.
            const io::clock::time_point due = paused_since_ + limits_.max_pause;
            if (!guard_timer_.armed() || due < guard_timer_.deadline()) {
                arm_guard(due);
            }
        }
        owner_.sender_paused();
        set_pattern(cache::play_mode::pause);
        if (view_ && advised_until_ > pos_) {
            // Pause releases the read-ahead: the prefetcher may let those blocks go.
            const std::uint64_t first = pos_ / bs;
            const auto count = static_cast<std::uint32_t>((advised_until_ - first * bs) / bs);
            env_.cache->post_done_with(*view_, first, count);
        }
        advised_until_ = pos_;
    } else if (!want_pause && paused_) {
        paused_ = false;
        progress();
        if (watching_) {
            arm_guard(guard_due());
        }
        owner_.sender_resumed();
        set_pattern(cache::play_mode::play);
    }
    const std::int64_t seek = control_->seek_to.exchange(-1, std::memory_order_acq_rel);
    if (seek >= 0) {
        pos_ = static_cast<std::uint64_t>(seek);
        source_end_ = file_size_;  // after a seek the body is filled from the new place onwards
        advised_until_ = pos_;
        ready_.give_back();
        control_->position.store(pos_, std::memory_order_relaxed);
        set_pattern(paused_ ? cache::play_mode::pause : cache::play_mode::play);
    }
    const std::uint32_t speed = control_->speed.load(std::memory_order_acquire);
    if (speed != speed_) {
        speed_ = speed;
        source_end_ = file_size_;
        set_pattern(paused_ ? cache::play_mode::pause : cache::play_mode::play);
    }
    if (paused_) {
        wait_ = wait::paused;
        control_->state.store(run_state::paused, std::memory_order_relaxed);
        return false;
    }
    control_->state.store(run_state::playing, std::memory_order_relaxed);
    return true;
}

void sender::advise_ahead() {
    if (advised_until_ >= std::min(file_size_, pos_ + advise_window / 2)) {
        return;
    }
    if (view_) {
        const std::uint64_t bs = env_.cache->block_size();
        const std::uint64_t first = std::max(advised_until_, pos_) / bs;
        const std::uint64_t ahead = env_.cache->config().readahead_blocks;
        const std::uint64_t last = std::min((pos_ / bs) + ahead, (file_size_ + bs - 1) / bs);
        if (last > first) {
            env_.cache->post_will_need(*view_, first, static_cast<std::uint32_t>(last - first));
        }
        advised_until_ = last * bs;
        return;
    }
    const std::uint64_t from = std::max(advised_until_, pos_);
    if (advised_until_ <= pos_ && source_end_ - pos_ <= no_advice_below) {
        advised_until_ = source_end_;  // a short body: the kernel's read-ahead is enough
        return;
    }
    const std::uint64_t length = std::min(advise_window, file_size_ - from);
    // A window already in the page cache needs no advice: WILLNEED would walk its pages on an
    // io-wq worker for nothing (7 % of the CPU of a warm wrk run, measured).
    // The window's first and last pages stand for it (a page each: cachestat walks what it is
    // given, and the kernel's read-ahead fills a window front to back).
    if (length > 0 && !(window_cached(body_fd_, from, 1) && window_cached(body_fd_, from + length - 1, 1))) {
        env_.loop->fadvise(body_fd_, from, static_cast<std::uint32_t>(length), POSIX_FADV_WILLNEED);
        bump(env_.counters->readahead_advice);
    }
    advised_until_ = from + length;
}

// Moves the source position past `n` bytes just handed to the kernel; at speed K, past each
// block's end it skips K-1 blocks (fast-forward reads sparsely).
void sender::sent_bytes(std::uint64_t n) {
    pos_ += n;
    remaining_ -= n;
    const std::uint64_t bs = env_.cache->block_size();
    if (speed_ > 1 && pos_ % bs == 0) {
        pos_ += std::uint64_t{speed_ - 1} * bs;
    }
    if (control_) {
        control_->position.store(pos_, std::memory_order_relaxed);
    }
}

// Counts `n` body bytes the kernel took: the stream's, the server's, the path's; the owner's.
void sender::account_sent(std::uint64_t n, std::atomic<std::uint64_t>& path_counter) {
    sent_ += n;
    body_bytes_ += n;
    progress();
    bump(*env_.bytes_sent, n);
    bump(path_counter, n);
    if (control_) {
        control_->bytes_sent.store(sent_, std::memory_order_relaxed);
    }
    owner_.sender_progress(n);
}

// The bytes of `want` the stream's credit lets go now (all of them when unpaced); 0 when it has
// none: the stream then waits for the rt tick that brings the next piece (on_credit).
std::uint64_t sender::paced_allowance(std::uint64_t want) {
    const std::uint64_t allowed = pacing_.allowance(want);
    if (allowed == 0) {
        wait_ = wait::credit;
        if (control_) {
            control_->state.store(run_state::waiting, std::memory_order_relaxed);
        }
    }
    return allowed;
}

// ---- The page-cache paths ----

// sendfile: file -> socket. splice: file -> pipe -> socket, the pipe taking references to the
// page-cache pages and the socket taking them from the pipe; no byte is copied either way. Both
// are non-blocking calls on the loop thread. For splice, bytes moved into the pipe count as sent
// by the stream (pacing, position); they count as sent to the client when the socket takes them.
void sender::pump_page_cache() {
    const bool splicing = path_ == send_path::splice;
    if (splicing && !open_pipe()) {
        return;
    }
    std::atomic<std::uint64_t>& counter = splicing ? env_.counters->splice_bytes : env_.counters->sendfile_bytes;
    std::uint64_t budget = turn_budget;
    while (remaining_ > 0 || piped_ > 0) {
        ssize_t n = 0;
        std::uint64_t asked = 0;
        if (!splicing) {
            asked = next_piece(max_sendfile_chunk);
            if (asked == 0) {
                return;
            }
            auto offset = static_cast<off_t>(pos_);
            n = ::sendfile(socket_, body_fd_, &offset, asked);
        } else {
            if (piped_ == 0) {
                const std::uint64_t allowed = next_piece(splice_pipe_size);
                if (allowed == 0) {
                    return;
                }
                auto offset = static_cast<loff_t>(pos_);
                const ssize_t in =
                    ::splice(body_fd_, &offset, pipe_write_.get(), nullptr, allowed, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (in < 0) {
                    if (errno == EINTR) {
                        continue;
                    }
                    fail(std::string("splice from the file: ") + errno_text(errno));
                    return;
                }
                if (!took_from_file(in)) {
                    return;
                }
                piped_ = static_cast<std::uint64_t>(in);
            }
            asked = piped_;
            const unsigned more = remaining_ > 0 ? SPLICE_F_MORE : 0;
            n = ::splice(pipe_read_.get(), nullptr, socket_, nullptr, piped_,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK | more);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                break;  // the socket is full
            }
            fail(errno_text(errno));
            return;
        }
        if (splicing) {
            piped_ -= static_cast<std::uint64_t>(n);
        } else if (!took_from_file(n)) {
            return;
        }
        const auto sent = static_cast<std::uint64_t>(n);
        account_sent(sent, counter);
        if (sent < asked) {
            break;  // the socket took part of it: it is full
        }
        if (turn_spent(budget, sent)) {
            return;
        }
    }
    if (remaining_ > 0 || piped_ > 0) {
        wait_for_room();
        return;
    }
    finish();
}

// The next piece of a page-cache body: at most `chunk` bytes, as many as the credit lets go now
// (then read-ahead is advised), or 0 when the body stops here (failed, or waiting for credit).
std::uint64_t sender::next_piece(std::uint64_t chunk) {
    if (pos_ >= source_end_) {
        fail("the source ended before the body did (seek or speed change)");
        return 0;
    }
    std::uint64_t want = std::min({remaining_, source_end_ - pos_, chunk});
    const std::uint64_t bs = env_.cache->block_size();
    if (speed_ > 1) {
        want = std::min<std::uint64_t>(want, bs - pos_ % bs);
    }
    const std::uint64_t allowed = paced_allowance(want);
    if (allowed != 0) {
        advise_ahead();
    }
    return allowed;
}

// The kernel took `n` (> 0 expected) bytes of the file from the send position: the credit and
// the position move past them. False, after failing, when it took none: the file shrank.
bool sender::took_from_file(ssize_t n) {
    if (n <= 0) {
        fail("the file shrank while it was sent");
        return false;
    }
    const auto taken = static_cast<std::uint64_t>(n);
    pacing_.consume(taken);
    sent_bytes(taken);
    return true;
}

// Takes `sent` bytes from this turn's budget; when it is spent, yields the loop to the other
// connections (true: the caller returns, on_deferred pumps again).
bool sender::turn_spent(std::uint64_t& budget, std::uint64_t sent) {
    budget -= std::min(budget, sent);
    if (budget == 0 && remaining_ > 0) {
        ++outstanding_;
        env_.loop->defer(&defer_op_);
        return true;
    }
    return false;
}

void sender::wait_for_room() {
    wait_ = wait::socket;
    ++outstanding_;
    env_.loop->poll_once(socket_, POLLOUT, &poll_op_);
}

// The pipe the splice path moves pages through. Its size is asked for, not required: past the
// per-user pipe quota (pipe-user-pages-soft) the kernel refuses and the pipe keeps its default.
bool sender::open_pipe() {
    if (pipe_read_) {
        return true;
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        fail(std::string("pipe2: ") + errno_text(errno));
        return false;
    }
    pipe_read_ = unique_fd(fds[0]);
    pipe_write_ = unique_fd(fds[1]);
    if (::fcntl(fds[1], F_SETPIPE_SZ, splice_pipe_size) < 0) {
        spdlog::debug("{}: F_SETPIPE_SZ {}: {} (the pipe keeps its default size)", peer_, splice_pipe_size,
                      errno_text(errno));
    }
    return true;
}

void sender::on_socket_ready(int result, std::uint32_t /*flags*/) {
    --outstanding_;
    if (!active_ || wait_ != wait::socket) {
        return;
    }
    wait_ = wait::none;
    if (result < 0 || (static_cast<unsigned>(result) & (POLLERR | POLLHUP)) != 0) {
        fail(result < 0 ? errno_text(-result) : "the client went away");
        return;
    }
    pump();
}

void sender::on_deferred(int /*result*/, std::uint32_t /*flags*/) {
    --outstanding_;
    if (active_ && wait_ == wait::none) {
        pump();
    }
}

// ---- The loan paths ----

// Where the next loan must start: the bytes a full socket left unsent, else the send position.
std::uint64_t sender::loan_pos() const { return resend_len_ > 0 ? resend_pos_ : pos_; }

bool sender::take_loan() {
    const std::uint64_t bs = env_.cache->block_size();
    const std::uint64_t at = loan_pos();
    auto hit = file_->lock_buffer(*view_, at / bs);
    if (hit && hit->covers(at)) {
        ready_ = std::move(*hit);
        return true;
    }
    if (!hit && hit.error().code == errc::no_buffers) {
        retry_later();
        return false;
    }
    if (!hit && hit.error().code != errc::would_block) {
        fail(describe(hit.error(), source_name()));
        return false;
    }
    // Not cached (or busy): a fallback worker reads just this block and posts it back to the loop.
    wait_ = wait::loan;
    const std::uint64_t end = resend_len_ > 0 ? resend_pos_ + resend_len_ : source_end_;
    loan_async(at, std::min(bs - at % bs, end - at));
    return false;
}

// A fallback worker loans [offset, offset + length) of view_; on_loans gets them on the loop if
// the sender still exists and is still on the same transfer, then the owner settles.
void sender::loan_async(std::uint64_t offset, std::uint64_t length) {
    io::event_loop* loop = env_.loop;
    std::weak_ptr<sender*> ref = self_ref_;
    const std::uint64_t generation = generation_;
    env_.cache->loan_read_async(view_, offset, length,
                                [loop, ref, generation](result<std::vector<cache::read_loan>> loans) {
        auto box = std::make_shared<result<std::vector<cache::read_loan>>>(std::move(loans));
        loop->post([ref, generation, box] {
            const auto alive = ref.lock();
            if (!alive || *alive == nullptr) {
                return;  // the connection is gone; the loans go back as `box` is dropped
            }
            sender* s = *alive;
            if (s->generation_ != generation) {
                return;
            }
            sender_owner& owner = s->owner_;
            s->on_loans(std::move(*box));
            owner.sender_settle();
        });
    });
}

// Every cache buffer is pinned (by sends in flight, other streams, the prefetcher): this stream
// waits a moment and asks again instead of failing; the buffers come back as sends complete.
void sender::retry_later() {
    wait_ = wait::retry;
    env_.loop->arm(retry_timer_, io::clock::now() + retry_delay);
}

void sender::on_retry(int /*result*/, std::uint32_t /*flags*/) {
    if (active_ && (wait_ == wait::retry || wait_ == wait::admission)) {
        wait_ = wait::none;
        pump();
    }
}

void sender::on_loans(result<std::vector<cache::read_loan>> loans) {
    if (!active_ || wait_ != wait::loan) {
        return;  // the transfer ended meanwhile; the loans go back as `loans` is dropped
    }
    wait_ = wait::none;
    if (!loans && loans.error().code == errc::no_buffers) {
        retry_later();
        return;
    }
    if (!loans) {
        fail(describe(loans.error(), source_name()));
        return;
    }
    if (loans->empty() || !loans->front().covers(loan_pos())) {
        fail(growing_ ? "the upload's bytes could not be read back" : "the file ended before the range did");
        return;
    }
    ready_ = std::move(loans->front());
    pump();
}

void sender::pump_loans() {
    const std::uint64_t bs = env_.cache->block_size();
    while ((remaining_ > 0 || resend_len_ > 0) && !sending_) {
        if (resend_len_ > 0) {
            // What a full socket left unsent goes first, from a fresh loan (a cache hit, usually).
            if (!ready_.covers(resend_pos_)) {
                ready_.give_back();
                if (!take_loan()) {
                    return;
                }
            }
            if (resend_pos_ + resend_len_ > ready_.file_offset() + ready_.size()) {
                fail("the file shrank while it was sent");
                return;
            }
            const auto slot = std::find_if(slots_.begin(), slots_.end(), [](const send_slot& s) { return s.free(); });
            if (slot == slots_.end()) {
                wait_ = wait::send;
                return;
            }
            slot->offset = resend_pos_ - ready_.file_offset();
            slot->length = resend_len_;
            slot->sent = 0;
            slot->loan = std::move(ready_);
            resend_len_ = 0;
            submit_slot(*slot);
            continue;
        }
        if (pos_ >= source_end_) {
            fail("the source ended before the body did (seek or speed change)");
            return;
        }
        if (!ready_.covers(pos_)) {
            ready_.give_back();
            if (!take_loan()) {
                return;
            }
        }
        const std::uint64_t in_loan = pos_ - ready_.file_offset();
        std::uint64_t want = std::min({ready_.size() - in_loan, remaining_, source_end_ - pos_});
        if (speed_ > 1) {
            want = std::min(want, bs - pos_ % bs);
        }
        const std::uint64_t allowed = paced_allowance(want);
        if (allowed == 0) {
            return;
        }
        const auto slot = std::find_if(slots_.begin(), slots_.end(), [](const send_slot& s) { return s.free(); });
        if (slot == slots_.end()) {
            wait_ = wait::send;  // every slot waits for its notification; the next one pumps
            return;
        }
        advise_ahead();
        const std::uint64_t block = ready_.file_offset() / bs;
        const bool rest_left = in_loan + allowed < ready_.size();
        slot->offset = in_loan;
        slot->length = allowed;
        slot->sent = 0;
        slot->loan = std::move(ready_);
        if (rest_left) {
            // The slot keeps its pin until the kernel is done; the rest of the block needs its own.
            if (auto again = file_->lock_buffer(*view_, block); again) {
                ready_ = std::move(*again);
            }
        }
        pacing_.consume(allowed);
        sent_bytes(allowed);
        submit_slot(*slot);
    }
    if (remaining_ == 0 && !sending_ && resend_len_ == 0) {
        finish();
    }
}

void sender::submit_slot(send_slot& slot) {
    const auto bytes = slot.loan.bytes().subspan(slot.offset + slot.sent, slot.length - slot.sent);
    ++slot.sqes;
    ++outstanding_;
    sending_ = true;
    // MSG_DONTWAIT: a full socket answers at once (a short count, or EAGAIN) instead of the send
    // waiting in the kernel with its loan pinned; stash_unsent then lets the loan go.
    // SEND_ZC only for bytes the peer's window takes now: what the kernel holds zero-copy then
    // comes back within a round trip, never stuck behind a client that reads nothing.
    // And not once the kernel said it copies this socket's zero-copy sends anyway, when the
    // environment says a plain send is then cheaper (sender_env::plain_when_copied).
    slot.zero_copy = path_ == send_path::send_zc && !growing_ && !zc_copies_ &&
                     peer_window_takes(socket_, bytes.size());
    if (slot.zero_copy) {
        bump(env_.counters->send_zc_sends);
        env_.loop->send_zc(socket_, bytes, MSG_NOSIGNAL | MSG_DONTWAIT, slot.loan.buffer_index(), &slot.completion);
    } else {
        env_.loop->send(socket_, bytes, MSG_NOSIGNAL | MSG_DONTWAIT, &slot.completion);
    }
}

void sender::on_slot(send_slot& slot, int result, std::uint32_t flags) {
    if ((flags & IORING_CQE_F_NOTIF) != 0) {
        // The kernel is done with the bytes: the pin may go.
        --slot.sqes;
        --outstanding_;
        if ((static_cast<std::uint32_t>(result) & io::event_loop::zc_copied_bit) != 0) {
            bump(env_.counters->send_zc_copied);
            zc_copies_ = env_.plain_when_copied;
        }
        if (slot.sqes == 0 && (slot.sent >= slot.length || !active_)) {
            slot.loan.give_back();
        }
        if (active_ && wait_ == wait::send) {
            wait_ = wait::none;
            pump();
        }
        return;
    }
    const bool notification_follows = (flags & IORING_CQE_F_MORE) != 0;
    if (!notification_follows) {
        --slot.sqes;
        --outstanding_;
    }
    sending_ = false;
    if (result == -EAGAIN && active_) {
        stash_unsent(slot);  // the socket is full
        return;
    }
    if (result < 0 || !active_) {
        slot.sent = slot.length;
        if (slot.sqes == 0) {
            slot.loan.give_back();
        }
        if (result < 0 && active_) {
            fail(errno_text(-result));
        }
        return;
    }
    const auto n = static_cast<std::uint64_t>(result);
    slot.sent += n;
    account_sent(n, path_ == send_path::send_zc && !growing_ ? env_.counters->send_zc_bytes
                                                                 : env_.counters->send_bytes);
    if (slot.sent < slot.length) {
        stash_unsent(slot);  // a short send: the socket is full; the rest goes next, in order
        return;
    }
    if (slot.sqes == 0) {
        slot.loan.give_back();
    }
    pump();
}

// The socket took only part of a slot (or nothing): the rest becomes the resend range and the
// slot lets its loan go (a SEND_ZC slot when its notification comes: the kernel holds what it
// took until then), as does ready_; the stream waits for room, then re-loans the same range.
void sender::stash_unsent(send_slot& slot) {
    resend_pos_ = slot.loan.file_offset() + slot.offset + slot.sent;
    resend_len_ = slot.length - slot.sent;
    slot.sent = slot.length;
    if (slot.sqes == 0) {
        slot.loan.give_back();
    }
    ready_.give_back();
    wait_for_room();
}

}  // namespace datapump::stream
