// The in-process path: a client of a server in this process calls its handlers directly, with the
// same callbacks in the same order, and no shared memory, socket or threads.
#include "client_impl.hpp"

#include <fcntl.h>

namespace datapump::ipc {

result<reply> client::impl::execute_direct(std::uint32_t code, std::span<const std::byte> input,
                                           std::span<std::byte> output, const callbacks& cb, std::span<const int> fds) {
    // The server's copies of the descriptors, as SCM_RIGHTS would make them: the caller keeps
    // its own; exec closes what its handler does not take.
    std::vector<unique_fd> copies;
    copies.reserve(fds.size());
    for (const int fd : fds) {
        unique_fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        if (!copy) {
            return fail_errno("ipc execute: duplicating a descriptor to send");
        }
        copies.push_back(std::move(copy));
    }
    // Areas: the caller's own buffers unless a prepare callback wants somewhere to build.
    std::vector<std::byte> in_area;
    std::vector<std::byte> out_area;
    std::span<const std::byte> in = input;
    std::span<std::byte> out = output;
    if (cb.input_prepare != nullptr) {
        in_area.resize(input.size());
        cb.input_prepare(cb.context, input, in_area);
        in = in_area;
    }
    if (cb.output_prepare != nullptr || cb.output_post != nullptr) {
        out_area.resize(output.size());
        out = out_area;
        if (cb.output_prepare != nullptr) {
            cb.output_prepare(cb.context, output, out_area);
        }
    }
    direct_commands_.fetch_add(1, std::memory_order_relaxed);
    auto r = direct_->exec(code, in, out, std::move(copies));
    outcome o = std::move(r);
    if (o) {
        std::vector<unique_fd> attached = std::move(o->fds);
        o = finish_command(cb, input, in, output, out.first(o->output_len), o->status);
        o->fds = std::move(attached);
    } else {
        failed_.fetch_add(1, std::memory_order_relaxed);
    }
    if (cb.completion == nullptr) {
        return o;
    }
    complete_async(cb, std::move(o));
    return reply{};
}

}  // namespace datapump::ipc
