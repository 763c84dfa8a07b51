// The IPC server's accept loop at descriptor exhaustion (docs/ipc.md, "The accept loop"): it
// pauses after a failed accept instead of polling and failing again at once, and logs the
// condition once per interval. Run in a forked child with RLIMIT_NOFILE lowered and filled.
#include "datapump/ipc/server.hpp"

#include "support/fd_exhaustion.hpp"

#include <gtest/gtest.h>

#include <sys/un.h>

#include <cstring>
#include <string>

namespace datapump::ipc {
namespace {

TEST(ipc_accept, at_descriptor_exhaustion_the_loop_pauses_instead_of_spinning) {
    const std::string name = "datapump-test-accept-" + std::to_string(::getpid());
    const auto figures = datapump::testing::run_at_exhaustion([&name] {
        datapump::testing::listen_address at;
        auto runtime = server_runtime::init({1});
        if (!runtime) {
            return at;
        }
        server_handlers handlers;
        handlers.exec = [](connection&, std::uint32_t, std::span<const std::byte>, std::span<std::byte>) {
            return exec_result{0, 0};
        };
        auto srv = (*runtime)->create("@" + name, std::move(handlers));
        if (!srv) {
            return at;
        }
        auto* addr = reinterpret_cast<sockaddr_un*>(&at.storage);
        addr->sun_family = AF_UNIX;
        std::memcpy(addr->sun_path + 1, name.data(), name.size());  // abstract: a leading NUL
        at.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
        at.type = SOCK_SEQPACKET;
        server* raw = srv->get();
        at.failures = [raw] { return raw->stats().accept_errors; };
        // The child never tears them down: it exits with its descriptors full.
        at.keep = std::make_shared<std::pair<std::unique_ptr<server_runtime>, std::unique_ptr<server>>>(
            std::move(*runtime), std::move(*srv));
        return at;
    });
    ASSERT_TRUE(figures.ok) << figures.why;
    // Spinning, the accept thread burns the whole second and fails accept() ~10^5 times; paused
    // 250 ms after each failure, it fails a handful of times.
    EXPECT_GE(figures.failures, 1U) << "accept never failed: the test did not exhaust the descriptors";
    EXPECT_LE(figures.failures, 20U) << "accept() failed " << figures.failures << " times in 1 s: it does not pause";
    EXPECT_LT(figures.cpu_seconds, 0.2) << "the process used " << figures.cpu_seconds << " CPU-s in 1 s";
    EXPECT_LE(figures.log_lines, 2U) << figures.log_lines << " log lines about accept in 1 s: it logs each failure";
}

}  // namespace
}  // namespace datapump::ipc
