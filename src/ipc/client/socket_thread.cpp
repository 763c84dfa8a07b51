// The client's socket thread: reads everything the server sends (backup replies, slot replies that
// carry descriptors, notifications, the answer to a segment offer); EOF means the server is gone.
#include "datapump/base/internal/log.hpp"

#include "client_impl.hpp"

#include <climits>

namespace datapump::ipc {

using internal::msg;

void client::impl::socket_main() {
    internal::received m;
    const std::size_t max_payload = std::size_t{options_.max_message} * 2;
    for (;;) {
        auto got = internal::receive_message(sock_.get(), max_payload, m);
        if (!got) {
            if (got.error().code == errc::protocol_error) {
                spdlog::warn("ipc client {}: {}", endpoint_, got.error().what);
            }
            break;
        }
        const auto type = static_cast<msg>(m.header.type);
        if (type == msg::reply && (m.header.flags & internal::reply_for_slot) != 0) {
            if (!slot_reply(m)) {
                break;
            }
        } else if (type == msg::reply) {
            backup_reply(m);
        } else if (type == msg::notify) {
            if (options_.on_notify) {
                options_.on_notify(m.header.code, m.payload);
            }
        } else if (type == msg::welcome) {
            offer_answered(m.header.status == 0);
        } else {
            spdlog::warn("ipc client {}: unexpected message type {} from the server", endpoint_, m.header.type);
            break;
        }
    }
    server_gone();
}

bool client::impl::slot_reply(internal::received& m) {
    channel* ch = channel_.load(std::memory_order_acquire);
    const std::uint32_t slot = m.header.token;
    if (ch == nullptr || slot >= ch->seg.geo().slot_count ||
        ch->slots[slot].armed.load(std::memory_order_acquire) == 0) {
        spdlog::warn("ipc client {}: socket reply for a slot with no command", endpoint_);
        return false;
    }
    slot_record& r = ch->slots[slot];
    r.fds = std::move(m.fds);
    if (!r.sync) {
        if (!try_claim(r)) {
            return true;
        }
        complete_async_slot(*ch, slot, [&]() -> outcome {
            auto o = read_slot_reply(*ch, slot, r);
            if (o) {
                o->fds = std::move(r.fds);
            }
            return o;
        }());
        return true;
    }
    r.state.store(1, std::memory_order_release);
    internal::slot_header* h = ch->seg.slot(slot);
    h->done.store(done_local, std::memory_order_release);
    internal::futex_wake_shared(h->done, INT_MAX);
    return true;
}

}  // namespace datapump::ipc
