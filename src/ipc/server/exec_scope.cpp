// The exec running on this thread (attach_fd, take_fds; see exec_scope.hpp), and a socket
// connection's call of the exec handler (run_exec), whichever thread runs it.
#include "exec_scope.hpp"

#include "socket_connection.hpp"

#include <algorithm>
#include <utility>

namespace datapump::ipc {

namespace {

thread_local exec_scope* current_exec = nullptr;

}  // namespace

bool inside_exec_of(const connection* c) {
    for (const exec_scope* s = current_exec; s != nullptr; s = s->outer) {
        if (s->owner == c) {
            return true;
        }
    }
    return false;
}

scoped_exec::scoped_exec(const connection* c, std::vector<unique_fd> incoming)
    : scope{c, {}, std::move(incoming), current_exec} {
    current_exec = &scope;
}

scoped_exec::~scoped_exec() {
    current_exec = scope.outer;
}

result<void> attach_to_current(const connection* c, unique_fd fd) {
    if (current_exec == nullptr || current_exec->owner != c) {
        return fail(errc::invalid_argument, "ipc attach_fd: not inside this connection's exec");
    }
    if (current_exec->fds.size() >= internal::max_fds) {
        return fail(errc::invalid_argument, "ipc attach_fd: more than 16 descriptors");
    }
    current_exec->fds.push_back(std::move(fd));
    return {};
}

std::vector<unique_fd> take_from_current(const connection* c) {
    if (current_exec == nullptr || current_exec->owner != c) {
        return {};
    }
    return std::exchange(current_exec->incoming, {});
}

exec_result socket_connection::run_exec(std::uint32_t code, std::span<const std::byte> input,
                                        std::span<std::byte> output) {
    exec_result r = shared_.handlers.exec(*this, code, input, output);
    // A handler claiming more output than it was given is a bug in the handler; never let it
    // make us send or expose bytes past the area.
    r.output_len = std::min<std::uint32_t>(r.output_len, static_cast<std::uint32_t>(output.size()));
    return r;
}

}  // namespace datapump::ipc
