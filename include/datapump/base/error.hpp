// File: datapump/base/error.hpp
//
// The one error type of the data path. No exceptions on the data path: functions that can fail
// return `result<T>` (std::expected<T, error>). An error is small and trivially copyable so that
// building one never allocates: `what` points at a string literal naming the operation that
// failed, `sys` carries the errno where a system call failed. Callers that show an error to a user
// add what it failed on (a path, a key) with `describe`.
//
// Thread-safety: plain values.
#pragma once

#include <cerrno>
#include <cstdint>
#include "datapump/base/expected.hpp"
#include "datapump/base/export.hpp"
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump {

enum class errc : std::uint8_t {
    would_block,       // fast path could not complete without blocking; retry on the slow path
    not_found,         // no such file, key, provider or entry
    not_regular_file,  // a directory, device, socket or fifo where a regular file is needed
    out_of_range,      // offset or length past the end of the file
    escapes_root,      // a path that resolves outside the provider's root
    no_buffers,        // every cache buffer is pinned; return loans and retry
    io_error,          // a read or write failed; `sys` says how
    file_changed,      // the file shrank, grew or vanished under the operation
    writer_failed,     // the writer of a load-and-play file gave up
    busy,              // in use (terminating a provider with open files, a held range lock)
    invalid_argument,  // the caller passed something that can never work
    unsupported,       // the provider or kernel lacks the operation
    closed,            // the object was shut down
    full,              // a bounded queue or table is full
    peer_gone,         // the other end of a channel died or went away
    protocol_error,    // the other end of a channel broke the protocol (garbage in shared memory)
    no_space,          // the file system is full (ENOSPC) or the quota is spent (EDQUOT)
};

struct error {
    errc code;
    int sys = 0;                   // errno of the failed system call, 0 when none
    const char* what = "";         // static string: the operation that failed
};

template <class T>
using result = std::expected<T, error>;

[[nodiscard]] inline std::unexpected<error> fail(errc code, const char* what, int sys = 0) {
    return std::unexpected(error{code, sys, what});
}

// Fails with io_error (or a more specific code for well-known errnos) from errno.
[[nodiscard]] std::unexpected<error> fail_errno(const char* what, int sys = errno);

[[nodiscard]] std::string_view to_string(errc code);

// The text of an errno value, like strerror but safe from any thread.
[[nodiscard]] const char* errno_text(int sys);

// "what: code (strerror)" plus, when `subject` is not empty, " on <subject>".
[[nodiscard]] std::string describe(const error& e, std::string_view subject = {});

}  // namespace datapump
DATAPUMP_API_END
