// The client's public API (client::init, execute, notify, deinit, stats) and execute()'s choice of
// path for each command: in-process, a shared-memory slot, or the socket (backup). See docs/ipc.md.
#include "client_impl.hpp"

#include <fcntl.h>

#include <cerrno>

namespace datapump::ipc {

using internal::msg;
using internal::wire_header;

namespace {

// Descriptors a command may carry: at most max_fds, each open (checked before anything is sent,
// so a bad one fails the command cleanly instead of the socket send).
result<void> check_fds(std::span<const int> fds) {
    if (fds.size() > internal::max_fds) {
        return fail(errc::invalid_argument, "ipc execute: more than 16 descriptors");
    }
    for (const int fd : fds) {
        if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
            const int why = fd < 0 ? EBADF : errno;
            return fail(errc::invalid_argument, "ipc execute: a descriptor to send is not open", why);
        }
    }
    return {};
}

}  // namespace

result<reply> client::impl::execute(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                                    const callbacks& cb, exec_flags flags) {
    if (closing_.load(std::memory_order_acquire)) {
        return fail(errc::closed, "ipc execute: the client is being deinitialised");
    }
    if (auto ok = check_fds(flags.fds); !ok) {
        return std::unexpected(ok.error());
    }
    if (direct_) {
        return execute_direct(code, input, output, cb, flags.fds);
    }
    if (dead_.load(std::memory_order_acquire)) {
        return fail(errc::peer_gone, "ipc execute: the server is gone");
    }
    channel* ch = channel_.load(std::memory_order_acquire);
    if (ch == nullptr) {
        maybe_retry_segment();
    } else if (flags.fds.empty() && input.size() <= ch->seg.geo().input_capacity &&
               output.size() <= ch->seg.geo().output_capacity) {
        // Descriptors travel only on the socket: such a command is a backup command.
        std::uint32_t slot = take_slot(*ch);
        if (slot == internal::segment::no_slot) {
            slot = wait_for_slot(*ch);
        }
        if (slot != internal::segment::no_slot) {
            return execute_slot(*ch, slot, code, input, output, cb, flags);
        }
    }
    return execute_backup(code, input, output, cb, flags);
}

client_stats client::impl::stats() const {
    client_stats s;
    s.slot_commands = slot_commands_.load(std::memory_order_relaxed);
    s.backup_commands = backup_commands_.load(std::memory_order_relaxed);
    s.direct_commands = direct_commands_.load(std::memory_order_relaxed);
    s.failed_commands = failed_.load(std::memory_order_relaxed);
    s.shm_setups_failed = shm_setups_failed_.load(std::memory_order_relaxed);
    s.shared_memory = channel_.load(std::memory_order_acquire) != nullptr;
    return s;
}

bool client::impl::peer_gone() const {
    return direct_ ? direct_->gone() : dead_.load(std::memory_order_acquire);
}

result<void> client::impl::notify(std::uint32_t code, std::span<const std::byte> payload) {
    if (payload.size() > options_.max_message) {
        return fail(errc::invalid_argument, "ipc notify: payload larger than max_message");
    }
    if (direct_) {
        return direct_->notify_server(code, payload);
    }
    if (dead_.load(std::memory_order_acquire)) {
        return fail(errc::peer_gone, "ipc notify: the server is gone");
    }
    wire_header h{};
    h.type = static_cast<std::uint32_t>(msg::notify);
    h.code = code;
    return internal::send_message(sock_.get(), h, payload);
}

result<std::unique_ptr<client>> client::init(std::string_view endpoint, client_options options) {
    if (options.slots == 0 || options.slots > 4096 || options.max_message == 0 ||
        options.input_capacity > (1U << 20) || options.output_capacity > (1U << 20)) {
        return fail(errc::invalid_argument, "ipc init: slots must be 1..4096, capacities at most 1 MiB");
    }
    auto i = std::make_unique<impl>(std::string(endpoint), std::move(options));
    if (auto ok = i->connect(); !ok) {
        return std::unexpected(ok.error());
    }
    return std::unique_ptr<client>(new client(std::move(i)));
}

client::client(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
client::~client() = default;

result<reply> client::execute(std::uint32_t code, std::span<const std::byte> input, std::span<std::byte> output,
                              const callbacks& cb, exec_flags flags) {
    return impl_->execute(code, input, output, cb, flags);
}

result<void> client::notify(std::uint32_t code, std::span<const std::byte> payload) {
    return impl_->notify(code, payload);
}

void client::deinit() { impl_->deinit(); }
client_stats client::stats() const { return impl_->stats(); }
bool client::peer_gone() const { return impl_->peer_gone(); }

}  // namespace datapump::ipc
