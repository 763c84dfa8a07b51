#include "datapump/io/ring.hpp"

#include "datapump/base/check.hpp"
#include "datapump/base/internal/log.hpp"

#include <liburing.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <limits>

namespace datapump::io {

namespace {
// IORING_MAX_REG_BUFFERS in the kernel: registering more fails with EINVAL.
constexpr std::uint32_t max_fixed_buffers = 16384;
}  // namespace

struct ring::impl {
    io_uring uring{};
};

ring::ring(std::unique_ptr<impl> state, unsigned entries) : impl_(std::move(state)), entries_(entries) {}

ring::~ring() { io_uring_queue_exit(&impl_->uring); }

result<std::unique_ptr<ring>> ring::create(unsigned entries) {
    if (entries == 0) {
        return fail(errc::invalid_argument, "io ring: entries must be at least 1");
    }
    auto state = std::make_unique<impl>();
    const int rc = io_uring_queue_init(entries, &state->uring, 0);
    if (rc < 0) {
        if (rc == -ENOMEM) {
            return fail(errc::no_buffers, "io ring: io_uring_queue_init", -rc);
        }
        return fail(errc::unsupported, "io ring: io_uring_queue_init", -rc);
    }
    const unsigned real_entries = state->uring.sq.ring_entries;
    return std::unique_ptr<ring>(new ring(std::move(state), real_entries));
}

result<void> ring::register_buffers(const buffer::arena& a) {
    if (registered_ != nullptr) {
        return fail(errc::busy, "io ring: fixed buffers already registered");
    }
    if (!features().read_fixed) {
        return fail(errc::unsupported, "io ring: kernel lacks IORING_OP_READ_FIXED");
    }
    if (a.count() > max_fixed_buffers) {
        return fail(errc::unsupported, "io ring: arena has more than 16384 buffers, the io_uring limit", EINVAL);
    }
    std::vector<iovec> iov(a.count());
    for (std::uint32_t i = 0; i < a.count(); ++i) {
        const auto span = a.data(i);
        iov[i] = iovec{span.data(), span.size()};
    }
    const int rc = io_uring_register_buffers(&impl_->uring, iov.data(), a.count());
    if (rc < 0) {
        if (rc == -ENOMEM || rc == -ENOBUFS) {
            return fail(errc::no_buffers, "io ring: io_uring_register_buffers (RLIMIT_MEMLOCK?)", -rc);
        }
        return fail(errc::unsupported, "io ring: io_uring_register_buffers", -rc);
    }
    registered_ = &a;
    return {};
}

bool ring::fits_fixed(const read_op& op) const {
    if (registered_ == nullptr || op.fixed_index >= registered_->count()) {
        return false;
    }
    const auto buf = registered_->data(op.fixed_index);
    return op.dst.data() >= buf.data() && op.dst.data() + op.dst.size() <= buf.data() + buf.size();
}

std::vector<result<std::uint32_t>> ring::read_batch(std::span<const read_op> ops, unsigned depth) {
    std::vector<result<std::uint32_t>> out(ops.size(), std::unexpected(error{errc::io_error, 0, "io ring: read not run"}));
    const std::size_t limit = std::clamp<std::size_t>(depth, 1, entries_);
    io_uring* u = &impl_->uring;
    std::size_t next = 0;      // next op to submit
    std::size_t in_flight = 0;
    while (next < ops.size() || in_flight > 0) {
        // Fill the SQ up to the depth limit. Ops that can never run are answered at once.
        while (next < ops.size() && in_flight < limit) {
            const read_op& op = ops[next];
            const bool fixed = op.fixed_index != no_fixed_buffer;
            if (fixed && !fits_fixed(op)) {
                out[next] = fail(errc::invalid_argument, "io ring: fixed read outside its registered buffer");
                ++next;
                continue;
            }
            if (op.dst.size() > std::numeric_limits<std::uint32_t>::max()) {
                out[next] = fail(errc::invalid_argument, "io ring: read larger than 4 GiB");
                ++next;
                continue;
            }
            io_uring_sqe* sqe = io_uring_get_sqe(u);
            if (sqe == nullptr) {
                break;  // SQ full: submit what we have and reap first
            }
            const auto len = static_cast<unsigned>(op.dst.size());
            if (fixed) {
                io_uring_prep_read_fixed(sqe, op.fd, op.dst.data(), len, op.offset, static_cast<int>(op.fixed_index));
            } else {
                io_uring_prep_read(sqe, op.fd, op.dst.data(), len, op.offset);
            }
            io_uring_sqe_set_data64(sqe, next);
            ++next;
            ++in_flight;
        }
        if (in_flight == 0) {
            continue;
        }
        // Submits what the loop queued and sleeps until at least one completion is there. A
        // transient failure (signal, CQ overflow, kernel short of memory) leaves the queued SQEs
        // in place: reaping below makes room and the next turn submits them again.
        const int sub = io_uring_submit_and_wait(u, 1);
        if (sub < 0 && sub != -EINTR && sub != -EAGAIN && sub != -EBUSY && sub != -ENOMEM) {
            // Any other error means the ring or liburing is broken, and reads may still be in
            // flight into buffers the caller is about to reuse: not something to return.
            spdlog::critical("io ring: io_uring_submit_and_wait failed: {}", errno_text(-sub));
            internal_error("io_uring_submit_and_wait failed");
        }
        // Reap everything that is ready; block only for the first.
        io_uring_cqe* cqe = nullptr;
        while (in_flight > 0) {
            const int rc = io_uring_peek_cqe(u, &cqe);
            if (rc < 0) {
                break;  // -EAGAIN: nothing more ready now
            }
            const auto index = static_cast<std::size_t>(io_uring_cqe_get_data64(cqe));
            if (cqe->res >= 0) {
                out[index] = static_cast<std::uint32_t>(cqe->res);
            } else {
                out[index] = fail_errno("io ring: read", -cqe->res);
            }
            io_uring_cqe_seen(u, cqe);
            --in_flight;
        }
    }
    return out;
}

}  // namespace datapump::io
