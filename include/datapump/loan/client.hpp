// File: datapump/loan/client.hpp
//
// The client side of zero-copy file loans (see loan/server.hpp and docs/ipc.md, "Loans across the
// process boundary"). A client connects to a loan server, reserves an address range the size of
// its cache arena, and maps into it, read-only and MAP_PRIVATE, the memfd of each cache buffer it
// is lent (one memfd per buffer, sent with the borrow that first needs it; docs/ipc.md, "What a
// loan client can read"), opens files and borrows byte ranges of them: a `lease` is a
// list of read-only spans straight into the server's cache buffers, pinned for us until the lease
// is given back. With a server that allows it, put() writes a file from a stream of the caller's
// (local ingest; docs/ipc.md, "Local ingest (put)").
//
//   client ──shared──> impl: ipc::client, the arena mapping, the lease table, per-buffer state
//   file   ──shared──> impl          (a server handle; closed when dropped)
//   lease  ──shared──> impl, record  (pieces; given back when dropped)
//
// Reclaim. A lease has a deadline on the server. When it passes, the server sends a RECLAIM note;
// the library (on the ipc socket thread) makes the lease's pages private to this process —
// mprotect read-write, MADV_POPULATE_WRITE (the private mapping copies on write), mprotect
// read-only — acknowledges, and the server unpins. The spans keep their bytes; reclaimed() turns
// true. The server may then reuse those buffers for other data, which the application never sees
// through a reclaimed lease.
//
// The rule for pages, per arena buffer (buffers are whole pages; a lease's piece never crosses a
// buffer):
//   * Each buffer of the main mapping is either shared (shows the arena) or private (a copy). A
//     buffer becomes private when a lease using it is reclaimed, and the whole buffer is copied.
//   * A private buffer stays private while any live lease of this client uses it through the main
//     mapping (reclaimed or not: a lease that was not reclaimed still holds its pin, so its bytes
//     in the copy equal the arena's). When the last such lease is given back, the library drops
//     the copy (MADV_DONTNEED) and the buffer is shared again.
//   * A new lease never reads a private buffer of the main mapping: the copy may be stale (the
//     server may have reused the buffer for other data). A piece that lands on a private buffer is
//     served from a separate read-only MAP_PRIVATE mapping of just that buffer, owned by the lease
//     (copied on reclaim like the rest, unmapped at give back).
// So a span handed out always shows the bytes of the range it was borrowed for, until the lease
// is given back; after that, reading it is a use after free.
//
// Closing. When the client is destroyed while leases are live, it first makes their pages private
// and gives them back to the server, so they stay readable (the mapping lives until the last
// lease and file are dropped); their reclaimed() is then true and give_back() is local only.
//
// Thread-safety: every member of client may be called from any thread at once, except that
// destruction must not race with the others. A lease or file is used by one thread at a time (it
// may move between threads); different leases and files may be used concurrently. The spans stay
// valid, and their bytes unchanged, until the lease is given back or destroyed.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::loan {

struct client_options {
    // Extents one borrow reply can describe: a borrow covers at most this many cache buffers.
    // 1..4096; it sizes the command's output (24 bytes per extent).
    std::uint32_t max_extents = 512;
    // Fault injection for tests: acknowledge reclaims without making the pages private (the held
    // bytes then change when the server reuses the buffers). Never set it otherwise.
    bool skip_private_copy_for_tests = false;
};

struct client_stats {
    std::uint64_t leases_now = 0;        // leases not given back (reclaimed ones included)
    std::uint64_t borrows = 0;           // non-empty leases received
    std::uint64_t reclaims_seen = 0;     // RECLAIM notes received from the server
    std::uint64_t private_buffers = 0;   // buffers of the main mapping holding a private copy now
    std::uint64_t side_mappings = 0;     // pieces served from their own mapping (ever)
    std::uint64_t early_reclaims = 0;    // RECLAIM notes that overtook their borrow's reply
};

// Local ingest (put; docs/ipc.md, "Local ingest (put)").
struct put_options {
    bool replace = true;  // false: fail with busy when the name exists
};

struct put_result {
    std::uint64_t bytes = 0;  // = the length asked for
    bool created = false;     // true: the name was new; false: an existing file was replaced
};

class lease;
class file;

class client {
public:
    // Connects to a loan server at `endpoint` ("/path" or "@name"), always over its socket (even
    // when the server lives in this process: the arena must arrive as a descriptor), and maps the
    // arena. Errors: not_found (nobody serves the endpoint), peer_gone (the server closed during
    // set-up), unsupported (another protocol version), protocol_error (an impossible map reply),
    // invalid_argument (bad options), io_error (mmap).
    [[nodiscard]] static result<std::unique_ptr<client>> connect(std::string_view endpoint,
                                                                 client_options options = {});

    client(const client&) = delete;
    client& operator=(const client&) = delete;
    // See "Closing" above.
    ~client();

    // Opens `path` beneath the server's root. Errors (from the server): not_found, escapes_root,
    // not_regular_file, invalid_argument (empty or longer than 4096 bytes), full (too many open
    // files), io_error; peer_gone.
    [[nodiscard]] result<file> open(std::string_view path);

