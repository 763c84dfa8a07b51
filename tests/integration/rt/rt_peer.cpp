// The serving process of rt_process_test: an rt::system that serves an ipc endpoint with ports
//   sink    appends every buffer's bytes to <out-file>
//   flip    inverts every byte in place (the next stage sees it: one buffer, no copy)
//   greedy  declares an 80 ms budget (admission refuses it at any useful rate)
// Usage: rt_peer <endpoint> <out-file>. Prints "ready" once serving; ends cleanly on SIGTERM.
#include "datapump/rt/system.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

namespace rt = datapump::rt;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: rt_peer <endpoint> <out-file>\n");
        return 2;
    }
    // SIGTERM is taken by sigwait below, in this thread, before any thread exists to inherit it.
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, nullptr);

    int out = ::open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        std::perror("open");
        return 1;
    }
    rt::system_config config;
    config.vps = 1;
    config.name = "peer";
    auto sys = rt::system::create(config);
    if (!sys) {
        std::fprintf(stderr, "system: %s\n", datapump::describe(sys.error()).c_str());
        return 1;
    }
    auto sink = (*sys)->open_port(
        "sink",
        [out](rt::upcall& up) {
            if (up.calibrating()) {
                return;
            }
            std::size_t done = 0;
            while (done < up.length()) {
                ssize_t n = ::write(out, up.data().data() + done, up.length() - done);
                if (n <= 0) {
                    std::abort();  // the test's disk is gone: fail loudly
                }
                done += static_cast<std::size_t>(n);
            }
        },
        rt::port_options{.budget = 500us});
    auto flip = (*sys)->open_port(
        "flip",
        [](rt::upcall& up) {
            for (std::size_t i = 0; i < up.length(); ++i) {
                up.data()[i] = ~up.data()[i];
            }
        },
        rt::port_options{.budget = 200us});
    auto greedy = (*sys)->open_port("greedy", [](rt::upcall&) {}, rt::port_options{.budget = 80ms});
    if (!sink || !flip || !greedy) {
        std::fprintf(stderr, "ports refused\n");
        return 1;
    }
    if (auto served = (*sys)->serve(argv[1]); !served) {
        std::fprintf(stderr, "serve: %s\n", datapump::describe(served.error()).c_str());
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    int sig = 0;
    sigwait(&term, &sig);
    sink->close();
    flip->close();
    greedy->close();
    sys->reset();
    ::close(out);
    return 0;
}
