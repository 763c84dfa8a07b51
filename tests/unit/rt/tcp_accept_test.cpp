// rt's TCP accept loop (serve_tcp) at descriptor exhaustion (docs/rt.md, "Across processes and
// machines"): it pauses after a failed accept instead of polling and failing again at once, and
// logs the condition once per interval. Run in a forked child with RLIMIT_NOFILE lowered and filled.
#include "rt_support.hpp"
#include "tcp_support.hpp"

#include "support/fd_exhaustion.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace datapump::rt::testing {
namespace {

TEST(rt_tcp_accept, at_descriptor_exhaustion_the_loop_pauses_instead_of_spinning) {
    const auto figures = datapump::testing::run_at_exhaustion([] {
        datapump::testing::listen_address at;
        auto sys = make_system(keyed_config("rt-accept"));  // serve_tcp needs a key (docs/rt.md)
        if (!sys) {
            return at;
        }
        auto port = sys->serve_tcp("127.0.0.1", 0);
        if (!port) {
            return at;
        }
        auto* addr = reinterpret_cast<sockaddr_in*>(&at.storage);
        addr->sin_family = AF_INET;
        addr->sin_port = htons(*port);
        addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        at.length = sizeof(sockaddr_in);
        at.type = SOCK_STREAM;
        at.keep = std::shared_ptr<system>(std::move(sys));  // never torn down: the child exits full
        return at;
    });
    ASSERT_TRUE(figures.ok) << figures.why;
    // Spinning, the accept thread and the reconnecting clients burn the second; paused 250 ms
    // after each failure, they run a handful of times.
    EXPECT_LT(figures.cpu_seconds, 0.2) << "the process used " << figures.cpu_seconds << " CPU-s in 1 s";
    EXPECT_GE(figures.log_lines, 1U) << "accept never failed (or was never logged)";
    EXPECT_LE(figures.log_lines, 2U) << figures.log_lines << " log lines about accept in 1 s: it logs each failure";
}

}  // namespace
}  // namespace datapump::rt::testing
