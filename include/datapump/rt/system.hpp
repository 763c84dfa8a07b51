// File: datapump/rt/system.hpp
//
// rt::system: the active half of seed 001's API. It owns the ports, the virtual processors (VPs)
// and the buffer pools, admits connections, and upcalls handlers at the instants their QoS asks
// for, earliest deadline first.
//
//   system ──owns──> ports (name -> handler, budget)
//          ──owns──> VPs: one thread each (pinned, real-time priority where permitted), each with
//                    an EDF scheduler over the connections admitted to it (partitioned EDF)
//          ──owns──> connections: a chain of ports, a QoS, a pool of buffer_count buffers
//          ──owns──> the engine loop (the bulletin board: post())
//
// Admission (docs/rt.md): a connection's budget C is the sum of its stages' budgets (declared per
// port, or measured at connect by dry runs). It fits a VP when, with the connections already
// there, Σ C/min(D,T) + B/D ≤ max_density for every connection on it, where B is the longest
// budget among the VP's connections with a later delay bound (nothing preempts an upcall). It
// goes to the VP where it fits with the least room left; nowhere: refused, with the figures.
//
// On a manual clock (tests) the system starts no threads: the test calls run_until(), and every
// release, upcall, reclaim and posted task happens inside that call in a fixed order.
//
// Thread-safety: the system's methods may be called from any thread except from inside an upcall
// (connect/disconnect/close from an upcall would wait for the VP running it). run_until() only on
// a manual clock, from one thread at a time. port and connection handles are move-only; their
// methods may be called from any thread; stats() are monitoring snapshots.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/rt/clock.hpp"
#include "datapump/rt/handler.hpp"
#include "datapump/rt/qos.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::rt {

// Private state defined under src/: declared outside the exported region (the library's
// default, hidden), so that nothing of it is exported.
DATAPUMP_API_END
namespace detail {
struct system_state;
struct port_state;
struct connection_state;
struct remote;
class transports;
}  // namespace detail
DATAPUMP_API_BEGIN

// What the VPs ask the kernel for. Each step down is taken when the one before is refused, and
// said in the log once per VP.
enum class kernel_priority : std::uint8_t {
    deadline,  // SCHED_DEADLINE (the VP is then not pinned: the kernel's admission requires it)
    fifo,      // SCHED_FIFO at fifo_priority
    nice,      // SCHED_OTHER at nice -20
    none,      // as the process was started
};

[[nodiscard]] std::string_view to_string(kernel_priority p);

// Inter-machine links ("tcp@" names and serve_tcp; docs/rt.md "Authenticated TCP links"). Both
// ends hold the same secret key and prove it to each other (an HMAC-SHA256 challenge each way)
// before a port name crosses; a peer without it is closed before it reaches a port or a pool.
// The key authenticates the peer; it does not encrypt nor sign the frames that follow (TLS may
// come later): use it on networks where the path is trusted but the port may be reached by others.
struct tcp_link_config {
    // The shared key: at least 32 bytes (e.g. `openssl rand -hex 32`, whose 64 characters are the
    // key). Either the bytes here, or a file holding them (read once, at create(); one trailing
    // newline dropped; a file others may read is warned about). Neither: this system connects
    // only to, and serves only as, an insecure_no_auth server on loopback.
    std::string key;
    std::string key_file;
    // The whole handshake (challenge, answer, proof, hello, welcome) must be done by then, on
    // both sides: a peer that connects and says nothing is closed after it.
    duration handshake_timeout = std::chrono::seconds(5);
    // Established links: the serving side closes a link it has heard nothing from for this long;
    // the connecting side sends a heartbeat frame after `heartbeat` without a frame (a slow
    // stream has long legitimate silences). idle_timeout must exceed the peers' heartbeat.
    duration idle_timeout = std::chrono::seconds(30);
    duration heartbeat = std::chrono::seconds(10);
};

