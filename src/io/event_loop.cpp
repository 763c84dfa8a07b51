#include "datapump/io/event_loop.hpp"

#include "datapump/base/check.hpp"
#include "datapump/base/internal/log.hpp"

#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace datapump::io {

namespace {

// IORING_SEND_ZC_REPORT_USAGE is newer than Debian 12's liburing 2.3 headers; the value is the
// kernel's ABI (include/uapi/linux/io_uring.h, Linux 6.2).
constexpr std::uint16_t send_zc_report_usage = 1U << 3;

std::uint64_t tag(completion* c) { return reinterpret_cast<std::uint64_t>(c); }

// The loop thread is the only writer of its stats: a relaxed load and store, no locked
// instruction; readers take a monitoring snapshot and accept a value one update old.
void add_as_only_writer(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace

struct event_loop::impl {
    io_uring ring{};
    unique_fd doorbell;
    std::uint64_t doorbell_value = 0;
    bool ring_ready = false;

    // The doorbell's pending read: re-armed each time it fires.
    struct doorbell_completion final : completion {
        event_loop* loop = nullptr;
        void complete(int /*result*/, std::uint32_t /*flags*/) override { loop->impl_->arm_doorbell(loop); }
    } doorbell_op;

    void arm_doorbell(event_loop* loop) {
        io_uring_sqe* sqe = loop->next_sqe();
        io_uring_prep_read(sqe, doorbell.get(), &doorbell_value, sizeof doorbell_value, 0);
        io_uring_sqe_set_data64(sqe, tag(&doorbell_op));
    }

    ~impl() {
        if (ring_ready) {
            io_uring_queue_exit(&ring);
        }
    }
};

timer::~timer() {
    if (loop_ != nullptr && armed()) {
        loop_->disarm(*this);
    }
}

result<std::unique_ptr<event_loop>> event_loop::create(const loop_config& config) {
    auto state = std::make_unique<impl>();
    io_uring_params params{};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.cq_entries = config.entries * 2;
    int rc = io_uring_queue_init_params(config.entries, &state->ring, &params);
    if (rc == -EINVAL) {
        // Kernels before 6.1 lack DEFER_TASKRUN / SINGLE_ISSUER: take the plain ring.
        params = io_uring_params{};
        params.flags = IORING_SETUP_CQSIZE;
        params.cq_entries = config.entries * 2;
        rc = io_uring_queue_init_params(config.entries, &state->ring, &params);
    }
    if (rc < 0) {
        if (rc == -ENOMEM) {
            return fail(errc::no_buffers, "io_uring_queue_init: not enough locked memory", -rc);
        }
        return fail(errc::unsupported, "io_uring_queue_init failed", -rc);
    }
    state->ring_ready = true;
    const int efd = ::eventfd(0, EFD_CLOEXEC);
    if (efd < 0) {
        return fail_errno("eventfd");
    }
    state->doorbell = unique_fd(efd);

    std::unique_ptr<event_loop> loop(new event_loop(std::move(state), config.index));
    loop->impl_->doorbell_op.loop = loop.get();
    if (config.arena != nullptr) {
        const auto& a = *config.arena;
        std::vector<iovec> iov(a.count());
        for (std::uint32_t i = 0; i < a.count(); ++i) {
            auto bytes = a.data(i);
            iov[i] = iovec{bytes.data(), bytes.size()};
        }
        const int reg = io_uring_register_buffers(&loop->impl_->ring, iov.data(), static_cast<unsigned>(iov.size()));
        if (reg == 0) {
            loop->fixed_buffers_ = true;
        } else {
            loop->fixed_error_ = std::string("io_uring_register_buffers: ") + errno_text(-reg);
        }
    }
    loop->impl_->arm_doorbell(loop.get());
    loop->heap_.reserve(1024);
    loop->deferred_.reserve(256);
    loop->running_.reserve(256);
    return loop;
}

event_loop::event_loop(std::unique_ptr<impl> state, unsigned index) : impl_(std::move(state)), index_(index) {}

event_loop::~event_loop() {
    for (timer* t : heap_) {
        t->heap_index_ = timer::not_armed;
    }
}

io_uring_sqe* event_loop::next_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&impl_->ring);
    while (sqe == nullptr) {
        // The SQ is full: hand it to the kernel and take a fresh slot.
        io_uring_submit(&impl_->ring);
        sqe = io_uring_get_sqe(&impl_->ring);
    }
    return sqe;
}

