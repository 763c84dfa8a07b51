// Setting up a client: connect (in-process link, or socket + hello/welcome), the shared-memory
// segment it offers, and after a failed set-up the retry (shm_offer) at most once per shm_retry.
#include "datapump/base/internal/log.hpp"

#include "client_impl.hpp"

#include <unistd.h>

namespace datapump::ipc {

using internal::msg;
using internal::wire_header;

result<void> client::impl::connect() {
    if (options_.in_process) {
        auto link = internal::open_direct(endpoint_, options_.on_notify);
        if (!link) {
            return std::unexpected(link.error());
        }
        if (*link) {
            direct_ = std::move(*link);
            return {};
        }
    }
    auto sock = internal::connect_endpoint(endpoint_);
    if (!sock) {
        return std::unexpected(sock.error());
    }
    sock_ = std::move(*sock);
    internal::size_socket_buffers(sock_.get(), std::size_t{options_.max_message} * 4 + 4096);
    std::optional<internal::segment> seg;
    if (options_.use_shared_memory) {
        seg = make_segment();
    }
    // A server that refuses this process sends its refusal and closes at once, maybe before
    // the hello arrives: the refusal is still read below.
    if (auto sent = send_offer(msg::hello, seg ? &*seg : nullptr); !sent && sent.error().code != errc::peer_gone) {
        return sent;
    }
    internal::received m;
    auto got = internal::receive_message(sock_.get(), 0, m);
    if (!got) {
        return std::unexpected(got.error().code == errc::peer_gone
                                   ? error{errc::peer_gone, 0, "ipc init: the server closed the connection"}
                                   : got.error());
    }
    if (m.header.type != static_cast<std::uint32_t>(msg::welcome)) {
        return fail(errc::protocol_error, "ipc init: no welcome from the server");
    }
    if ((m.header.flags & internal::welcome_refused) != 0) {
        return fail(errc::peer_gone,
                    "ipc init: the server refused this process (its uid/gid is not allowed on the endpoint)",
                    EACCES);
    }
    if (seg && m.header.status == 0) {
        activate(std::move(*seg));
    } else if (seg) {
        shm_failed();
    }
    socket_thread_ = std::thread([this] { socket_main(); });
    return {};
}

std::optional<internal::segment> client::impl::make_segment() {
    if (options_.simulate_shm_failure) {
        shm_failed();
        return std::nullopt;
    }
    auto seg = internal::segment::create(geometry_);
    if (!seg) {
        spdlog::info("ipc client {}: shared memory set-up failed ({}); backup mode", endpoint_,
                  describe(seg.error()));
        shm_failed();
        return std::nullopt;
    }
    return std::move(*seg);
}

void client::impl::shm_failed() {
    shm_setups_failed_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(retry_mu_);
    next_retry_ = std::chrono::steady_clock::now() + options_.shm_retry;
}

result<void> client::impl::send_offer(msg type, const internal::segment* seg) {
    wire_header h{};
    h.type = static_cast<std::uint32_t>(type);
    h.code = geometry_.slot_count;
    h.a = geometry_.input_capacity;
    h.b = geometry_.output_capacity;
    h.pid = static_cast<std::uint32_t>(::getpid());
    int fd = seg != nullptr ? seg->fd() : -1;
    return internal::send_message(sock_.get(), h, {}, seg != nullptr ? std::span<const int>(&fd, 1)
                                                                      : std::span<const int>());
}

void client::impl::activate(internal::segment seg) {
    auto ch = std::make_unique<channel>();
    const auto& g = seg.geo();
    ch->slots = std::make_unique<slot_record[]>(g.slot_count);
    ch->cs = internal::ring_producer(seg.cs_ring(), seg.cs_entries(), g.ring_capacity);
    ch->sc = internal::ring_consumer(seg.sc_ring(), seg.sc_entries(), g.ring_capacity);
    ch->seg = std::move(seg);
    channel* raw = ch.get();
    raw->completion_thread = std::thread([this, raw] { completion_main(*raw); });
    owned_channel_ = std::move(ch);
    // SYNC POINT: release pairs with execute()'s acquire load: a thread that sees the channel
    // sees it fully built.
    channel_.store(raw, std::memory_order_release);
}

void client::impl::maybe_retry_segment() {
    if (!options_.use_shared_memory || offer_pending_.load(std::memory_order_relaxed)) {
        return;
    }
    {
        std::lock_guard lock(retry_mu_);
        if (std::chrono::steady_clock::now() < next_retry_ || offer_pending_.load(std::memory_order_relaxed)) {
            return;
        }
        next_retry_ = std::chrono::steady_clock::now() + options_.shm_retry;
        offer_pending_.store(true, std::memory_order_relaxed);
    }
    auto seg = make_segment();
    if (!seg) {
        offer_pending_.store(false, std::memory_order_relaxed);
        return;
    }
    std::lock_guard lock(retry_mu_);
    if (!send_offer(msg::shm_offer, &*seg)) {
        offer_pending_.store(false, std::memory_order_relaxed);
        return;
    }
    offered_ = std::move(*seg);  // the socket thread activates it on the server's welcome
}

void client::impl::offer_answered(bool accepted) {
    std::optional<internal::segment> seg;
    {
        std::lock_guard lock(retry_mu_);
        seg = std::move(offered_);
        offered_.reset();
    }
    if (accepted && seg && channel_.load(std::memory_order_acquire) == nullptr) {
        activate(std::move(*seg));
        spdlog::info("ipc client {}: shared memory set up; leaving backup mode", endpoint_);
    } else if (!accepted) {
        shm_failed();
    }
    offer_pending_.store(false, std::memory_order_relaxed);
}

}  // namespace datapump::ipc
