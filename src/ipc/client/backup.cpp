// Backup commands: a command that does not fit a slot (or finds none free, or carries descriptors)
// travels whole over the socket; its reply comes back on the socket thread.
#include "datapump/base/internal/log.hpp"

#include "client_impl.hpp"

namespace datapump::ipc {

using internal::msg;
using internal::wire_header;

result<reply> client::impl::execute_backup(std::uint32_t code, std::span<const std::byte> input,
                                           std::span<std::byte> output, const callbacks& cb, exec_flags flags) {
    if (input.size() > options_.max_message || output.size() > options_.max_message) {
        return fail(errc::invalid_argument, "ipc execute: input or output larger than max_message");
    }
    auto rec = std::make_shared<command_record>();
    rec->cb = cb;
    rec->input = input;
    rec->output = output;
    rec->sync = cb.completion == nullptr;
    const bool prepared_output = cb.output_prepare != nullptr;
    std::vector<std::byte> message(input.size() + (prepared_output ? output.size() : 0));
    prepare_areas(cb, input, std::span(message).first(input.size()), output,
                  prepared_output ? std::span(message).subspan(input.size()) : std::span<std::byte>());
    wire_header h{};
    h.type = static_cast<std::uint32_t>(msg::command);
    h.code = code;
    h.flags = (flags.on_worker ? internal::flag_worker : 0U) |
              (prepared_output ? internal::flag_prepared_output : 0U);
    h.a = static_cast<std::uint32_t>(input.size());
    h.b = static_cast<std::uint32_t>(output.size());
    // The record keeps the message: its input area is what input_post shows. It is complete
    // before the record is visible to the socket thread (which may fail it at once).
    rec->sent = std::move(message);
    {
        std::lock_guard lock(backup_mu_);
        if (dead_.load(std::memory_order_acquire)) {
            return fail(errc::peer_gone, "ipc execute: the server is gone");
        }
        h.token = next_token_++;
        outstanding_.fetch_add(1, std::memory_order_relaxed);  // before anyone can complete it
        backup_[h.token] = rec;
    }
    if (auto sent = internal::send_message(sock_.get(), h, rec->sent, flags.fds); !sent) {
        bool ours = false;
        {
            std::lock_guard lock(backup_mu_);
            ours = backup_.erase(h.token) == 1;
        }
        if (ours) {
            command_done();
            return std::unexpected(sent.error());
        }
        // The socket thread failed it already (the server died as we sent).
    }
    backup_commands_.fetch_add(1, std::memory_order_relaxed);
    if (!rec->sync) {
        return reply{};
    }
    rec->state.wait(0, std::memory_order_acquire);
    result<reply> out = backup_outcome(*rec);
    command_done();
    return out;
}

result<reply> client::impl::backup_outcome(command_record& rec) {
    const auto input_area = std::span<const std::byte>(rec.sent).first(rec.input.size());
    if (rec.state.load(std::memory_order_acquire) != 1) {
        failed_.fetch_add(1, std::memory_order_relaxed);
        return std::unexpected(rec.failure);
    }
    if (rec.payload.size() > rec.output.size()) {
        failed_.fetch_add(1, std::memory_order_relaxed);
        return fail(errc::protocol_error, "ipc execute: the server replied with more output than offered");
    }
    reply r = finish_command(rec.cb, rec.input, input_area, rec.output, rec.payload, rec.status);
    r.fds = std::move(rec.fds);
    return r;
}

void client::impl::backup_reply(internal::received& m) {
    std::shared_ptr<command_record> rec;
    {
        std::lock_guard lock(backup_mu_);
        auto it = backup_.find(m.header.token);
        if (it == backup_.end()) {
            spdlog::warn("ipc client {}: reply for an unknown command", endpoint_);
            return;
        }
        rec = std::move(it->second);
        backup_.erase(it);
    }
    if ((m.header.flags & internal::reply_bad) != 0 || m.header.a != m.payload.size()) {
        rec->failure = error{errc::protocol_error, 0,
                             (m.header.flags & internal::reply_bad) != 0
                                 ? "ipc execute: the server refused the command as malformed"
                                 : "ipc execute: reply length disagrees with its payload"};
        finish_backup(*rec, 2);
        return;
    }
    rec->status = m.header.status;
    rec->payload = std::move(m.payload);
    rec->fds = std::move(m.fds);
    m.payload = {};
    finish_backup(*rec, 1);
}

void client::impl::finish_backup(command_record& rec, std::uint32_t state) {
    if (rec.sync) {
        rec.state.store(state, std::memory_order_release);
        rec.state.notify_all();
        return;
    }
    rec.state.store(state, std::memory_order_relaxed);
    outcome o = backup_outcome(rec);
    complete_async(rec.cb, std::move(o));
    command_done();
}

}  // namespace datapump::ipc
