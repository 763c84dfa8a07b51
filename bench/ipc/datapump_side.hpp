// The datapump half of the command-channel benchmark: datapump's ipc::client / ipc::server and
// its loans, measured the way peers.hpp measures the peers, so that ipc_bench.cpp can put them
// side by side. Implemented in datapump_side.cpp, which the ipc developer owns; until it is wired
// the functions return empty samples / 0 and ipc_bench prints "n/a" for every datapump figure.
//
// Measuring rules, same as the peers: the client runs in the calling process pinned to
// client_cpu (scoped_pin), the server in a child from fork_server() (pinned to server_cpu, waited
// for with wait_server()); warmup_count(n) unrecorded rounds come first; busy-poll loops use
// bounded_spin; any failure ends the process through die() / die_errno(). Called from the main
// thread only, with no other threads running (they fork).
#pragma once

#include "peers.hpp"

#include <cstdint>
#include <string>

namespace ipc_bench {

// Round trips of one synchronous command (request and reply) between client and server, one
// sample per round trip in nanoseconds, `iterations` samples. busy_poll: both sides poll the
// channel (compare with atomic_pingpong); otherwise they sleep in the kernel when idle (compare
// with unix_pingpong). Empty when not wired.
[[nodiscard]] latency_samples datapump_sync_latency(int iterations, bool busy_poll);

// 64-byte input commands per second, client to server, pipelined (no reply awaited per command),
// as seen by the server from the first to the last of `commands`. 0 when not wired.
[[nodiscard]] double datapump_async_throughput(std::uint64_t commands);

// Bytes per second of the file at `path` handed from server to client as loans (no copy through
// the kernel); the client checksums every byte with stream_checksum like the bulk peers do. The
// file is warm in the page cache. 0 when not wired.
[[nodiscard]] double datapump_bulk_loans(const std::string& path);

}  // namespace ipc_bench