struct system_config {
    // Virtual processors. 0: one per online CPU.
    unsigned vps = 0;
    // nullptr: the machine's steady clock (threads). A manual clock: no threads, run_until().
    const clock* time = nullptr;
    // Admission: the density each VP may be loaded to (room is left for the system's own work).
    double max_density = 0.9;
    // The shortest delay or jitter bound the VPs can keep (about their wake-up error). Shorter
    // requests are refused.
    duration timing_floor = std::chrono::microseconds(50);
    // VPs sleep until a spin window before an instant, then spin on the clock to it. The window
    // adapts to the machine: each VP measures how late its sleeps end (a decaying maximum) and
    // spins for 1.5 times that plus 5 us, at least spin_window and at most max_spin_window, and
    // never more than a quarter of its typical gap between instants (so that a VP always sleeps
    // most of the time: the kernel throttles real-time threads that never do).
    // max_spin_window == spin_window: a fixed window.
    duration spin_window = std::chrono::microseconds(20);
    duration max_spin_window = std::chrono::microseconds(300);
    // The best the VPs ask for (see kernel_priority) and, for fifo, at which priority.
    kernel_priority priority = kernel_priority::fifo;
    int fifo_priority = 50;
    // Pin VP i to online CPU i mod N.
    bool pin = true;
    // mlock the pools (refused: logged once, the pool is still pre-faulted).
    bool lock_memory = true;
    // The most pool memory all connections together may hold.
    std::size_t max_pool_bytes = std::size_t{1} << 30;
    // Dry runs used to measure a handler without a declared budget, and the margin applied to the
    // longest of them.
    unsigned calibration_runs = 16;
    double calibration_margin = 1.5;
    // Start an engine loop for post() (steady clock only). Without it post() fails.
    bool engine = true;
    // For logs and thread names ("rt-vp0").
    std::string name = "rt";
    // Inter-machine links, both directions (serve_tcp and "tcp@" names).
    tcp_link_config tcp;
};

// The ends of a direct connection: descriptors the engine moves bytes between, without the
// application (nor this process's memory) seeing them. Each end is a regular file with an offset
// or a socket or pipe with offset -1. The descriptors stay the caller's: keep them open until the
// connection finished or was disconnected.
struct direct_endpoints {
    int from = -1;
    std::int64_t from_offset = 0;
    int to = -1;
    std::int64_t to_offset = -1;
    // Bytes to move; 0: until the source's end.
    std::uint64_t length = 0;
};

// What a VP got from the kernel.
struct vp_info {
    unsigned index = 0;
    int cpu = -1;                               // pinned CPU, -1 when not pinned
    kernel_priority priority = kernel_priority::none;
    std::string priority_note;                  // why the better ones were refused (empty: none)
    duration spin_window{0};                    // the VP's spin window now (it adapts)
    duration wake_error{0};                     // its estimate of how late its sleeps end
    double density = 0;                         // admitted density (Σ C / min(D, T))
    std::size_t connections = 0;
};

struct port_options {
    // Execution-time budget of one upcall of this port's handler. 0: measured at connect.
    duration budget{0};
};

// Counters of one connection. Monitoring snapshot (each value relaxed; consistent enough).
struct connection_stats {
    std::uint64_t released = 0;       // buffers the source was upcalled for
    std::uint64_t completed = 0;      // buffers that passed the last stage
    std::uint64_t late = 0;           // completed after their deadline (either policy)
    std::uint64_t dropped = 0;        // skipped for lateness (drop)
    std::uint64_t starved = 0;        // releases skipped: no free buffer (all in the chain or kept);
                                      // a skipped sequence number never reaches the source
    std::uint64_t jitter_misses = 0;  // source upcalls that started later than the jitter bound
    std::uint64_t overruns = 0;       // upcalls that ran longer than their stage's budget
    std::uint64_t reclaims = 0;       // kept buffers taken back past their deadline
    std::uint64_t bytes = 0;          // bytes that passed the last stage
    duration max_start_error{0};      // the latest a source upcall started after its ideal instant
    duration max_response{0};         // the longest from ideal instant to end of the last stage
    std::uint64_t errors = 0;         // direct connections: a move failed (the connection ended)
    std::size_t buffers = 0;          // the pool's buffers (0 for direct connections)
    std::size_t buffers_free = 0;     // of which free now (not in the chain, not kept)

    // Deadline misses: buffers that did not reach the end of the chain by their deadline.
    [[nodiscard]] std::uint64_t misses() const { return late + dropped + starved; }
};

// Where and how serve_tcp listens (the key is the system's: system_config::tcp).
struct tcp_serve_options {
    // Loopback unless told otherwise. "" (or 0.0.0.0, ::): every address; needs a key.
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;  // 0: any free one
    // Authenticated links at once; one more is closed right after accept (its thread never starts).
    std::size_t max_links = 64;
    // Connections still in their handshake at once (each holds a thread for at most
    // handshake_timeout); more are closed right after accept. Separate from max_links so that
    // unauthenticated peers cannot take the links' places.
    std::size_t max_handshakes = 16;
    // Serve without a key: anyone who reaches the port may feed this system's ports. Only on a
    // loopback address (127.0.0.0/8, ::1); a warning says so at start.
    bool insecure_no_auth = false;
};

// The serving side's counters (monitoring; each value relaxed).
struct tcp_serve_stats {
    std::size_t links = 0;               // authenticated links now
    std::size_t handshakes = 0;          // connections in their handshake now
    std::uint64_t accepted = 0;          // connections accepted (within the caps)
    std::uint64_t over_cap = 0;          // closed right after accept: max_links or max_handshakes
    std::uint64_t auth_failures = 0;     // closed for a wrong key, no key or a malformed answer
    std::uint64_t handshake_timeouts = 0;// closed for saying too little before handshake_timeout
    std::uint64_t idle_timeouts = 0;     // established links closed after idle_timeout of silence
};

