// Inter-process rt connections: this process's source, the sink in an rt_peer process (spawned:
// this process has threads, so no fork). The bytes travel in this process's pool, mapped by both;
// only buffer numbers cross the channel. Checks are byte-exact; the one timing check is a wide
// band around the requested rate (a release never comes before its instant, so the lower bound
// is firm; the upper bound only catches a connection that ignores its rate).
#include "datapump/rt/system.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <thread>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace {

using namespace std::chrono_literals;
namespace rt = datapump::rt;

class peer_process {
public:
    peer_process(const std::string& endpoint, const std::string& out_file) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
            ADD_FAILURE() << "pipe2";
            return;
        }
        out_ = p[0];
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, p[1], STDOUT_FILENO);
        std::string path = RT_PEER_PATH;
        std::vector<std::string> args{path, endpoint, out_file};
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        int rc = ::posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(p[1]);
        if (rc != 0) {
            pid_ = -1;
            ADD_FAILURE() << "posix_spawn: " << std::strerror(rc);
        }
    }
    peer_process(const peer_process&) = delete;
    peer_process& operator=(const peer_process&) = delete;
    ~peer_process() {
        kill(SIGKILL);
        ::close(out_);
    }

    // Waits (bounded) for the peer's "ready" line.
    bool ready() {
        std::string got;
        auto until = std::chrono::steady_clock::now() + 20s;
        while (got.find("ready\n") == std::string::npos) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            pollfd pfd{out_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
                return false;
            }
            char buf[256];
            ssize_t n = ::read(out_, buf, sizeof buf);
            if (n <= 0) {
                return false;
            }
            got.append(buf, static_cast<std::size_t>(n));
        }
        return true;
    }

    // Sends `sig` and reaps the process; returns its wait status (-1 when already reaped).
    int kill(int sig) {
        if (pid_ <= 0) {
            return -1;
        }
        ::kill(pid_, sig);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return status;
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
};

std::vector<std::byte> pattern(std::uint64_t sequence, std::size_t n) {
    std::vector<std::byte> out(n);
    std::mt19937_64 gen(sequence * 7919 + 1);
    for (auto& b : out) {
        b = static_cast<std::byte>(gen() & 0xFF);
    }
    return out;
}

class rt_process_test : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("dp-rt-proc-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
        endpoint_ = (dir_ / "peer.sock").string();
        out_file_ = (dir_ / "received").string();
        rt::system_config config;
        config.vps = 1;
        config.name = "rt-proc";
        auto sys = rt::system::create(config);
        ASSERT_TRUE(sys.has_value());
        system_ = std::move(*sys);
    }
    void TearDown() override {
        system_.reset();
        std::filesystem::remove_all(dir_);
    }

    // A source of `count` buffers of `size` bytes (the last one `last` bytes), filled with
    // pattern(sequence). It records what it filled: a release that finds every buffer busy (a
    // loaded machine) is skipped, and its sequence number never reaches the source.
    rt::port source(std::uint64_t count, std::size_t size, std::size_t last) {
        auto p = system_->open_port(
            "src",
            [this, count, size, last](rt::upcall& up) {
                if (up.calibrating()) {
                    return;
                }
                bool final = up.sequence() + 1 >= count;
                std::size_t n = final ? last : size;
                auto bytes = pattern(up.sequence(), n);
                std::memcpy(up.data().data(), bytes.data(), n);
                up.set_length(n);
                {
                    std::lock_guard lock(mutex_);
                    sourced_.emplace_back(up.sequence(), n);
                }
                if (final) {
                    up.end_of_stream();
                }
            },
            rt::port_options{.budget = 200us});
        EXPECT_TRUE(p.has_value());
        return p ? std::move(*p) : rt::port{};
    }

    // What the peer's sink must have written: the sourced buffers, in order.
    std::vector<std::byte> expected(bool flipped) {
        std::lock_guard lock(mutex_);
        std::vector<std::byte> all;
        for (const auto& [k, n] : sourced_) {
            auto bytes = pattern(k, n);
            all.insert(all.end(), bytes.begin(), bytes.end());
        }
        if (flipped) {
            for (auto& b : all) {
                b = ~b;
            }
        }
        return all;
    }

    std::vector<std::byte> received() {
        std::ifstream in(out_file_, std::ios::binary);
        std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::vector<std::byte> out(raw.size());
        std::memcpy(out.data(), raw.data(), raw.size());
        return out;
    }

    rt::qos qos(double rate) {
        return rt::qos{.rate = rate,
                       .jitter = 0ns,
                       .delay = 100ms,
                       .buffer_size = 16 << 10,
                       .buffer_count = 8,
                       .on_late = rt::late_policy::deliver_late};
    }

    std::filesystem::path dir_;
    std::string endpoint_;
    std::string out_file_;
    std::unique_ptr<rt::system> system_;
    std::mutex mutex_;
    std::vector<std::pair<std::uint64_t, std::size_t>> sourced_;  // guarded by mutex_
};

