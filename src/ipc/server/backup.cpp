// A socket connection's backup commands (whole over the socket; run inline on the socket thread or
// on a worker, bounded per client) and every reply the server sends over the socket.
#include "datapump/base/internal/log.hpp"

#include "socket_connection.hpp"

#include <poll.h>

#include <chrono>
#include <cstring>
#include <memory>

namespace datapump::ipc {

using internal::msg;
using internal::wire_header;

namespace {

// How long a reply may wait for room in a client's socket before the client is cut off.
constexpr std::chrono::milliseconds reply_patience{100};

}  // namespace

void socket_connection::backup_command(internal::received& m) {
    const std::uint32_t input_len = m.header.a;
    const std::uint32_t output_cap = m.header.b;
    const bool prepared_output = (m.header.flags & internal::flag_prepared_output) != 0;
    const std::size_t expect = std::size_t{input_len} + (prepared_output ? output_cap : 0);
    if (m.payload.size() != expect || output_cap > shared_.options.max_message ||
        input_len > shared_.options.max_message) {
        shared_.counters.bad_commands.fetch_add(1, std::memory_order_relaxed);
        m.fds.clear();  // closed before the reply
        send_reply(m.header.token, bad_command, 0, internal::reply_bad, {}, {});
        return;
    }
    shared_.counters.backup_commands.fetch_add(1, std::memory_order_relaxed);
    // Shared, not moved in: the pool's jobs are std::functions, which must be copyable.
    auto incoming = std::make_shared<std::vector<unique_fd>>(std::move(m.fds));
    m.fds.clear();
    auto job = [self = shared_from_this(), token = m.header.token, code = m.header.code, input_len, output_cap,
                prepared_output, payload = std::move(m.payload), incoming]() mutable {
        std::vector<std::byte> output(output_cap);
        if (prepared_output && output_cap > 0) {
            std::memcpy(output.data(), payload.data() + input_len, output_cap);
        }
        scoped_exec scope(self.get(), std::move(*incoming));
        const exec_result r = self->run_exec(code, std::span(payload).first(input_len), output);
        scope.scope.incoming.clear();  // not taken: closed before the client hears back
        self->send_reply(token, r.status, r.output_len, 0, std::span(output).first(r.output_len), scope.scope.fds);
    };
    m.payload = {};
    if ((m.header.flags & internal::flag_worker) == 0) {
        job();
        return;
    }
    // Bounded: a client cannot queue more than max_backup_in_flight commands on the pool.
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return backup_on_workers_ < shared_.options.max_backup_in_flight; });
    ++backup_on_workers_;
    ++executing_;
    lock.unlock();
    shared_.pool->post([self = shared_from_this(), job = std::move(job)]() mutable {
        job();
        self->job_done(true);
    });
}

void socket_connection::send_reply(std::uint32_t token, std::int32_t status, std::uint32_t output_len,
                                   std::uint32_t flags, std::span<const std::byte> output,
                                   const std::vector<unique_fd>& fds) {
    wire_header h{};
    h.type = static_cast<std::uint32_t>(msg::reply);
    h.token = token;
    h.status = status;
    h.a = output_len;
    h.flags = flags;
    std::vector<int> raw;
    raw.reserve(fds.size());
    for (const auto& fd : fds) {
        raw.push_back(fd.get());
    }
    // Never block a worker (or the channel thread) on one client for long: a client that does
    // not read its replies for reply_patience is cut off, so it cannot hold up the others.
    auto sent = internal::send_message(sock_.get(), h, output, raw, true);
    const auto give_up = std::chrono::steady_clock::now() + reply_patience;
    while (!sent && sent.error().code == errc::full && std::chrono::steady_clock::now() < give_up) {
        pollfd p{sock_.get(), POLLOUT, 0};
        (void)::poll(&p, 1, 10);
        sent = internal::send_message(sock_.get(), h, output, raw, true);
    }
    if (!sent && sent.error().code == errc::full) {
        violation("not reading its replies");
        return;
    }
    if (!sent && sent.error().code != errc::peer_gone) {
        spdlog::warn("ipc server {}: reply to client {} failed: {}", shared_.endpoint, id_, describe(sent.error()));
    }
}

}  // namespace datapump::ipc
