// File: datapump/stream/client_limits.hpp
//
// Per-client-address limits (docs/daemon.md, "Limits"): how many connections, how many live
// streams and how much paced rate one client address may hold at once, as HAProxy's per-source
// stick-table limits (conn_cur, and a rate) do. The daemon counts a connection from accept to
// close and a stream from its admission to its end; an address over a limit is refused.
//
//   client_limits (one per server) ──counts──> entry per address {connections, streams, rate}
//   connection_slot / stream_slot (move-only) ──give back their share when dropped──> the entry
//
// An address is kept as 16 IPv6 bytes; IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so a client
// seen on an IPv4 listener and on a dual-stack one is one client. An entry goes when its counts
// are all 0, so the table holds only the addresses that hold something.
//
// Thread-safety: every member, and the slots, from any thread: one mutex guards the table. It is
// taken at accept, close, stream start and stream end only, never on the data path.
#pragma once

#include "datapump/base/expected.hpp"  // <expected>, also for clang 16 with libstdc++ 12
#include "datapump/base/export.hpp"

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

DATAPUMP_API_BEGIN

namespace datapump::stream {

struct client_address {
    std::array<std::uint8_t, 16> bytes{};

    // From an AF_INET or AF_INET6 socket address; anything else (a unix socket) is all zeros.
    [[nodiscard]] static client_address from(const sockaddr* address);
    // "a.b.c.d" for IPv4 (mapped or not), else the IPv6 text.
    [[nodiscard]] std::string text() const;
    bool operator==(const client_address&) const = default;
};

struct client_address_hash {
    std::size_t operator()(const client_address& a) const noexcept;
};

// 0 in any field: no limit of that kind.
struct client_limits_config {
    std::uint64_t max_connections = 0;  // open connections per address
    std::uint64_t max_streams = 0;      // live streams (paced and unpaced) per address
    std::uint64_t max_rate = 0;         // sum of the paced rates of an address's streams, B/s
};

// Why a stream or connection was refused: which limit, and what the address holds.
struct client_refusal {
    enum class kind : std::uint8_t { connections, streams, rate };
    kind limit = kind::connections;
    std::uint64_t held = 0;   // connections, streams or B/s the address holds now
    std::uint64_t asked = 0;  // the rate asked (rate); 1 otherwise
    std::uint64_t max = 0;    // the limit
};

class client_limits;

// One connection's share of its address's count. Empty: counts nothing.
class connection_slot {
public:
    connection_slot() = default;
    connection_slot(connection_slot&& other) noexcept;
    connection_slot& operator=(connection_slot&& other) noexcept;
    connection_slot(const connection_slot&) = delete;
    connection_slot& operator=(const connection_slot&) = delete;
    ~connection_slot() { release(); }
    void release();
    [[nodiscard]] explicit operator bool() const { return owner_ != nullptr; }

private:
    friend class client_limits;
    connection_slot(client_limits* owner, const client_address& a) : owner_(owner), address_(a) {}
    client_limits* owner_ = nullptr;
    client_address address_;
};

// One stream's share (a stream, and its paced rate) of its address's counts. Empty: nothing.
class stream_slot {
public:
    stream_slot() = default;
    stream_slot(stream_slot&& other) noexcept;
    stream_slot& operator=(stream_slot&& other) noexcept;
    stream_slot(const stream_slot&) = delete;
    stream_slot& operator=(const stream_slot&) = delete;
    ~stream_slot() { release(); }
    void release();
    [[nodiscard]] explicit operator bool() const { return owner_ != nullptr; }

private:
    friend class client_limits;
    stream_slot(client_limits* owner, const client_address& a, std::uint64_t rate)
        : owner_(owner), address_(a), rate_(rate) {}
    client_limits* owner_ = nullptr;
    client_address address_;
    std::uint64_t rate_ = 0;
};

class client_limits {
public:
    explicit client_limits(client_limits_config config) : config_(config) {}
    client_limits(const client_limits&) = delete;
    client_limits& operator=(const client_limits&) = delete;

    // Counts one more connection of `a`, unless it holds max_connections already (counted refusal).
    [[nodiscard]] std::expected<connection_slot, client_refusal> connect(const client_address& a);
    // Counts one more stream of `a` at `rate` (0: unpaced), unless it holds max_streams already or
    // its paced rates plus `rate` would pass max_rate (counted refusal).
    [[nodiscard]] std::expected<stream_slot, client_refusal> start_stream(const client_address& a,
                                                                         std::uint64_t rate);

    struct counts {
        std::uint64_t connections = 0;
        std::uint64_t streams = 0;
        std::uint64_t rate = 0;
    };
    [[nodiscard]] counts of(const client_address& a) const;
    [[nodiscard]] std::size_t addresses() const;  // addresses holding something
    [[nodiscard]] std::uint64_t refusals(client_refusal::kind k) const {
        return refusals_[static_cast<std::size_t>(k)].load(std::memory_order_relaxed);
    }
    [[nodiscard]] client_limits_config config() const;
    // conf: a reload's new limits, for the connections and streams counted from now on; what
    // an address holds already stays held. Any thread.
    void set_config(client_limits_config config);

private:
    friend class connection_slot;
    friend class stream_slot;
    void end_connection(const client_address& a);
    void end_stream(const client_address& a, std::uint64_t rate);
    void drop_if_empty(std::unordered_map<client_address, counts, client_address_hash>::iterator it);
    std::unexpected<client_refusal> refuse(client_refusal r);

    client_limits_config config_;
    mutable std::mutex mutex_;
    std::unordered_map<client_address, counts, client_address_hash> table_;  // guarded by mutex_
    std::array<std::atomic<std::uint64_t>, 3> refusals_{};
};

// "too many connections from 127.0.0.2 (256 open; the limit is 256 per address)" and the like.
[[nodiscard]] std::string describe(const client_refusal& r, const client_address& a);

}  // namespace datapump::stream
DATAPUMP_API_END
