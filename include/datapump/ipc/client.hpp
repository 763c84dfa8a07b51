// File: datapump/ipc/client.hpp
//
// The client side of the command channel (seed 004): init (`client::init`), execute, deinit (the
// destructor or `deinit()`). See docs/ipc.md for the design.
//
// A command is (code, input bytes, output buffer), optionally with descriptors for the server
// (exec_flags::fds: such a command travels over the socket). By default the input is copied into
// the command's shared-memory slot and the output copied out of it; the prepare/post callbacks
// let the caller build the input in place and consume the output in place instead. Callback order, for
// every command, whichever path it takes (slot, socket backup, in-process call):
//
//   input_prepare -> output_prepare -> [server: exec] -> input_post -> output_post -> completion
//
// Synchronous when `callbacks.completion` is null: execute() returns after output_post, and the
// post callbacks run on the calling thread. Asynchronous otherwise: execute() returns once the
// command is on its way; the post callbacks and the completion run later on the client's
// completion thread (slot commands) or socket thread (backup commands), or before execute()
// returns (in-process calls).
//
// Lifetimes: `input` must stay valid until execute() returns, `output` until the command completes
// (sync: until execute() returns; async: until the completion callback has run).
//
// Thread-safety: execute() and notify() may be called from any number of threads at once.
// deinit() (or destruction) must not race with execute() and must not be called from a callback.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/wait.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::ipc {

// What the server answered.
struct reply {
    std::int32_t status = 0;         // the server's exec handler's status (its own convention)
    std::uint32_t output_len = 0;    // bytes of output the server produced
    std::vector<unique_fd> fds;      // descriptors the handler attached (SCM_RIGHTS)
};

// The outcome handed to an asynchronous completion: a reply, or why there is none
// (errc::peer_gone when the server died or went away, errc::closed after deinit started,
// errc::protocol_error when the server wrote something impossible).
using outcome = result<reply>;

// Callbacks of one command, with one context pointer passed back to each. Any may be null.
struct callbacks {
    // Fill `area` (input.size() bytes, in the slot or the backup message) from `input`.
    // Null: the input is copied.
    void (*input_prepare)(void* context, std::span<const std::byte> input, std::span<std::byte> area) = nullptr;
    // Prepare `area` (output.size() bytes) where the server will write. Null: nothing.
    void (*output_prepare)(void* context, std::span<std::byte> output, std::span<std::byte> area) = nullptr;
    // The input area as the server saw it.
    void (*input_post)(void* context, std::span<const std::byte> input, std::span<const std::byte> area) = nullptr;
    // Consume the `area` the server wrote (output_len bytes). Null: it is copied into `output`.
    void (*output_post)(void* context, std::span<std::byte> output, std::span<const std::byte> area) = nullptr;
    // Makes the command asynchronous. Called exactly once per accepted command.
    void (*completion)(void* context, outcome& result) = nullptr;
    void* context = nullptr;
};

struct exec_flags {
    bool on_worker = false;  // run on the server's worker pool instead of its channel thread
    // Descriptors sent with the command, at most 16 (the handler takes them with
    // connection::take_fds). A command with descriptors always travels over the socket, as a
    // backup command with SCM_RIGHTS, whatever its size. The caller keeps its descriptors, open and
    // its own, in every case: the server gets copies (SCM_RIGHTS; an in-process server gets dup()s
    // the library makes). Read only during execute(): they may be closed once it returns.
    std::span<const int> fds{};
};

struct client_options {
    std::uint32_t slots = 64;                  // commands in shared memory at once (1..4096)
    std::uint32_t input_capacity = 4096;       // bytes per slot; larger inputs go over the socket
    std::uint32_t output_capacity = 4096;      // bytes per slot; larger outputs go over the socket
    std::uint32_t max_message = 128 * 1024;    // largest backup command or reply, header excluded
    wait_policy wait{};                        // how the completion thread and sync callers wait
    bool use_shared_memory = true;             // false: every command over the socket (backup)
    bool in_process = true;                    // call a server in this process directly
    std::chrono::milliseconds shm_retry{1000}; // after a failed segment set-up, retry this often
    // Fault injection for tests: every shared-memory set-up fails as if memfd_create had.
    bool simulate_shm_failure = false;
    // Server-initiated messages (seed 001's asynchronous notifications; used by loan leases).
    // Runs on the client's socket thread; for an in-process server, on the server thread that
    // called connection::notify. Must not call deinit().
    std::function<void(std::uint32_t code, std::span<const std::byte> payload)> on_notify;
};

// Counters, for tests and /metrics. Monotonic.
struct client_stats {
    std::uint64_t slot_commands = 0;     // went through shared memory
    std::uint64_t backup_commands = 0;   // went over the socket
    std::uint64_t direct_commands = 0;   // in-process calls
    std::uint64_t failed_commands = 0;   // completed with an error (server gone, protocol)
    std::uint64_t shm_setups_failed = 0;
    bool shared_memory = false;          // a segment is currently set up
};

class client {
public:
    // Connects to `endpoint` ("/path/to/socket", or "@name" for the abstract namespace) and sets
    // up the shared-memory segment. A segment the server refuses is not an error: the client then
    // works in backup mode and retries later.
    // Errors: not_found (nobody serves the endpoint), invalid_argument (bad options or endpoint),
    // peer_gone (the server closed during set-up), io_error.
    [[nodiscard]] static result<std::unique_ptr<client>> init(std::string_view endpoint,
                                                               client_options options = {});

    client(const client&) = delete;
    client& operator=(const client&) = delete;
    ~client();

    // Issues one command. Sync (no completion): the reply, or the error. Async: an empty reply
    // once accepted (the outcome reaches the completion), or an error if it could not be sent (no
    // callback is then called). Errors: peer_gone, closed, invalid_argument (input or output larger
    // than max_message; more than 16 descriptors, or one that is not open), protocol_error.
    [[nodiscard]] result<reply> execute(std::uint32_t code, std::span<const std::byte> input,
                                        std::span<std::byte> output, const callbacks& cb = {},
                                        exec_flags flags = {});

    // Sends a one-way message to the server's notify handler. Errors: peer_gone, invalid_argument.
    [[nodiscard]] result<void> notify(std::uint32_t code, std::span<const std::byte> payload);

    // Waits for every outstanding command to complete (or fail, if the server goes), then closes
    // the connection, joins the client's threads and unmaps the segment. Idempotent.
    void deinit();

    [[nodiscard]] client_stats stats() const;
    // True once the server is known to be gone.
    [[nodiscard]] bool peer_gone() const;

    class DATAPUMP_INTERNAL impl;

private:
    explicit client(std::unique_ptr<impl> impl);
    std::unique_ptr<impl> impl_;
};

}  // namespace datapump::ipc
DATAPUMP_API_END
