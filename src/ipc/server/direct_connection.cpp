// In-process connections: a client in this process calls the handlers directly, on its own
// thread; the close handler runs once every exec has returned.
#include "direct_connection.hpp"

#include <algorithm>
#include <utility>

namespace datapump::ipc {

result<void> direct_connection::notify(std::uint32_t code, std::span<const std::byte> payload) {
    if (gone()) {
        return fail(errc::peer_gone, "ipc notify: the client is gone");
    }
    if (on_notify_) {
        on_notify_(code, payload);
    }
    return {};
}

result<reply> direct_connection::exec(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                                      std::vector<unique_fd> fds) {
    {
        std::lock_guard lock(mu_);
        if (closed_) {
            return fail(errc::peer_gone, "ipc execute: the in-process server is gone");
        }
        ++executing_;
    }
    reply out;
    {
        scoped_exec scope(static_cast<connection*>(this), std::move(fds));
        exec_result r = shared_.handlers.exec(*this, code, input, output);
        scope.scope.incoming.clear();  // not taken: closed now, as on the socket path
        out.status = r.status;
        out.output_len = std::min<std::uint32_t>(r.output_len, static_cast<std::uint32_t>(output.size()));
        out.fds = std::move(scope.scope.fds);
    }
    bool close_now = false;
    {
        std::lock_guard lock(mu_);
        --executing_;
        // A disconnect() from inside an exec leaves the close to the last exec to return.
        close_now = closed_ && close_pending_ && executing_ == 0 && !close_done_;
        close_done_ = close_done_ || close_now;
    }
    cv_.notify_all();
    if (close_now) {
        run_close();
    }
    return out;
}

result<void> direct_connection::notify_server(std::uint32_t code, std::span<const std::byte> payload) {
    if (gone()) {
        return fail(errc::peer_gone, "ipc notify: the in-process server is gone");
    }
    if (shared_.handlers.notify) {
        shared_.handlers.notify(*this, code, payload);
    }
    return {};
}

bool direct_connection::gone() const {
    std::lock_guard lock(mu_);
    return closed_;
}

void direct_connection::end() {
    std::unique_lock lock(mu_);
    closed_ = true;
    if (inside_exec_of(this)) {
        close_pending_ = true;
        return;
    }
    cv_.wait(lock, [this] { return executing_ == 0; });
    if (close_done_) {
        return;
    }
    close_done_ = true;
    lock.unlock();
    run_close();
}

void direct_connection::run_close() {
    if (shared_.handlers.close) {
        shared_.handlers.close(*this);
    }
    shared_.counters.clients_closed.fetch_add(1, std::memory_order_relaxed);
    shared_.counters.clients_now.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace datapump::ipc