void event_loop::submit() { io_uring_submit(&impl_->ring); }

void event_loop::accept_multishot(int listen_fd, completion* target) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::recv(int fd, std::span<std::byte> buffer, completion* target, int msg_flags) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_recv(sqe, fd, buffer.data(), buffer.size(), msg_flags);
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::send(int fd, std::span<const std::byte> bytes, int msg_flags, completion* target) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_send(sqe, fd, bytes.data(), bytes.size(), msg_flags);
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::send_zc(int fd, std::span<const std::byte> bytes, int msg_flags, std::uint32_t fixed_index,
                         completion* target) {
    io_uring_sqe* sqe = next_sqe();
    if (fixed_index != ~0U && fixed_buffers_) {
        io_uring_prep_send_zc_fixed(sqe, fd, bytes.data(), bytes.size(), msg_flags, 0, fixed_index);
    } else {
        io_uring_prep_send_zc(sqe, fd, bytes.data(), bytes.size(), msg_flags, 0);
    }
    sqe->ioprio |= send_zc_report_usage;
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::read(int fd, std::uint64_t offset, std::span<std::byte> buffer, std::uint32_t fixed_index,
                      completion* target) {
    io_uring_sqe* sqe = next_sqe();
    if (fixed_index != ~0U && fixed_buffers_) {
        io_uring_prep_read_fixed(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset,
                                 static_cast<int>(fixed_index));
    } else {
        io_uring_prep_read(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
    }
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::write(int fd, std::uint64_t offset, std::span<const std::byte> bytes, std::uint32_t fixed_index,
                       completion* target) {
    io_uring_sqe* sqe = next_sqe();
    if (fixed_index != ~0U && fixed_buffers_) {
        io_uring_prep_write_fixed(sqe, fd, bytes.data(), static_cast<unsigned>(bytes.size()), offset,
                                  static_cast<int>(fixed_index));
    } else {
        io_uring_prep_write(sqe, fd, bytes.data(), static_cast<unsigned>(bytes.size()), offset);
    }
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::read_stream(int fd, std::span<std::byte> buffer, completion* target) {
    io_uring_sqe* sqe = next_sqe();
    // Offset -1: io_uring's "no position" for streams (a pipe ignores it; a seekable file would
    // read at its file position).
    io_uring_prep_read(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), ~std::uint64_t{0});
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::poll_once(int fd, unsigned events, completion* target) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_poll_add(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::splice(int fd_in, std::int64_t off_in, int fd_out, std::int64_t off_out, unsigned length,
                        unsigned splice_flags, completion* target) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, length, splice_flags);
    io_uring_sqe_set_data64(sqe, tag(target));
}

void event_loop::fadvise(int fd, std::uint64_t offset, std::uint32_t length, int advice) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_fadvise(sqe, fd, offset, static_cast<off_t>(length), advice);
    io_uring_sqe_set_data64(sqe, 0);
}

void event_loop::cancel(completion* target) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_cancel64(sqe, tag(target), IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, 0);
}

void event_loop::post(std::function<void()> task) {
    bool was_empty = false;
    {
        const std::lock_guard lock(tasks_mutex_);
        was_empty = tasks_.empty();
        tasks_.push_back(std::move(task));
    }
    if (was_empty) {
        // Ring once per batch: the loop drains the whole queue when it wakes.
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(impl_->doorbell.get(), &one, sizeof one);
    }
}

void event_loop::stop() {
    stop_.store(true, std::memory_order_release);
    post([] {});
}

void event_loop::defer(completion* target) { deferred_.push_back(target); }

void event_loop::arm(timer& t, clock::time_point deadline) {
    if (t.armed()) {
        disarm(t);
    }
    t.loop_ = this;
    t.deadline_ = deadline;
    t.heap_index_ = heap_.size();
    heap_.push_back(&t);
    heap_up(t.heap_index_);
}

void event_loop::disarm(timer& t) {
    if (!t.armed()) {
        return;
    }
    DP_CHECK(t.loop_ == this && t.heap_index_ < heap_.size() && heap_[t.heap_index_] == &t);
    heap_remove(t.heap_index_);
}

void event_loop::heap_up(std::size_t i) {
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (heap_[parent]->deadline_ <= heap_[i]->deadline_) {
            break;
        }
        std::swap(heap_[parent], heap_[i]);
        heap_[parent]->heap_index_ = parent;
        heap_[i]->heap_index_ = i;
        i = parent;
    }
}

