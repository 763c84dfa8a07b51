// A socket connection's socket thread: the hello/welcome set-up (the offered segment checked and
// mapped), then every message the client sends until EOF; notifications to the client; cutting
// off a client that breaks the protocol.
#include "datapump/base/internal/log.hpp"

#include "socket_connection.hpp"

#include <unistd.h>

#include <cerrno>

namespace datapump::ipc {

using internal::msg;
using internal::wire_header;

result<void> socket_connection::notify(std::uint32_t code, std::span<const std::byte> payload) {
    wire_header h{};
    h.type = static_cast<std::uint32_t>(msg::notify);
    h.code = code;
    // Never blocks: a client that stops reading must not stall the notifying thread.
    return internal::send_message(sock_.get(), h, payload, {}, true);
}

void socket_connection::violation(const char* what) {
    if (!violated_.exchange(true)) {
        shared_.counters.protocol_disconnects.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("ipc server {}: client {} (pid {}) broke the protocol ({}); disconnecting", shared_.endpoint,
                  id_, pid_, what);
    }
    disconnect();
}

bool socket_connection::accept_segment(const internal::received& m) {
    const auto& o = shared_.options;
    const std::uint32_t slots = m.header.code;
    const std::uint32_t in = m.header.a;
    const std::uint32_t out = m.header.b;
    const char* refused = nullptr;
    if (m.fds.size() != 1) {
        refused = "no segment descriptor";
    } else if (slots == 0 || slots > o.max_slots || in > o.max_slot_capacity || out > o.max_slot_capacity) {
        refused = "geometry beyond the server's limits";
    } else if (internal::make_geometry(slots, in, out).total_size > (std::uint64_t{1} << 31)) {
        refused = "segment larger than 2 GiB";
    }
    if (refused == nullptr) {
        auto seg = internal::segment::attach(unique_fd(::dup(m.fds[0].get())), slots, in, out);
        if (seg) {
            segment_ = std::move(*seg);
            return true;
        }
        refused = seg.error().what;
    }
    shared_.counters.shm_refused.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("ipc server {}: client {} segment refused ({}); backup mode", shared_.endpoint, id_, refused);
    return false;
}

result<void> socket_connection::send_welcome(bool shm) {
    wire_header h{};
    h.type = static_cast<std::uint32_t>(msg::welcome);
    h.status = shm ? 0 : -EPROTO;
    h.a = shared_.options.max_message;
    return internal::send_message(sock_.get(), h, {});
}

void socket_connection::socket_main() {
    internal::received m;
    bool opened = false;
    auto hello = internal::receive_message(sock_.get(), 0, m);
    if (hello && m.header.type == static_cast<std::uint32_t>(msg::hello)) {
        const bool shm = !m.fds.empty() && accept_segment(m);
        auto opened_ok = shared_.handlers.open ? shared_.handlers.open(*this) : result<void>{};
        if (opened_ok && send_welcome(shm)) {
            opened = true;
            if (shm) {
                start_channel();
            }
            command_loop(m);
        } else if (!opened_ok) {
            spdlog::info("ipc server {}: open refused client {}: {}", shared_.endpoint, id_,
                      describe(opened_ok.error()));
        }
    } else if (hello) {
        m.fds.clear();
        violation("first message is not hello");
    }
    teardown(opened);
}

void socket_connection::command_loop(internal::received& m) {
    const std::size_t max_payload = std::size_t{shared_.options.max_message} * 2;
    for (;;) {
        auto got = internal::receive_message(sock_.get(), max_payload, m);
        if (!got) {
            if (got.error().code == errc::protocol_error) {
                violation(got.error().what);
            }
            return;
        }
        switch (static_cast<msg>(m.header.type)) {
            case msg::command: backup_command(m); break;
            case msg::notify:
                if (!m.fds.empty()) {
                    m.fds.clear();  // closed before the client can see the disconnect
                    violation("descriptors on a notification");
                    return;
                }
                if (shared_.handlers.notify) {
                    shared_.handlers.notify(*this, m.header.code, m.payload);
                }
                break;
            case msg::shm_offer: {
                if (segment_.valid()) {
                    m.fds.clear();
                    violation("second segment");
                    return;
                }
                const bool shm = accept_segment(m);
                if (!send_welcome(shm)) {
                    return;
                }
                if (shm) {
                    start_channel();
                }
                break;
            }
            default:
                m.fds.clear();
                violation("unexpected message type");
                return;
        }
    }
}

}  // namespace datapump::ipc
