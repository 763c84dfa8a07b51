// rt::system's entry points that belong to its transports (include/datapump/rt/system.hpp
// declares them with the rest): create, which puts a system together with its transports, and
// serve, serve_tcp and tcp_stats. Defined here, above the core, so that the core knows its
// transports only as detail::transports (src/rt/transports.hpp) and links neither ipc nor OpenSSL.
#include "remote.hpp"
#include "tcp_auth.hpp"

#include "datapump/rt/system.hpp"

#include <memory>
#include <string>
#include <utility>

namespace datapump::rt {

namespace {

// Called by the core's create where it checks the TCP settings: its errors are create's.
result<std::unique_ptr<detail::transports>> make_transports(const system_config& config) {
    if (config.tcp.handshake_timeout <= duration(0) || config.tcp.heartbeat <= duration(0) ||
        config.tcp.idle_timeout <= config.tcp.heartbeat) {
        return fail(errc::invalid_argument,
                    "rt: tcp: the handshake timeout and heartbeat must be above 0, the idle timeout above the heartbeat");
    }
    auto key = detail::tcp_key::load(config.tcp.key, config.tcp.key_file);
    if (!key) {
        return std::unexpected(key.error());
    }
    return std::make_unique<detail::remote_state>(std::move(*key));
}

}  // namespace

result<std::unique_ptr<system>> system::create(const system_config& config) {
    return assemble(config, make_transports);
}

result<void> system::serve(std::string_view endpoint) { return detail::remote::serve(*this, endpoint); }

result<std::uint16_t> system::serve_tcp(const tcp_serve_options& options) {
    return detail::remote::serve_tcp(*this, options);
}

result<std::uint16_t> system::serve_tcp(std::string_view host, std::uint16_t port) {
    tcp_serve_options options;
    options.host = std::string(host);
    options.port = port;
    return detail::remote::serve_tcp(*this, options);
}

tcp_serve_stats system::tcp_stats() const { return detail::remote::tcp_stats(*this); }

}  // namespace datapump::rt