void event_loop::heap_down(std::size_t i) {
    const std::size_t n = heap_.size();
    while (true) {
        const std::size_t left = 2 * i + 1;
        const std::size_t right = left + 1;
        std::size_t least = i;
        if (left < n && heap_[left]->deadline_ < heap_[least]->deadline_) {
            least = left;
        }
        if (right < n && heap_[right]->deadline_ < heap_[least]->deadline_) {
            least = right;
        }
        if (least == i) {
            return;
        }
        std::swap(heap_[least], heap_[i]);
        heap_[least]->heap_index_ = least;
        heap_[i]->heap_index_ = i;
        i = least;
    }
}

void event_loop::heap_remove(std::size_t i) {
    timer* gone = heap_[i];
    const std::size_t last = heap_.size() - 1;
    if (i != last) {
        heap_[i] = heap_[last];
        heap_[i]->heap_index_ = i;
    }
    heap_.pop_back();
    if (i < heap_.size()) {
        heap_up(i);
        heap_down(heap_[i]->heap_index_);
    }
    gone->heap_index_ = timer::not_armed;
}

void event_loop::fire_timers(clock::time_point now) {
    while (!heap_.empty() && heap_.front()->deadline_ <= now) {
        timer* t = heap_.front();
        heap_remove(0);
        t->target_->complete(0, 0);
    }
}

void event_loop::run_tasks() {
    {
        const std::lock_guard lock(tasks_mutex_);
        running_tasks_.swap(tasks_);
    }
    for (auto& task : running_tasks_) {
        task();
    }
    running_tasks_.clear();
}

void event_loop::run() {
    io_uring* ring = &impl_->ring;
    while (!stop_.load(std::memory_order_acquire)) {
        __kernel_timespec ts{};
        __kernel_timespec* wait_for = nullptr;
        unsigned want = 1;
        if (!deferred_.empty()) {
            want = 0;  // work is waiting in user space: only submit and reap what is there
        } else if (!heap_.empty()) {
            const auto left = heap_.front()->deadline_ - clock::now();
            const auto ns = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
            ts.tv_sec = ns / 1'000'000'000;
            ts.tv_nsec = ns % 1'000'000'000;
            wait_for = &ts;
        }
        io_uring_cqe* cqe = nullptr;
        int rc = 0;
        if (want == 0) {
            rc = io_uring_submit_and_get_events(ring);
        } else {
            rc = io_uring_submit_and_wait_timeout(ring, &cqe, want, wait_for, nullptr);
        }
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
            spdlog::error("loop {}: io_uring_enter failed: {}", index_, errno_text(-rc));
        }
        const auto started = clock::now();
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            ++seen;
            const std::uint64_t data = io_uring_cqe_get_data64(cqe);
            if (data != 0) {
                // user_data carries the completion's address: it round-trips through the kernel.
                auto* target = reinterpret_cast<completion*>(data);  // NOLINT(performance-no-int-to-ptr)
                target->complete(cqe->res, cqe->flags);
            }
        }
        io_uring_cq_advance(ring, seen);
        fire_timers(started);
        if (!deferred_.empty()) {
            running_.swap(deferred_);
            for (completion* c : running_) {
                c->complete(0, 0);
            }
            running_.clear();
        }
        run_tasks();
        const auto busy = std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - started);
        add_as_only_writer(stats_.busy_ns, static_cast<std::uint64_t>(busy.count()));
        if (seen > 0) {
            add_as_only_writer(stats_.wakeups, 1);
        }
    }
    run_tasks();
}

}  // namespace datapump::io