class system;

// A named endpoint with its handler. Closing it (or destroying the handle) disconnects the
// connection it is in.
class port {
public:
    port() = default;
    port(port&& other) noexcept;
    port& operator=(port&& other) noexcept;
    port(const port&) = delete;
    port& operator=(const port&) = delete;
    ~port();

    [[nodiscard]] explicit operator bool() const { return state_ != nullptr; }
    [[nodiscard]] const std::string& name() const;
    // The declared budget, or the measured one once a connect measured it (0 before).
    [[nodiscard]] duration budget() const;
    void close();

private:
    friend class system;
    port(system* owner, detail::port_state* state) : owner_(owner), state_(state) {}
    system* owner_ = nullptr;
    detail::port_state* state_ = nullptr;
};

// An admitted connection. Destroying the handle disconnects it.
class connection {
public:
    connection() = default;
    connection(connection&& other) noexcept;
    connection& operator=(connection&& other) noexcept;
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection();

    [[nodiscard]] explicit operator bool() const { return state_ != nullptr; }
    [[nodiscard]] std::uint64_t id() const;
    [[nodiscard]] unsigned vp() const;
    // Σ of the stages' budgets, and the density admission charged for it.
    [[nodiscard]] duration budget() const;
    [[nodiscard]] double density() const;
    // The period and delay bound in force (qos.delay 0 becomes one period).
    [[nodiscard]] duration period() const;
    [[nodiscard]] duration delay() const;
    [[nodiscard]] connection_stats stats() const;
    // The source said end_of_stream and its last buffer passed the chain.
    [[nodiscard]] bool finished() const;
    // Steady clock only: waits up to `timeout` for finished(). Returns finished().
    bool wait_finished(duration timeout) const;
    // Stops releasing buffers; buffers in flight are abandoned (not counted as misses). Kept
    // buffers stay valid until their handles are dropped. Waits until no VP runs its upcalls.
    // The handle stays readable: stats(), finished() and the figures keep their last values.
    void disconnect();
    // True until disconnect() (by this handle, or by closing one of its ports).
    [[nodiscard]] bool connected() const;

private:
    friend class system;
    friend struct detail::remote;
    connection(system* owner, std::shared_ptr<detail::connection_state> state)
        : owner_(owner), state_(std::move(state)) {}
    system* owner_ = nullptr;
    std::shared_ptr<detail::connection_state> state_;
};

class system {
public:
    // Starts the VPs (steady clock) and the engine loop. Errors: invalid_argument (a config figure
    // that can never work), and the errors of thread or io_uring set-up.
    [[nodiscard]] static result<std::unique_ptr<system>> create(const system_config& config = {});

    system(const system&) = delete;
    system& operator=(const system&) = delete;
    // Disconnects every connection, stops the VPs and the engine. Port and connection handles may
    // outlive it (not be used concurrently with it): they then only let go of their records.
    ~system();

    // A port named `name` (unique in this system: 1–64 characters of [A-Za-z0-9._-]).
    // Errors: invalid_argument (bad name, empty handler), busy (name taken).
    [[nodiscard]] result<port> open_port(std::string_view name, handler fn, port_options options = {});

    // Connects a chain of two or more ports: the first is the source, the last the sink, each
    // stage upcalled with the buffer the previous returned. Measures the budgets not declared,
    // then admits (see the banner) or refuses with the reason.
    //
    // A name "proc@<endpoint>/<port>" is a port of the process that serves <endpoint> (serve());
    // "tcp@<host>:<port>/<port>" one of the system serving TCP there (serve_tcp()).
    // The chain's tail may be in one such process: the source and the first stages here, the rest
    // there, on one buffer mapped by both (docs/rt.md). The other process admits its stages too;
    // its refusal is this connect's. The connection finishes when every buffer came back from it.
    [[nodiscard]] std::expected<connection, refusal> connect(std::span<const std::string_view> chain,
                                                             const qos& q);
    [[nodiscard]] std::expected<connection, refusal> connect(std::initializer_list<std::string_view> chain,
                                                             const qos& q) {
        return connect(std::span<const std::string_view>(chain.begin(), chain.size()), q);
    }

    // A direct connection (file -> socket, socket -> file, …): at each release the VP posts "move
    // the next qos.buffer_size bytes" to the engine, which moves them with SPLICE through a pipe,
    // in order, one chunk at a time; then the VP upcalls `sync_port`'s handler (when not empty)
    // with a null buffer and the bytes moved, for synchronisation only. At most qos.buffer_count
    // chunks wait for the engine; past that, releases wait (no data is ever skipped: a chunk
    // that finishes after its deadline is counted late). The connection finishes at the source's
    // end or after `length` bytes. Refusals as connect(), plus unsupported on a manual clock (no
    // engine) and invalid_argument for the drop policy (a direct connection never drops data).
    [[nodiscard]] std::expected<connection, refusal> connect_direct(const direct_endpoints& ends,
                                                                    std::string_view sync_port, const qos& q);

