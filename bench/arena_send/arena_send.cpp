// The arena's pages and its send path (issue 16, "Cold, 64 x 64 MiB"): what one stream's cold
// bytes cost the sending thread, per way of holding and sending them, in the same run.
//
// Each way reads a file block by block with O_DIRECT into a buffer::arena (256 KiB buffers, used
// round robin as a cold stream does) and sends each block over a TCP loopback connection to a
// reader thread that drains it (recv into a buffer, as curl does):
//
//   send, memfd            today's loan path (send / send_zc: on loopback the kernel copies)
//   send, huge             the same from an arena in transparent huge pages (--huge-pages)
//   sendfile+punch, memfd  the arena sent with sendfile from its memfd; before a buffer is read
//                          into again its pages are punched out of the memfd (fallocate), so that
//                          bytes the kernel still holds never change: the safe way
//   sendfile, memfd        the same without the punch: NOT safe (a recycled buffer changes bytes
//                          still queued on a socket); only the floor of what sendfile could save
//   read only, memfd|huge  the O_DIRECT reads alone (nothing sent)
//
// Per way: the sending thread's CPU (RUSAGE_THREAD) per GiB and MB/s; medians over the rounds,
// the ways interleaved within each round, and ratios to "send, memfd".
//
// Usage: arena_send FILE [--gib N] [--rounds R]   (FILE: a few hundred MiB, read in a loop)
#include "datapump/buffer/arena.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using datapump::buffer::arena;

enum class way { send_memfd, send_huge, sendfile_punch, sendfile_unsafe, read_memfd, read_huge };

const char* name(way w) {
    switch (w) {
        case way::send_memfd: return "send, memfd (today)";
        case way::send_huge: return "send, huge pages";
        case way::sendfile_punch: return "sendfile+punch, memfd";
        case way::sendfile_unsafe: return "sendfile, memfd (unsafe)";
        case way::read_memfd: return "read only, memfd";
        case way::read_huge: return "read only, huge pages";
    }
    return "?";
}

struct figures {
    double cpu_per_gib = 0;
    double mb_per_s = 0;
};

double thread_cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_THREAD, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A connected loopback pair: {sender, receiver}.
std::pair<int, int> loopback_pair() {
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0 || ::listen(listener, 1) != 0) {
        std::perror("listen");
        std::exit(1);
    }
    const int receiver = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(receiver, reinterpret_cast<sockaddr*>(&a), len) != 0) {
        std::perror("connect");
        std::exit(1);
    }
    const int sender = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    ::close(listener);
    return {sender, receiver};
}

figures run(way w, int file, std::uint64_t file_size, std::uint64_t total) {
    constexpr std::size_t block = std::size_t{256} * 1024;
    const bool huge = w == way::send_huge || w == way::read_huge;
    auto made = arena::create({.buffer_size = block, .buffer_count = 64, .huge_pages = huge});
    if (!made) {
        std::fprintf(stderr, "arena: %s\n", made.error().what);
        std::exit(1);
    }
    arena& a = **made;
    const bool sends = w != way::read_memfd && w != way::read_huge;
    auto [tx, rx] = loopback_pair();
    std::thread drain([rx = rx, sends] {
        std::vector<char> sink(block);
        while (sends && ::recv(rx, sink.data(), sink.size(), 0) > 0) {
        }
    });
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_seconds();
    std::uint64_t at = 0;
    for (std::uint64_t done = 0, k = 0; done < total; done += block, ++k) {
        const auto index = static_cast<std::uint32_t>(k % a.count());
        const auto buf = a.data(index);
        if (w == way::sendfile_punch) {
            ::fallocate(a.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(index * block),
                        static_cast<off_t>(block));
        }
        if (::pread(file, buf.data(), block, static_cast<off_t>(at)) != static_cast<ssize_t>(block)) {
            std::perror("pread (O_DIRECT)");
            std::exit(1);
        }
        at = (at + block) % (file_size / block * block);
        for (std::size_t sent = 0; sends && sent < block;) {
            ssize_t n = 0;
            if (w == way::sendfile_punch || w == way::sendfile_unsafe) {
                auto off = static_cast<off_t>(index * block + sent);
                n = ::sendfile(tx, a.fd(), &off, block - sent);
            } else {
                n = ::send(tx, buf.data() + sent, block - sent, MSG_NOSIGNAL);
            }
            if (n <= 0) {
                std::perror("send");
                std::exit(1);
            }
            sent += static_cast<std::size_t>(n);
        }
    }
    const double cpu = thread_cpu_seconds() - c0;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::shutdown(tx, SHUT_WR);
    ::shutdown(rx, SHUT_RD);
    drain.join();
    ::close(tx);
    ::close(rx);
    const double gib = static_cast<double>(total) / static_cast<double>(1ULL << 30);
    return {cpu / gib, static_cast<double>(total) / secs / 1e6};
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"arena pages and send paths: the sending thread's CPU per GiB of cold bytes"};
    std::string path;
    double gib = 2;
    int rounds = 5;
    app.add_option("file", path, "a file of a few hundred MiB, read with O_DIRECT in a loop")->required();
    app.add_option("--gib", gib, "GiB per way and round");
    app.add_option("--rounds", rounds, "rounds (medians are printed)");
    CLI11_PARSE(app, argc, argv);

    const int file = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (file < 0) {
        std::perror(path.c_str());
        return 1;
    }
    const auto size = static_cast<std::uint64_t>(::lseek(file, 0, SEEK_END));
    const auto total = static_cast<std::uint64_t>(gib * static_cast<double>(1ULL << 30)) / (256 * 1024) * (256 * 1024);
    const std::vector<way> ways{way::send_memfd,     way::send_huge,  way::sendfile_punch,
                                way::sendfile_unsafe, way::read_memfd, way::read_huge};
    std::map<way, std::vector<double>> cpu;
    std::map<way, std::vector<double>> rate;
    run(way::send_memfd, file, size, total / 4);  // warm-up: the host's cache, the allocator
    for (int r = 0; r < rounds; ++r) {
        for (std::size_t i = 0; i < ways.size(); ++i) {
            const way w = ways[(i + static_cast<std::size_t>(r)) % ways.size()];  // rotated per round
            const figures f = run(w, file, size, total);
            cpu[w].push_back(f.cpu_per_gib);
            rate[w].push_back(f.mb_per_s);
        }
    }
    const double base_cpu = median(cpu[way::send_memfd]);
    const double base_rate = median(rate[way::send_memfd]);
    std::printf("%.1f GiB per way, %d rounds, medians; ratios to \"send, memfd (today)\"\n", gib, rounds);
    std::printf("%-28s %12s %8s %10s %8s\n", "way", "CPU-s/GiB", "ratio", "MB/s", "ratio");
    for (const way w : ways) {
        const double c = median(cpu[w]);
        const double m = median(rate[w]);
        std::printf("%-28s %12.3f %7.2fx %10.0f %7.2fx\n", name(w), c, c / base_cpu, m, m / base_rate);
    }
    return 0;
}
