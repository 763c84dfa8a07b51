// File: datapump/ipc/internal/direct.hpp
//
// The in-process path: a client of an endpoint served in the same process calls the server's
// handlers directly (same callbacks, same order, no shared memory). The server keeps a registry
// of its endpoints; `open_direct` finds one and opens a connection on it.
//
// Thread-safety: a link's exec may run on many threads at once; close() once, by the client.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/ipc/client.hpp"
#include "datapump/ipc/server.hpp"

#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace datapump::ipc::internal {

class direct_link {
public:
    virtual ~direct_link() = default;
    // Runs exec on the calling thread; `fds` are the command's descriptors (the handler takes
    // them with connection::take_fds; the rest are closed when exec returns). Errors: peer_gone
    // when the server was destroyed.
    [[nodiscard]] virtual result<reply> exec(std::uint32_t code, std::span<const std::byte> input,
                                             std::span<std::byte> output, std::vector<unique_fd> fds) = 0;
    // The client's one-way message to the server's notify handler.
    [[nodiscard]] virtual result<void> notify_server(std::uint32_t code, std::span<const std::byte> payload) = 0;
    [[nodiscard]] virtual bool gone() const = 0;
    // The client is done: close runs once every exec has returned.
    virtual void close() = 0;
};

using notify_fn = std::function<void(std::uint32_t, std::span<const std::byte>)>;

// A link to the server of `endpoint` in this process, or nullptr when there is none.
// Errors: peer_gone when the server's open handler refused.
[[nodiscard]] result<std::shared_ptr<direct_link>> open_direct(std::string_view endpoint, notify_fn on_notify);

}  // namespace datapump::ipc::internal