TEST_F(rt_process_test, delivers_byte_exact_at_the_requested_rate) {
    peer_process peer(endpoint_, out_file_);
    ASSERT_TRUE(peer.ready());
    const std::uint64_t count = 200;
    const double rate = 200;  // one second
    rt::port src = source(count, 16 << 10, 1234);
    auto start = std::chrono::steady_clock::now();
    auto c = system_->connect({"src", "proc@" + endpoint_ + "/sink"}, qos(rate));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s)) << "released " << c->stats().released << " completed " << c->stats().completed
                                       << " errors " << c->stats().errors << " free " << c->stats().buffers_free
                                       << " starved " << c->stats().starved;
    auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto stats = c->stats();
    c->disconnect();
    EXPECT_GE(stats.completed + stats.starved, count);
    {
        std::lock_guard lock(mutex_);
        EXPECT_EQ(stats.completed, sourced_.size());
    }
    EXPECT_EQ(stats.errors, 0U);
    EXPECT_EQ(stats.buffers_free, stats.buffers);
    // Buffer k is released at t_0 + k / rate: the last at (count - 1) / rate.
    EXPECT_GE(elapsed, static_cast<double>(count - 1) / rate);
    EXPECT_LE(elapsed, static_cast<double>(count) / rate * 3 + 5);
    EXPECT_EQ(peer.kill(SIGTERM), 0);
    EXPECT_EQ(received(), expected(false));
}

TEST_F(rt_process_test, a_chain_continues_in_the_peer_on_the_same_buffer) {
    peer_process peer(endpoint_, out_file_);
    ASSERT_TRUE(peer.ready());
    const std::uint64_t count = 50;
    rt::port src = source(count, 16 << 10, 16 << 10);
    // A local middle stage adds nothing; the peer's flip inverts in place and its sink writes: the
    // sink sees the flip's change, so both ran on one buffer.
    auto mid = system_->open_port("mid", [](rt::upcall&) {}, rt::port_options{.budget = 10us});
    ASSERT_TRUE(mid.has_value());
    auto c = system_->connect({"src", "mid", "proc@" + endpoint_ + "/flip", "proc@" + endpoint_ + "/sink"},
                              qos(500));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    ASSERT_TRUE(c->wait_finished(60s));
    EXPECT_GE(c->stats().completed + c->stats().starved, count);
    c->disconnect();
    EXPECT_EQ(peer.kill(SIGTERM), 0);
    EXPECT_EQ(received(), expected(true));
}

TEST_F(rt_process_test, the_peers_admission_refuses_with_its_reason_and_nothing_is_left_claimed) {
    peer_process peer(endpoint_, out_file_);
    ASSERT_TRUE(peer.ready());
    rt::port src = source(10, 1024, 1024);
    auto greedy = system_->connect({"src", "proc@" + endpoint_ + "/greedy"}, qos(100));
    ASSERT_FALSE(greedy.has_value());
    EXPECT_EQ(greedy.error().code, datapump::errc::full);
    EXPECT_NE(greedy.error().reason.find("refused"), std::string::npos) << greedy.error().reason;
    EXPECT_NE(greedy.error().reason.find("density"), std::string::npos) << greedy.error().reason;

    auto unknown = system_->connect({"src", "proc@" + endpoint_ + "/nobody"}, qos(100));
    ASSERT_FALSE(unknown.has_value());
    EXPECT_NE(unknown.error().reason.find("no port named 'nobody'"), std::string::npos) << unknown.error().reason;

    auto bad = system_->connect({"src", "proc@nowhere"}, qos(100));
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, datapump::errc::invalid_argument);

    auto local_after = system_->connect({"src", "proc@" + endpoint_ + "/sink", "src"}, qos(100));
    ASSERT_FALSE(local_after.has_value());
    EXPECT_EQ(local_after.error().code, datapump::errc::unsupported);

    // The source is free again: the same chain to a port that takes it works.
    auto ok = system_->connect({"src", "proc@" + endpoint_ + "/sink"}, qos(100));
    ASSERT_TRUE(ok.has_value()) << ok.error().reason;
    ASSERT_TRUE(ok->wait_finished(60s));
    EXPECT_GE(ok->stats().completed + ok->stats().starved, 10U);
}

TEST_F(rt_process_test, nobody_serving_the_endpoint_is_not_found) {
    rt::port src = source(10, 1024, 1024);
    auto c = system_->connect({"src", "proc@" + endpoint_ + "/sink"}, qos(100));
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, datapump::errc::not_found);
}

TEST_F(rt_process_test, a_peer_killed_mid_stream_ends_the_connection_not_the_process) {
    peer_process peer(endpoint_, out_file_);
    ASSERT_TRUE(peer.ready());
    rt::port src = source(100000, 16 << 10, 16 << 10);  // far longer than the test
    auto c = system_->connect({"src", "proc@" + endpoint_ + "/sink"}, qos(500));
    ASSERT_TRUE(c.has_value()) << c.error().reason;
    auto until = std::chrono::steady_clock::now() + 30s;
    while (c->stats().completed < 20 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_GE(c->stats().completed, 20U);
    peer.kill(SIGKILL);
    ASSERT_TRUE(c->wait_finished(60s));
    auto stats = c->stats();
    EXPECT_GE(stats.errors, 1U);
    EXPECT_EQ(stats.buffers_free, stats.buffers);  // every buffer came home
    c->disconnect();
    // A later connect to the dead endpoint is refused, and this process carries on.
    auto again = system_->connect({"src", "proc@" + endpoint_ + "/sink"}, qos(500));
    EXPECT_FALSE(again.has_value());
}

}  // namespace
