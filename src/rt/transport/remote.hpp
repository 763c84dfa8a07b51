// File: src/rt/transport/remote.hpp
//
// Ports in other processes (seed 001: the API is the same whether the ports are in this address
// space or another). A system that serve()s an ipc endpoint makes its ports reachable as
// "proc@<endpoint>/<port>"; a chain whose tail names such ports is split in two:
//
//   process A (connects)                          process B (serves)
//   src -> … -> [out link] ==op_buffer (slot)==>  [fed] -> … -> sink
//        A's pool: a memfd, mapped by both <==note_returned== (B is done with the buffer)
//
// A admits its local stages, B its own (B's admission can refuse: A's connect fails with B's
// reason). The buffer index travels on the channel's shared-memory ring with its futex doorbell
// (the seed's asynchronous software interrupt); the bytes never move. B's VP upcalls its handlers
// with A's buffer mapped at B; a handler at B may keep it (B reclaims it at B). A's buffer stays
// in A's chain until B returns it, so A's end-to-end delay covers B's stages. A dead peer ends
// the link: the channel's life line fails what is in flight (A: errors, the connection ends; B:
// the fed connection is disconnected), never the process.
//
// Thread-safety: the channel's threads call into links and the VPs' inboxes; see each type.
#pragma once

#include "state.hpp"
#include "tcp_auth.hpp"
#include "transports.hpp"

#include "datapump/ipc/client.hpp"
#include "datapump/ipc/server.hpp"
#include "datapump/rt/system.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace datapump::rt::detail {

struct peer_channel;
struct system_state;
struct tcp_server;

// "proc@<endpoint>/<port>" (another process: the endpoint is everything up to the last '/') or
// "tcp@<host>:<port>/<port name>" (another machine).
struct remote_name {
    bool tcp = false;
    std::string endpoint;  // the ipc endpoint, or "host:port"
    std::string port;
};
[[nodiscard]] std::optional<remote_name> parse_remote(std::string_view name);
[[nodiscard]] bool is_remote(std::string_view name);
// The names '\n'-separated, as the wire carries them.
[[nodiscard]] std::string join_names(const std::vector<std::string>& names);

// A link's peer is done with job j of connection c (or failed it): hands it back to c's VP. Any
// thread; nothing happens when c is gone.
void resume_from_link(system_state& st, const std::weak_ptr<connection_state>& c, const job& j, bool failed,
                      const char* peer);

// A system's transports (detail::transports): made by system::create, with the key of
// config.tcp, and owned by the system (system_state::remote) until it goes.
struct remote_state final : transports {
    // Inter-machine links: the shared key of config.tcp, loaded at create (empty: none). First, so
    // that it is wiped last.
    tcp_key key;

    std::unique_ptr<ipc::server_runtime> runtime;  // serving side
    std::unique_ptr<ipc::server> server;
    std::string endpoint;

    std::shared_ptr<tcp_server> tcp;               // serving side, over TCP (remote_tcp.cpp)

    std::mutex mutex;  // guards peers
    std::map<std::string, std::shared_ptr<peer_channel>, std::less<>> peers;  // connecting side

    explicit remote_state(tcp_key k);
    ~remote_state() override;
    remote_state(const remote_state&) = delete;
    remote_state& operator=(const remote_state&) = delete;
    remote_state(remote_state&&) = delete;
    remote_state& operator=(remote_state&&) = delete;

    // detail::transports, the core's calls: each is remote's (below).
    [[nodiscard]] bool is_remote(std::string_view name) const override;
    [[nodiscard]] std::expected<connection, refusal> connect(system& s, std::span<const std::string_view> chain,
                                                             std::size_t first_remote, const qos& q) override;
    void stop_serving(system& s) override;
    void close_peers(system& s) override;
};

// The system's transports (system_state::remote is always a remote_state: system::create makes it).
[[nodiscard]] remote_state& remote_of(system_state& st);
[[nodiscard]] const remote_state& remote_of(const system_state& st);

// The parts of rt::system that inter-process ports need (a friend of system and connection).
struct remote {
    [[nodiscard]] static result<void> serve(system& s, std::string_view endpoint);
    // chain[first_remote..] are remote names (checked here); the rest are local.
    [[nodiscard]] static std::expected<connection, refusal> connect(system& s, std::span<const std::string_view> chain,
                                                                    std::size_t first_remote, const qos& q);
    // Over TCP (remote_tcp.cpp): serves this system's ports (system::serve_tcp) and returns the
    // port bound; connects a chain whose tail is on another machine.
    [[nodiscard]] static result<std::uint16_t> serve_tcp(system& s, const tcp_serve_options& options);
    [[nodiscard]] static tcp_serve_stats tcp_stats(const system& s);
    [[nodiscard]] static std::expected<connection, refusal> connect_tcp(system& s,
                                                                        std::span<const std::string_view> chain,
                                                                        std::size_t first_remote,
                                                                        const remote_name& where,
                                                                        const std::vector<std::string>& names,
                                                                        const qos& q);
    static void stop_tcp(system& s);

    // ~system: stops serving (before the connections are disconnected).
    static void stop_serving(system& s);
    // ~system: closes the channels to other processes (after the connections are disconnected).
    static void close_peers(system& s);

    // The serving side's way into the system's private steps.
    static system_state& state(system& s);
    static std::optional<refusal> claim(system& s, connection_state& c, std::span<const std::string_view> names);
    static void release(system& s, connection_state& c);
    static duration budgets(system& s, connection_state& c, std::span<std::byte> scratch);
    static std::optional<refusal> admit(system& s, const std::shared_ptr<connection_state>& c, const qos& q,
                                        duration budget);
    static void disconnect(system& s, connection_state& c);
    static std::optional<refusal> pool_room_of(system& s, const qos& q);
};

}  // namespace datapump::rt::detail
