// loan_test_helper ENDPOINT PATH MODE: connects, borrows, says "ready" on stdout, then
//   die   _exit(1)s without giving anything back (a client that crashed)
//   stop  stops itself (SIGSTOP: no thread of it runs, so no reclaim is acknowledged)
// loan_test_helper ENDPOINT PATH put: connects, writes 1000 bytes into a pipe of its own, says
//   "ready", then puts PATH from that pipe with a length of 1 MiB: it blocks until it is killed
//   (only it holds the pipe's write end, so its death ends the stream the server reads).
// loan_test_helper ENDPOINT PATH scan: connects, borrows all of PATH, checks that scanning its own
//   memory finds PATH's marker (scan_a_marker: the scanner works), gives the lease back, says
//   "ready", waits for SIGUSR1, then reads every byte it can reach through the server's memfds —
//   every mapping of one and every descriptor of one it holds — and looks for scan_b_marker (the
//   text of a file it never opened). Exit 0: not found; 3: found; 4: the scanner found nothing
//   even before (it would prove nothing).
// Exit status 2 when it could not get that far.
#include "datapump/loan/client.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::string_view scan_a_marker = "file-A-bytes";
constexpr std::string_view scan_b_marker = "SECRET-of-B!";

bool contains(const std::byte* p, std::size_t n, std::string_view what) {
    return std::string_view(reinterpret_cast<const char*>(p), n).find(what) != std::string_view::npos;
}

bool is_server_memfd(const std::string& name) { return name.find("/memfd:datapump-arena") == 0; }

// Every readable mapping of a memfd of the server's arena, read where it is mapped.
bool mappings_contain(std::string_view what) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
        std::istringstream in(line);
        std::string range, perms, offset, dev, inode, name;
        in >> range >> perms >> offset >> dev >> inode;
        std::getline(in >> std::ws, name);
        if (!is_server_memfd(name) || perms[0] != 'r') {
            continue;
        }
        const auto dash = range.find('-');
        const auto from = std::stoull(range.substr(0, dash), nullptr, 16);
        const auto to = std::stoull(range.substr(dash + 1), nullptr, 16);
        if (contains(reinterpret_cast<const std::byte*>(from), to - from, what)) {
            return true;
        }
    }
    return false;
}

// Every descriptor of a memfd of the server's arena, mapped afresh and read whole.
bool descriptors_contain(std::string_view what) {
    DIR* d = ::opendir("/proc/self/fd");
    bool found = false;
    while (dirent* e = ::readdir(d)) {
        const std::string link = std::string("/proc/self/fd/") + e->d_name;
        char target[256] = {};
        if (::readlink(link.c_str(), target, sizeof(target) - 1) <= 0 || !is_server_memfd(target)) {
            continue;
        }
        const int fd = std::atoi(e->d_name);
        struct stat st {};
        if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
            continue;
        }
        void* m = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            continue;
        }
        found = found || contains(static_cast<const std::byte*>(m), static_cast<std::size_t>(st.st_size), what);
        ::munmap(m, static_cast<std::size_t>(st.st_size));
    }
    ::closedir(d);
    return found;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace datapump;
    if (argc != 4) {
        std::fprintf(stderr, "usage: loan_test_helper ENDPOINT PATH die|stop|put|scan\n");
        return 2;
    }
    const std::string_view mode = argv[3];
    // Blocked before the client's threads exist, so that all of them inherit the mask and only
    // sigwait (scan) receives the test's SIGUSR1.
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
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
    if (mode == "scan") {
        {
            std::vector<loan::lease> all;
            for (std::uint64_t at = 0; at < f->size();) {
                auto l = (*c)->borrow(*f, at, f->size() - at);
                if (!l || l->empty()) {
                    std::fprintf(stderr, "helper: borrow failed\n");
                    return 2;
                }
                at += l->size();
                all.push_back(std::move(*l));
            }
            if (!mappings_contain(scan_a_marker)) {
                std::fprintf(stderr, "helper: the scanner does not see the file it borrowed\n");
                return 4;
            }
        }  // given back
        if (::write(STDOUT_FILENO, "ready\n", 6) != 6) {
            return 2;
        }
        int sig = 0;
        ::sigwait(&usr1, &sig);
        const bool in_maps = mappings_contain(scan_b_marker);
        const bool in_fds = descriptors_contain(scan_b_marker);
        std::fprintf(stderr, "helper: B's bytes %s in my mappings, %s through my descriptors\n",
                     in_maps ? "FOUND" : "not found", in_fds ? "FOUND" : "not found");
        return in_maps || in_fds ? 3 : 0;
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