    // A timer connection: `port`'s handler alone, upcalled at each of the QoS's instants with a
    // null buffer and length qos.buffer_size (what the instant stands for: e.g. the bytes a paced
    // stream may send). For work the engine does elsewhere on the system's schedule (the daemon's
    // paced streams post "send the next piece" to their loops from it). qos.buffer_count is
    // unused. Refusals as connect().
    [[nodiscard]] std::expected<connection, refusal> connect_timer(std::string_view port, const qos& q);

    // Makes this system's ports reachable from other processes as "proc@<endpoint>/<port>"
    // (<endpoint>: an ipc endpoint, "/path/to/socket" or "@abstract-name"). One per system.
    // Errors: busy (already serving, or a live server answers there), and the ipc server's.
    [[nodiscard]] result<void> serve(std::string_view endpoint);
    // Makes this system's ports reachable from other machines as "tcp@<host>:<port>/<port name>",
    // listening on options.host:options.port (loopback by default). Returns the port bound. Every
    // peer proves the key of system_config::tcp first (see tcp_link_config); without a key,
    // serve_tcp refuses unless options.insecure_no_auth on a loopback address. Bytes cross machines
    // by copy: the serving system reads each frame into a buffer of its own pool and releases it to
    // its handlers at arrival, with its own deadline (arrival + the delay bound). One per system.
    // Errors: busy (already serving over TCP, or the port is taken), invalid_argument (no key, a
    // non-loopback address without one, a cap of 0, an unresolvable address), io_error.
    [[nodiscard]] result<std::uint16_t> serve_tcp(const tcp_serve_options& options);
    // The same on host:port with the other options at their defaults.
    [[nodiscard]] result<std::uint16_t> serve_tcp(std::string_view host, std::uint16_t port);
    // The serving side's counters (all 0 when not serving over TCP).
    [[nodiscard]] tcp_serve_stats tcp_stats() const;

    // The bulletin board: runs `task` on the engine loop (steady clock), or inside run_until
    // (manual clock), in posting order. Handlers post here instead of blocking on I/O.
    // Errors: unsupported (no engine), closed (the system is shutting down).
    [[nodiscard]] result<void> post(std::function<void()> task);

    // Manual clock only: runs every release, upcall, reclaim and posted task due up to `until`,
    // moving the clock to each instant in turn (earliest first; ties: the lowest VP), and leaves
    // the clock at `until` (or later, when a handler advanced it past).
    void run_until(time_point until);

    [[nodiscard]] unsigned vps() const;
    [[nodiscard]] vp_info vp(unsigned index) const;
    [[nodiscard]] const clock& time() const;
    [[nodiscard]] const system_config& config() const;

private:
    friend class port;
    friend class connection;
    friend struct detail::remote;
    explicit system(std::unique_ptr<detail::system_state> state);
    // create's core (src/rt/system.cpp): checks the config, calls make_transports where the TCP
    // settings are checked (it checks them and loads the key: its errors are create's), starts the
    // VPs and the engine. create itself is defined with the transports (src/rt/transport/), so
    // that the core knows them only as detail::transports. Not exported: only create calls it.
    using transports_maker = result<std::unique_ptr<detail::transports>> (*)(const system_config& config);
    [[nodiscard]] DATAPUMP_INTERNAL static result<std::unique_ptr<system>> assemble(
        const system_config& config, transports_maker make_transports);
    void close_port(detail::port_state* p);
    void disconnect(detail::connection_state* c);
    // connect's steps: claim the named ports for c (nullopt: claimed), give them back, fill in the
    // stages' budgets (measuring the undeclared on `scratch`), admit and start c.
    std::optional<refusal> claim_ports(detail::connection_state& c, std::span<const std::string_view> names);
    void release_ports(detail::connection_state& c);
    // Whether the pool has room for q's buffers (checked before they are allocated).
    std::optional<refusal> pool_room(const qos& q);
    // A new connection with `names` claimed and a pool for q's buffers (the ports are given back
    // when that fails).
    std::expected<std::shared_ptr<detail::connection_state>, refusal> claim_with_pool(
        std::span<const std::string_view> names, const qos& q);
    duration budgets(detail::connection_state& c, std::span<std::byte> scratch);
    std::optional<refusal> admit(const std::shared_ptr<detail::connection_state>& c, const qos& q, duration budget,
                                 const std::function<std::optional<refusal>(detail::connection_state&)>& before_start);
    std::unique_ptr<detail::system_state> state_;
};

}  // namespace datapump::rt
DATAPUMP_API_END
