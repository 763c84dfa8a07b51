// Direct connections: the engine moves the bytes (file -> socket, socket -> file) with splice;
// the sync handler sees only null buffers and byte counts. Correctness only: the rates are high
// and the bounds generous (timing figures belong in bench/rt).
#include "datapump/rt/system.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace rt = datapump::rt;

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
    std::vector<std::byte> out(n);
    std::mt19937 gen(seed);
    for (auto& b : out) {
        b = static_cast<std::byte>(gen() & 0xFF);
    }
    return out;
}

// One VP, no real-time priority, not pinned (these tests check bytes, not timing).
rt::system_config config_on(const rt::clock* time, const char* name) {
    rt::system_config config;
    config.vps = 1;
    config.time = time;
    config.priority = rt::kernel_priority::none;
    config.pin = false;
    config.calibration_runs = 4;
    config.name = name;
    return config;
}

class RtDirect : public ::testing::Test {
protected:
    void SetUp() override {
        std::signal(SIGPIPE, SIG_IGN);  // a sink socket whose peer closed: EPIPE, not death
        dir_ = std::filesystem::temp_directory_path() /
               ("dp-rt-direct-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
        auto sys = rt::system::create(config_on(nullptr, "rt-test"));
        ASSERT_TRUE(sys.has_value());
        system_ = std::move(*sys);
    }
    void TearDown() override {
        system_.reset();
        std::filesystem::remove_all(dir_);
    }

    int write_file(const std::string& name, const std::vector<std::byte>& bytes) {
        std::string path = (dir_ / name).string();
        int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
        return fd;
    }

    // A sync port that records what each upcall saw.
    struct sync_record {
        std::mutex mutex;
        std::size_t upcalls = 0;
        std::size_t non_null = 0;
        std::size_t bytes = 0;
        std::vector<std::uint64_t> sequences;
    };
    rt::port sync_port(const std::string& name, sync_record& rec) {
        auto p = system_->open_port(
            name,
            [&rec](rt::upcall& up) {
                if (up.calibrating()) {
                    return;
                }
                std::lock_guard lock(rec.mutex);
                ++rec.upcalls;
                if (up.data().data() != nullptr || !up.data().empty()) {
                    ++rec.non_null;
                }
                rec.bytes += up.length();
                rec.sequences.push_back(up.sequence());
            },
            rt::port_options{.budget = 20us});
        EXPECT_TRUE(p.has_value());
        return p ? std::move(*p) : rt::port{};
    }

    static rt::qos fast(std::size_t chunk, std::size_t count = 4) {
        return rt::qos{.rate = 2000,
                       .jitter = 0ns,
                       .delay = 0ns,
                       .buffer_size = chunk,
                       .buffer_count = count,
                       .on_late = rt::late_policy::deliver_late};
    }

    std::filesystem::path dir_;
    std::unique_ptr<rt::system> system_;
};

// Reads a stream socket to its end on a thread.
struct drain {
    explicit drain(int fd) : fd_(fd), thread_([this] { run(); }) {}
    ~drain() { join(); }
    void join() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    void run() {
        std::byte buf[65536];
        while (true) {
            ssize_t n = ::read(fd_, buf, sizeof buf);
            if (n <= 0) {
                break;
            }
            got.insert(got.end(), buf, buf + n);
        }
    }
    int fd_;
    std::vector<std::byte> got;
    std::thread thread_;
};

TEST_F(RtDirect, file_to_socket_is_byte_exact_and_the_handler_sees_only_null_buffers) {
    const std::size_t size = (1 << 20) + 12345;
    const std::size_t chunk = 64 << 10;
    auto bytes = random_bytes(size, 1);
    int file = write_file("src", bytes);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    drain reader(sv[1]);
    sync_record rec;
    rt::port sync = sync_port("sync", rec);
    auto c = system_->connect_direct(rt::direct_endpoints{.from = file, .from_offset = 0, .to = sv[0],
                                                          .to_offset = -1, .length = 0},
                                     "sync", fast(chunk));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    auto stats = c->stats();
    c->disconnect();
    ::close(sv[0]);
    reader.join();
    EXPECT_EQ(reader.got, bytes);
    std::size_t chunks = (size + chunk - 1) / chunk;
    std::lock_guard lock(rec.mutex);
    EXPECT_EQ(rec.upcalls, chunks);
    EXPECT_EQ(rec.non_null, 0U);
    EXPECT_EQ(rec.bytes, size);
    for (std::size_t i = 0; i < rec.sequences.size(); ++i) {
        EXPECT_EQ(rec.sequences[i], i);
    }
    EXPECT_EQ(stats.completed, chunks);
    EXPECT_EQ(stats.bytes, size);
    EXPECT_EQ(stats.errors, 0U);
    EXPECT_EQ(stats.dropped, 0U);
    EXPECT_EQ(stats.starved, 0U);
    ::close(sv[1]);
    ::close(file);
}

TEST_F(RtDirect, offset_and_length_select_a_slice_over_tcp_loopback) {
    const std::size_t size = 700000;
    auto bytes = random_bytes(size, 2);
    int file = write_file("src", bytes);
    int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    int server = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(server, 0);
    drain reader(client);
    auto c = system_->connect_direct(rt::direct_endpoints{.from = file, .from_offset = 1000, .to = server,
                                                          .to_offset = -1, .length = 200001},
                                     "", fast(30000));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    EXPECT_EQ(c->stats().bytes, 200001U);
    c->disconnect();
    ::close(server);
    reader.join();
    std::vector<std::byte> want(bytes.begin() + 1000, bytes.begin() + 1000 + 200001);
    EXPECT_EQ(reader.got, want);
    ::close(client);
    ::close(listener);
    ::close(file);
}

TEST_F(RtDirect, socket_to_file_writes_what_the_peer_sent_until_its_end) {
    const std::size_t size = 500000;
    auto bytes = random_bytes(size, 3);
    std::string path = (dir_ / "dst").string();
    int file = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(file, 0);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::thread writer([&] {
        std::size_t off = 0;
        while (off < size) {
            ssize_t n = ::write(sv[1], bytes.data() + off, std::min<std::size_t>(size - off, 7777));
            if (n <= 0) {
                break;
            }
            off += static_cast<std::size_t>(n);
        }
        ::shutdown(sv[1], SHUT_WR);
    });
    sync_record rec;
    rt::port sync = sync_port("sync", rec);
    auto c = system_->connect_direct(rt::direct_endpoints{.from = sv[0], .from_offset = -1, .to = file,
                                                          .to_offset = 0, .length = 0},
                                     "sync", fast(64 << 10));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    writer.join();
    c->disconnect();
    std::vector<std::byte> got(size + 1);
    ASSERT_EQ(::pread(file, got.data(), got.size(), 0), static_cast<ssize_t>(size));
    got.resize(size);
    EXPECT_EQ(got, bytes);
    std::lock_guard lock(rec.mutex);
    EXPECT_EQ(rec.non_null, 0U);
    EXPECT_EQ(rec.bytes, size);
    ::close(sv[0]);
    ::close(sv[1]);
    ::close(file);
}

TEST_F(RtDirect, a_sink_that_goes_away_ends_the_connection_with_an_error) {
    auto bytes = random_bytes(4 << 20, 4);
    int file = write_file("src", bytes);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ::close(sv[1]);
    auto c = system_->connect_direct(rt::direct_endpoints{.from = file, .from_offset = 0, .to = sv[0],
                                                          .to_offset = -1, .length = 0},
                                     "", fast(64 << 10));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    EXPECT_EQ(c->stats().errors, 1U);
    EXPECT_EQ(c->stats().bytes, 0U);
    c->disconnect();
    ::close(sv[0]);
    ::close(file);
}

TEST_F(RtDirect, disconnect_stops_the_engine_and_the_upcalls) {
    auto bytes = random_bytes(8 << 20, 5);
    int file = write_file("src", bytes);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    drain reader(sv[1]);
    sync_record rec;
    rt::port sync = sync_port("sync", rec);
    // 100 chunks of 4 KiB per second: 8 MiB would take 20 s; it is disconnected long before.
    rt::qos slow = fast(4096);
    slow.rate = 100;
    auto c = system_->connect_direct(rt::direct_endpoints{.from = file, .from_offset = 0, .to = sv[0],
                                                          .to_offset = -1, .length = 0},
                                     "sync", slow);
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    while (c->stats().completed < 3) {
        std::this_thread::sleep_for(1ms);
    }
    c->disconnect();
    std::size_t seen = 0;
    {
        std::lock_guard lock(rec.mutex);
        seen = rec.upcalls;
    }
    std::this_thread::sleep_for(50ms);  // five periods: no upcall may come after disconnect returned
    {
        std::lock_guard lock(rec.mutex);
        EXPECT_EQ(rec.upcalls, seen);
    }
    EXPECT_FALSE(c->finished());
    ::close(sv[0]);
    reader.join();
    EXPECT_LT(reader.got.size(), bytes.size());
    EXPECT_TRUE(std::equal(reader.got.begin(), reader.got.end(), bytes.begin()));
    // The port is free again.
    auto again = system_->connect_direct(rt::direct_endpoints{.from = file, .from_offset = 0, .to = sv[1],
                                                              .to_offset = -1, .length = 10},
                                         "sync", slow);
    EXPECT_TRUE(again.has_value());
    again->disconnect();
    ::close(sv[1]);
    ::close(file);
}

TEST_F(RtDirect, refusals_say_why) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    auto bytes = random_bytes(100, 6);
    int file = write_file("src", bytes);
    rt::direct_endpoints ends{.from = file, .from_offset = 0, .to = sv[0], .to_offset = -1, .length = 0};