    // Borrows [offset, offset + length) of `f`. The lease may be shorter than asked: clamped at the
    // end of the file, at `max_extents` buffers, at the client's allowance on the server and at the
    // size of its cache (loop for more). At the end of the file the lease is empty. Blocks while
    // the server reads misses. Any thread; the borrows of one client run one at a time (a reply
    // may bring a buffer's memfd that the next borrow relies on): threads that borrow in
    // parallel want a client each.
    // Errors: out_of_range (offset past the end), full (allowance or lease count used up: give
    // leases back), no_buffers (every cache buffer is pinned: retry after leases come back),
    // not_found (`f` is closed or belongs to another client), io_error / file_changed (storage),
    // peer_gone, closed (the client is being destroyed), protocol_error (a malformed reply; the
    // lease, if any, is given back).
    [[nodiscard]] result<lease> borrow(const file& f, std::uint64_t offset, std::uint64_t length);

    // Writes `path` beneath the server's root with exactly `length` bytes read from `fd`, and
    // publishes it atomically: readers (borrowers of the old version included) see the old file or
    // the new one, never a torn one. `fd` is a pipe's read end, a connected stream socket or a
    // FIFO; it is sent to the server with the command (SCM_RIGHTS), and the caller keeps it, open
    // and its own. The server reads exactly `length` bytes and never past them, so the stream may
    // carry more afterwards. Blocks until the file is published (durable: file and directory
    // fsynced) or the put failed; meanwhile someone must write the bytes into the other end (not
    // this thread). Destroying the client waits for a put in progress. Any thread.
    // Errors (from the server unless said): unsupported (the server does not accept writes:
    // server_config::writable), full (longer than its max_put_bytes), busy (another put of the same
    // path in progress, or `replace` is false and the file exists), not_found (no such directory),
    // escapes_root, not_regular_file (a directory in the way), invalid_argument (a path of 0 or
    // more than 4096 bytes, or an upload temp name; here: `fd` not open), peer_gone (the stream
    // ended before `length` bytes or stayed silent for the server's put_idle_timeout — or the server
    // is gone: server_gone() tells), no_space, no_buffers, io_error, closed (the client or the
    // server is shutting down). On every error nothing is published and no temp file stays.
    [[nodiscard]] result<put_result> put(std::string_view path, int fd, std::uint64_t length,
                                         put_options options = {});

    [[nodiscard]] client_stats stats() const;
    // True once the server is known to be gone (leases held keep their bytes).
    [[nodiscard]] bool server_gone() const;

    class DATAPUMP_INTERNAL impl;

private:
    explicit client(std::shared_ptr<impl> impl);
    std::shared_ptr<impl> impl_;
};

// An open file on the server. Move-only; dropping it closes the server's handle (leases of it stay
// valid).
class file {
public:
    file() = default;
    file(file&&) noexcept;
    file& operator=(file&&) noexcept;
    file(const file&) = delete;
    file& operator=(const file&) = delete;
    ~file();

    [[nodiscard]] bool empty() const { return impl_ == nullptr; }
    [[nodiscard]] std::uint64_t handle() const { return handle_; }
    // The size when opened.
    [[nodiscard]] std::uint64_t size() const { return size_; }
    // Closes the server's handle now. Errors: peer_gone, not_found. Idempotent once it succeeded.
    result<void> close();

private:
    friend class client;
    file(std::shared_ptr<client::impl> impl, std::uint64_t handle, std::uint64_t size)
        : impl_(std::move(impl)), handle_(handle), size_(size) {}
    std::shared_ptr<client::impl> impl_;
    std::uint64_t handle_ = 0;
    std::uint64_t size_ = 0;
};

// Borrowed bytes of one file: [file_offset(), file_offset() + size()), as read-only pieces in file
// order (one per cache buffer). Move-only; dropping it gives it back.
class lease {
public:
    struct DATAPUMP_INTERNAL record;

    lease() = default;
    lease(lease&&) noexcept;
    lease& operator=(lease&&) noexcept;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease();

    [[nodiscard]] bool empty() const { return size() == 0; }
    [[nodiscard]] std::uint64_t id() const;
    [[nodiscard]] std::uint64_t file_offset() const;
    [[nodiscard]] std::uint64_t size() const;
    // The bytes, in file order. Valid until give_back() or destruction.
    [[nodiscard]] std::span<const std::span<const std::byte>> pieces() const;
    // True once the server reclaimed the lease (the pieces are private copies now). Any thread.
    [[nodiscard]] bool reclaimed() const;

    // Returns the lease: drops private copies nobody else uses, unmaps side mappings, tells the
    // server. Idempotent. Errors: peer_gone (the server is gone; everything local is done anyway),
    // protocol_error.
    result<void> give_back();

private:
    friend class client;
    lease(std::shared_ptr<client::impl> impl, std::shared_ptr<record> rec)
        : impl_(std::move(impl)), rec_(std::move(rec)) {}
    std::shared_ptr<client::impl> impl_;
    std::shared_ptr<record> rec_;
};

}  // namespace datapump::loan
DATAPUMP_API_END
