// File: src/ipc/server/exec_scope.hpp
//
// The exec running on this thread, so that connection::attach_fd knows where the descriptors go
// and connection::take_fds where the command's came from. A scope is opened around each call of
// the exec handler (scoped_exec) on whichever thread runs it (channel, socket, worker, or an
// in-process client's); scopes nest when an exec calls another connection in this process.
//
// Thread-safety: thread-local; each function touches the calling thread's scopes only.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/server.hpp"

#include <vector>

namespace datapump::ipc {

struct exec_scope {
    const connection* owner;
    std::vector<unique_fd> fds;       // attached by the handler: go with the reply
    std::vector<unique_fd> incoming;  // sent by the client: the handler takes them, or they close
    exec_scope* outer;  // an exec of another connection this one runs inside (nested calls)
};

// True when an exec of `c` is running on this thread (at any depth).
bool inside_exec_of(const connection* c);

// Makes its scope the thread's current exec for its lifetime.
struct scoped_exec {
    exec_scope scope;
    explicit scoped_exec(const connection* c, std::vector<unique_fd> incoming = {});
    scoped_exec(const scoped_exec&) = delete;
    scoped_exec& operator=(const scoped_exec&) = delete;
    ~scoped_exec();
};

// connection::attach_fd: `fd` goes with the reply of c's exec running on this thread.
// Errors: invalid_argument outside that exec or past 16 descriptors.
result<void> attach_to_current(const connection* c, unique_fd fd);
// connection::take_fds: the descriptors the client sent with c's exec running on this thread,
// once; none outside it.
std::vector<unique_fd> take_from_current(const connection* c);

}  // namespace datapump::ipc