    rt::qos drop = fast(4096);
    drop.on_late = rt::late_policy::drop;
    auto r1 = system_->connect_direct(ends, "", drop);
    ASSERT_FALSE(r1.has_value());
    EXPECT_EQ(r1.error().code, datapump::errc::invalid_argument);
    EXPECT_NE(r1.error().reason.find("never drops"), std::string::npos);

    auto r2 = system_->connect_direct(ends, "nobody", fast(4096));
    ASSERT_FALSE(r2.has_value());
    EXPECT_EQ(r2.error().code, datapump::errc::not_found);

    rt::direct_endpoints bad = ends;
    bad.from_offset = -1;  // a regular file needs an offset
    auto r3 = system_->connect_direct(bad, "", fast(4096));
    ASSERT_FALSE(r3.has_value());
    EXPECT_EQ(r3.error().code, datapump::errc::invalid_argument);

    bad = ends;
    bad.to = 1 << 20;  // not open
    auto r4 = system_->connect_direct(bad, "", fast(4096));
    ASSERT_FALSE(r4.has_value());
    EXPECT_EQ(r4.error().code, datapump::errc::invalid_argument);

    rt::manual_clock manual;
    auto sys = rt::system::create(config_on(&manual, "rt-manual"));
    ASSERT_TRUE(sys.has_value());
    auto r5 = (*sys)->connect_direct(ends, "", fast(4096));
    ASSERT_FALSE(r5.has_value());
    EXPECT_EQ(r5.error().code, datapump::errc::unsupported);
    ::close(sv[0]);
    ::close(sv[1]);
    ::close(file);
}

}  // namespace
