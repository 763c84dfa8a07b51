// loan_test_helper ENDPOINT PATH MODE: connects, borrows, says "ready" on stdout, then
//   die   _exit(1)s without giving anything back (a client that crashed)
//   stop  stops itself (SIGSTOP: no thread of it runs, so no reclaim is acknowledged)
// loan_test_helper ENDPOINT PATH put: connects, writes 1000 bytes into a pipe of its own, says
//   "ready", then puts PATH from that pipe with a length of 1 MiB: it blocks until it is killed
//   (only it holds the pipe's write end, so its death ends the stream the server reads).
// Exit status 2 when it could not get that far.
#include "datapump/loan/client.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string_view>
#include <vector>

int main(int argc, char** argv) {
    using namespace datapump;
    if (argc != 4) {
        std::fprintf(stderr, "usage: loan_test_helper ENDPOINT PATH die|stop|put\n");
        return 2;
    }
    const std::string_view mode = argv[3];
    auto c = loan::client::connect(argv[1]);
    if (!c) {
        std::fprintf(stderr, "helper: %s\n", describe(c.error(), argv[1]).c_str());
        return 2;
    }
    if (mode == "put") {
        int p[2] = {-1, -1};
        const std::vector<char> part(1000, 'p');
        if (::pipe2(p, O_CLOEXEC) != 0 || ::write(p[1], part.data(), part.size()) != 1000 ||
            ::write(STDOUT_FILENO, "ready\n", 6) != 6) {
            return 2;
        }
        auto r = (*c)->put(argv[2], p[0], std::uint64_t{1} << 20);
        std::fprintf(stderr, "helper: the put returned: %s\n", r ? "published" : describe(r.error()).c_str());
        return 2;
    }
    auto f = (*c)->open(argv[2]);
    if (!f) {
        std::fprintf(stderr, "helper: %s\n", describe(f.error(), argv[2]).c_str());
        return 2;
    }
    std::vector<loan::lease> held;
    const int count = mode == "die" ? 3 : 1;
    for (int i = 0; i < count; ++i) {
        auto l = (*c)->borrow(*f, static_cast<std::uint64_t>(i) * 65536, 65536);
        if (!l || l->empty()) {
            std::fprintf(stderr, "helper: borrow failed\n");
            return 2;
        }
        held.push_back(std::move(*l));
    }
    if (::write(STDOUT_FILENO, "ready\n", 6) != 6) {
        return 2;
    }
    if (mode == "die") {
        ::_exit(1);
    }
    ::raise(SIGSTOP);
    for (;;) {
        ::pause();
    }
}
