// File: datapump/ipc/server.hpp
//
// The server side of the command channel (seed 004): `server_runtime::init` (the worker pool that
// the servers of a process share), `create` (an endpoint with open/exec/close handlers),
// `server::destroy`, and the runtime's destruction (deinit). Several servers per process, several
// clients per server.
//
// Per connection the handlers run in this order: open once; exec per command (on the connection's
// channel or socket thread when the command asks for inline execution, on a pool worker
// otherwise; several execs of one connection may run at once when they use workers); close
// once, after every exec of the connection has returned: when the client deinitialises, dies, or
// the server is destroyed.
//
// Hostile clients: everything read from shared memory is copied and checked before use; the input
// span handed to exec points into shared memory the client can still change while exec runs, so
// exec must treat it as untrusted bytes (copy what it needs to validate). A client breaking the
// ring protocol is disconnected; bad fields fail only that command (status `bad_command`).
// Descriptors: only a backup command may carry them (at most 16). A message with more than the
// socket's control buffer holds (truncated), or descriptors on a message that must not carry them
// (a notification), disconnects the client; every descriptor that arrived is closed first. A
// malformed command's descriptors are closed with its bad_command reply.
//
// Thread-safety: create/destroy from any thread; handlers are called from the server's threads
// and must be thread-safe across connections. connection::notify may be called from any thread.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/wait.hpp"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::ipc {

// Status the server itself puts on a command whose header was invalid (never passed to exec).
inline constexpr std::int32_t bad_command = -22;  // -EINVAL

class connection {
public:
    virtual ~connection() = default;
    // Set by the open handler, read by exec and close: the seed's per-connection user context.
    void* user_context = nullptr;

    [[nodiscard]] virtual std::uint64_t id() const = 0;
    [[nodiscard]] virtual pid_t peer_pid() const = 0;  // 0 when unknown (in-process: our pid)
    // Only inside exec: sends `fd` with this command's reply (the reply then travels over the
    // socket). Errors: invalid_argument outside exec or past 16 descriptors.
    [[nodiscard]] virtual result<void> attach_fd(unique_fd fd) = 0;
    // Only inside exec: the descriptors the client sent with this command (client exec_flags::fds;
    // at most 16, in the client's order), handed over once: a second call returns none. Those exec
    // does not take are closed when it returns, before the reply is sent. Outside exec: none.
    [[nodiscard]] virtual std::vector<unique_fd> take_fds() = 0;
    // A one-way message to the client's on_notify. Any thread; never blocks. Errors: peer_gone,
    // full (the client is not reading its socket: try again later).
    [[nodiscard]] virtual result<void> notify(std::uint32_t code, std::span<const std::byte> payload) = 0;
    // Ends the connection from the server side (the client sees peer_gone). Any thread.
    virtual void disconnect() = 0;
};

struct exec_result {
    std::int32_t status = 0;
    std::uint32_t output_len = 0;  // <= output.size()
};

struct server_handlers {
    // A new client. An error refuses it (the client's init fails with peer_gone).
    std::function<result<void>(connection&)> open;
    std::function<exec_result(connection&, std::uint32_t code, std::span<const std::byte> input,
                              std::span<std::byte> output)>
        exec;
    std::function<void(connection&)> close;
    // One-way messages from client::notify; on the connection's socket thread.
    std::function<void(connection&, std::uint32_t code, std::span<const std::byte> payload)> notify;
};

// Who may use an endpoint, checked once per connection right after accept against the peer's
// credentials (SO_PEERCRED: the uid/gid the peer had when it called connect). A peer is allowed
// when any of these holds: its uid is the server's effective uid (allow_same_uid), it is root
// (allow_root), its uid is in `uids`, or its primary gid is in `gids`. SO_PEERCRED carries no
// supplementary groups, so a peer in a listed group only through a supplementary membership is
// refused (use a uid, or make the group its primary one). A refused peer gets a refusal welcome
// (its init fails with peer_gone, sys EACCES) and is closed at once; the server logs it with its
// pid and uid. In-process clients (the server's own process) are always allowed. This is the only
// protection of an abstract endpoint ("@name"), which has no file permissions at all.
struct peer_rule {
    bool allow_same_uid = true;
    bool allow_root = true;
    std::vector<uid_t> uids;
    std::vector<gid_t> gids;
};

struct server_options {
    std::uint32_t max_clients = 256;
    std::uint32_t max_slots = 4096;              // per client
    std::uint32_t max_slot_capacity = 1 << 20;   // input or output bytes per slot
    std::uint32_t max_message = 128 * 1024;      // largest backup command accepted
    std::uint32_t max_backup_in_flight = 64;     // backup commands per client on workers at once
    wait_policy wait{};                          // how each connection's channel thread waits
    // local peers: who may connect (see peer_rule), and the mode a path endpoint's socket file is
    // created with (set before listen(), so no peer can connect under another mode; <= 0777).
    // Connecting to a path endpoint needs write permission on the file; 0600 pairs with the
    // default rule (same uid or root); a group-shared endpoint wants 0660 and `peers.gids`.
    peer_rule peers{};
    mode_t endpoint_mode = 0600;
};

struct server_stats {
    std::uint64_t clients_accepted = 0;
    std::uint64_t clients_closed = 0;
    std::uint64_t slot_commands = 0;
    std::uint64_t backup_commands = 0;
    std::uint64_t bad_commands = 0;           // failed validation (status bad_command)
    std::uint64_t protocol_disconnects = 0;   // clients cut off for breaking the protocol
    std::uint64_t shm_refused = 0;            // segments refused at set-up
    std::uint32_t clients_now = 0;
    std::uint64_t accept_errors = 0;  // accept() failures (EMFILE...: accepting pauses after each)
    std::uint64_t peers_refused = 0;          // connections refused for their credentials
};

class server;

struct runtime_options {
    std::uint32_t workers = 2;  // the pool shared by this runtime's servers
};

class server_runtime {
public:
    // Starts the worker pool. Errors: invalid_argument (0 workers).
    [[nodiscard]] static result<std::unique_ptr<server_runtime>> init(runtime_options options = {});
    server_runtime(const server_runtime&) = delete;
    server_runtime& operator=(const server_runtime&) = delete;
    // Deinit: every server of the runtime must be destroyed first.
    ~server_runtime();

    // Listens on `endpoint` ("/path" or "@abstract"). A path endpoint's socket file is created with
    // options.endpoint_mode. A socket file left behind by a dead server (nobody listens: connect
    // is refused) is replaced; one a live server answers on is not (busy), nor is anything that is
    // not a socket (busy), nor a socket whose liveness cannot be told (io_error with the errno).
    // Errors: busy, invalid_argument (bad endpoint, mode above 0777), io_error.
    [[nodiscard]] result<std::unique_ptr<server>> create(std::string_view endpoint, server_handlers handlers,
                                                         server_options options = {});

    class DATAPUMP_INTERNAL impl;

private:
    explicit server_runtime(std::unique_ptr<impl> impl);
    std::unique_ptr<impl> impl_;
};

class server {
public:
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    ~server();  // destroy()

    // Stops accepting, disconnects every client (each gets close after its execs return), joins
    // the server's threads, removes a path endpoint's socket file. Idempotent.
    void destroy();

    [[nodiscard]] server_stats stats() const;
    [[nodiscard]] std::string_view endpoint() const;

    class DATAPUMP_INTERNAL impl;

private:
    friend class server_runtime;
    explicit server(std::unique_ptr<impl> impl);
    std::unique_ptr<impl> impl_;
};

}  // namespace datapump::ipc
DATAPUMP_API_END
