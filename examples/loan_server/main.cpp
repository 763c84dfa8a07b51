// loan_server ENDPOINT ROOT [--cache-mib N] [--buffer-kib K] [--lease-ms MS] [--grace-ms MS]
//             [--allow-uid UID]... [--allow-gid GID]... [--mode OCTAL]
//
// Who may connect: the server's own uid and root, plus each --allow-uid, plus peers whose primary
// group is an --allow-gid (docs/ipc.md, "Local peers"). A path ENDPOINT's socket file gets --mode
// (default 0600; a group-shared endpoint wants 0660 with --allow-gid).
//
// Serves the files beneath ROOT (posix provider) to local loan clients (see loan_checksum) on
// ENDPOINT ("/path/to/socket" or "@abstract-name") until SIGINT or SIGTERM, then prints its
// counters.
#include <datapump/loan/server.hpp>

#include <pthread.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int usage() {
    std::fprintf(stderr, "usage: loan_server ENDPOINT ROOT [--cache-mib N] [--buffer-kib K] [--lease-ms MS] "
                         "[--grace-ms MS] [--allow-uid UID]... [--allow-gid GID]... [--mode OCTAL]\n");
    return 2;
}

bool parse_number(const char* text, unsigned long& out) {
    char* end = nullptr;
    out = std::strtoul(text, &end, 10);
    return end != text && *end == '\0' && out > 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace datapump;
    if (argc < 3) {
        return usage();
    }
    loan::server_config cfg;
    cfg.endpoint = argv[1];
    cfg.root = argv[2];
    unsigned long cache_mib = 64;
    unsigned long buffer_kib = 256;
    for (int i = 3; i + 1 < argc; i += 2) {
        unsigned long v = 0;
        char* end = nullptr;
        if (std::strcmp(argv[i], "--mode") == 0) {
            v = std::strtoul(argv[i + 1], &end, 8);
            if (end == argv[i + 1] || *end != '\0' || v > 0777) {
                return usage();
            }
            cfg.ipc.endpoint_mode = static_cast<mode_t>(v);
            continue;
        }
        if (std::strcmp(argv[i], "--allow-uid") == 0 || std::strcmp(argv[i], "--allow-gid") == 0) {
            v = std::strtoul(argv[i + 1], &end, 10);  // 0 is a valid id
            if (end == argv[i + 1] || *end != '\0') {
                return usage();
            }
            if (argv[i][8] == 'u') {
                cfg.ipc.peers.uids.push_back(static_cast<uid_t>(v));
            } else {
                cfg.ipc.peers.gids.push_back(static_cast<gid_t>(v));
            }
            continue;
        }
        if (!parse_number(argv[i + 1], v)) {
            return usage();
        }
        if (std::strcmp(argv[i], "--cache-mib") == 0) {
            cache_mib = v;
        } else if (std::strcmp(argv[i], "--buffer-kib") == 0) {
            buffer_kib = v;
        } else if (std::strcmp(argv[i], "--lease-ms") == 0) {
            cfg.lease_time = std::chrono::milliseconds(v);
        } else if (std::strcmp(argv[i], "--grace-ms") == 0) {
            cfg.reclaim_grace = std::chrono::milliseconds(v);
        } else {
            return usage();
        }
    }
    if (argc % 2 == 0) {
        return usage();  // an option without its value
    }
    cfg.cache.buffers.buffer_size = std::size_t{buffer_kib} * 1024;
    cfg.cache.buffers.buffer_count = std::max<std::size_t>(2, std::size_t{cache_mib} * 1024 / buffer_kib);

    // Block the signals before any thread exists, so every thread inherits the mask and only
    // sigwait below receives them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    auto srv = loan::server::create(cfg);
    if (!srv) {
        std::fprintf(stderr, "loan_server: %s\n", describe(srv.error(), cfg.endpoint).c_str());
        return 1;
    }
    std::printf("loan_server: serving %s on %s (%lu MiB cache in %lu KiB buffers, leases of %lld ms)\n",
                cfg.root.c_str(), cfg.endpoint.c_str(), cache_mib, buffer_kib,
                static_cast<long long>(cfg.lease_time.count()));
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    const auto s = (*srv)->stats();
    srv->reset();
    std::printf("loan_server: %s; %llu leases lent, %llu given back, %llu reclaimed, %llu stuck clients\n",
                sig == SIGINT ? "interrupted" : "terminated", static_cast<unsigned long long>(s.borrows),
                static_cast<unsigned long long>(s.give_backs), static_cast<unsigned long long>(s.reclaims),
                static_cast<unsigned long long>(s.stuck_clients));
    return 0;
}
