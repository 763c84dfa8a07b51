// Local ingest through the loan protocol (loan::client::put): byte-exact round trips through a
// pipe and a socketpair around the alignment and buffer boundaries, create versus replace, the
// refusals (writing off, too long, bad paths, a put of a path already being put), a writer that
// closes early or stalls (nothing published, the old version intact, no temp file left), a borrow
// of the old version during a put, and a client process killed in the middle of its put.
#include "datapump/ingest/upload_names.hpp"
#include "datapump/loan/client.hpp"
#include "datapump/loan/server.hpp"

#include "support/wait.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace datapump::loan {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t buffer = std::size_t{64} * 1024;  // the cache block: one ingest window

std::string unique_endpoint(const char* what) {
    static std::atomic<int> n{0};
    return "@datapump-put-test-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(n.fetch_add(1));
}

std::vector<std::byte> make_bytes(std::uint32_t seed, std::size_t size) {
    std::vector<std::byte> v(size);
    for (std::size_t i = 0; i < size; ++i) {
        v[i] = static_cast<std::byte>((i * 131 + std::size_t{seed} * 17 + (i >> 9)) & 0xff);
    }
    return v;
}

using testing::wait_until;

// A temp directory, removed at the end.
class root_dir {
public:
    root_dir() {
        char tmpl[] = "/tmp/datapump-put-XXXXXX";
        const char* made = ::mkdtemp(tmpl);
        EXPECT_NE(made, nullptr);
        root_ = made != nullptr ? made : "/tmp";
    }
    root_dir(const root_dir&) = delete;
    root_dir& operator=(const root_dir&) = delete;
    ~root_dir() {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
    }
    [[nodiscard]] const std::string& path() const { return root_; }

    void write(const std::string& name, const std::vector<std::byte>& bytes) const {
        std::ofstream out(root_ + "/" + name, std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        EXPECT_TRUE(out.good());
    }
    [[nodiscard]] std::vector<std::byte> read(const std::string& name) const {
        std::ifstream in(root_ + "/" + name, std::ios::binary);
        EXPECT_TRUE(in.good()) << "no file " << name;
        std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::vector<std::byte> out(chars.size());
        if (!chars.empty()) {
            std::memcpy(out.data(), chars.data(), chars.size());
        }
        return out;
    }
    [[nodiscard]] bool exists(const std::string& name) const {
        return std::filesystem::exists(root_ + "/" + name);
    }
    // Upload temp files anywhere beneath the root.
    [[nodiscard]] std::vector<std::string> temp_files() const {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::recursive_directory_iterator(root_)) {
            if (ingest::is_temp_name(e.path().filename().string())) {
                out.push_back(e.path().string());
            }
        }
        return out;
    }

private:
    std::string root_;
};

server_config writable_config(const root_dir& dir, const char* what) {
    server_config c;
    c.endpoint = unique_endpoint(what);
    c.root = dir.path();
    c.cache.buffers.buffer_size = buffer;
    c.cache.buffers.buffer_count = 32;
    c.writable = true;
    return c;
}

std::unique_ptr<server> start(server_config c) {
    auto s = server::create(std::move(c));
    EXPECT_TRUE(s.has_value()) << describe(s.error());
    return s ? std::move(*s) : nullptr;
}

std::unique_ptr<client> connect_to(const server& s) {
    auto c = client::connect(s.endpoint());
    EXPECT_TRUE(c.has_value()) << describe(c.error());
    return c ? std::move(*c) : nullptr;
}

enum class stream_kind { pipe, socketpair };

const char* name_of(stream_kind k) { return k == stream_kind::pipe ? "pipe" : "socketpair"; }

// The bytes of a put, written into the stream's other end by a thread of their own: all at once,
// or `hold_at` bytes and the rest after release(). `source` is the end put() gets (the test keeps
// it, like any caller). Closing the write end ends the stream; stop() unblocks a writer the
// server stopped reading.
class feeder {
public:
    feeder(stream_kind kind, std::vector<std::byte> bytes, std::size_t hold_at = ~std::size_t{0}, bool end = true)
        : kind_(kind), bytes_(std::move(bytes)), hold_at_(hold_at), end_(end) {
        int fds[2] = {-1, -1};
        const int made = kind == stream_kind::pipe ? ::pipe2(fds, O_CLOEXEC)
                                                   : ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
        EXPECT_EQ(made, 0) << "errno " << errno;
        source = unique_fd(fds[0]);
        sink_ = unique_fd(fds[1]);
        thread_ = std::thread([this] { run(); });
    }
    feeder(const feeder&) = delete;
    feeder& operator=(const feeder&) = delete;
    ~feeder() { stop(); }

    // Waits (bounded) until the held part is written.
    [[nodiscard]] bool holding() const {
        return wait_until([this] { return written_.load(std::memory_order_acquire) >= hold_at_; });
    }
    void release() {
        released_.store(true, std::memory_order_release);
        released_.notify_all();
    }
    // Ends the writer whatever it waits for: a blocked write fails once the reading end closes
    // (the server's copy is closed by then: put() returned).
    void stop() {
        release();
        if (source) {
            if (kind_ == stream_kind::socketpair) {
                ::shutdown(source.get(), SHUT_RDWR);
            }
            source.reset();
        }
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    unique_fd source;

private:
    void run() {
        // A write into a pipe nobody reads raises SIGPIPE: blocked here, it fails with EPIPE.
        sigset_t sig;
        sigemptyset(&sig);
        sigaddset(&sig, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &sig, nullptr);
        std::size_t at = 0;
        while (at < bytes_.size()) {
            if (at == hold_at_) {
                released_.wait(false, std::memory_order_acquire);
            }
            const std::size_t until_hold = hold_at_ > at ? hold_at_ - at : ~std::size_t{0};
            const std::size_t n = std::min({bytes_.size() - at, std::size_t{100000}, until_hold});
            const ssize_t k = kind_ == stream_kind::pipe ? ::write(sink_.get(), bytes_.data() + at, n)
                                                         : ::send(sink_.get(), bytes_.data() + at, n, MSG_NOSIGNAL);
            if (k <= 0) {
                if (k < 0 && errno == EINTR) {
                    continue;
                }
                return;
            }
            at += static_cast<std::size_t>(k);
            written_.store(at, std::memory_order_release);
        }
        if (at == hold_at_) {
            released_.wait(false, std::memory_order_acquire);
        }
        if (end_) {
            sink_.reset();
        } else {
            released_.wait(false, std::memory_order_acquire);  // a stalled writer: silent, end held open
            // Woken by stop() (release() is called first) or by the test's release().
        }
    }

    stream_kind kind_;
    std::vector<std::byte> bytes_;
    std::size_t hold_at_;
    bool end_;
    unique_fd sink_;
    std::thread thread_;
    std::atomic<std::size_t> written_{0};
    std::atomic<bool> released_{false};
};

TEST(put, round_trips_byte_exact_through_a_pipe_and_a_socketpair) {
    root_dir dir;
    auto srv = start(writable_config(dir, "round-trip"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    const std::size_t sizes[] = {0, 1, 4095, 4096, 4097, buffer - 1, buffer, buffer + 1, 9 * buffer + 123};
    std::uint64_t puts = 0;
    std::uint64_t bytes = 0;
    std::uint32_t seed = 1;
    for (const stream_kind kind : {stream_kind::pipe, stream_kind::socketpair}) {
        for (const std::size_t size : sizes) {
            SCOPED_TRACE(std::string(name_of(kind)) + " size " + std::to_string(size));
            const std::string name = std::string(name_of(kind)) + "-" + std::to_string(size);
            const auto body = make_bytes(seed++, size);
            feeder feed(kind, body);
            auto r = c->put(name, feed.source.get(), size);
            ASSERT_TRUE(r.has_value()) << describe(r.error(), name);
            EXPECT_EQ(r->bytes, size);
            EXPECT_TRUE(r->created);
            const auto got = dir.read(name);
            EXPECT_EQ(got.size(), size);
            EXPECT_TRUE(got == body) << "content differs";
            EXPECT_GE(::fcntl(feed.source.get(), F_GETFD), 0) << "the caller keeps its descriptor";
            ++puts;
            bytes += size;
        }
    }
    // Into a subdirectory too.
    std::filesystem::create_directory(dir.path() + "/sub");
    const auto body = make_bytes(99, 3 * buffer + 5);
    feeder feed(stream_kind::pipe, body);
    auto r = c->put("sub/file", feed.source.get(), body.size());
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_TRUE(dir.read("sub/file") == body);
    const auto st = srv->stats();
    EXPECT_EQ(st.puts, puts + 1);
    EXPECT_EQ(st.put_bytes, bytes + body.size());
    EXPECT_EQ(st.puts_failed, 0U);
    EXPECT_TRUE(dir.temp_files().empty());
}

TEST(put, the_stream_is_read_exactly_to_the_length_and_no_further) {
    root_dir dir;
    auto srv = start(writable_config(dir, "exact"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    for (const stream_kind kind : {stream_kind::pipe, stream_kind::socketpair}) {
        SCOPED_TRACE(name_of(kind));
        const auto first = make_bytes(5, 2 * buffer + 17);
        const auto second = make_bytes(6, 3000);
        auto both = first;
        both.insert(both.end(), second.begin(), second.end());
        feeder feed(kind, both);
        auto r = c->put("first", feed.source.get(), first.size());
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        r = c->put("second", feed.source.get(), second.size());  // the same stream, carried on
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        EXPECT_TRUE(dir.read("first") == first);
        EXPECT_TRUE(dir.read("second") == second);
    }
}

TEST(put, replace_and_create) {
    root_dir dir;
    auto srv = start(writable_config(dir, "replace"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    const auto v1 = make_bytes(11, 100000);
    const auto v2 = make_bytes(12, 5000);
    {
        feeder feed(stream_kind::pipe, v1);
        auto r = c->put("f", feed.source.get(), v1.size());
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        EXPECT_TRUE(r->created);
    }
    {
        feeder feed(stream_kind::pipe, v2);
        auto r = c->put("f", feed.source.get(), v2.size());
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        EXPECT_FALSE(r->created) << "an existing file was replaced";
        EXPECT_TRUE(dir.read("f") == v2);
    }
    {
        feeder feed(stream_kind::pipe, v1);
        auto r = c->put("f", feed.source.get(), v1.size(), {.replace = false});
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().code, errc::busy);
        EXPECT_TRUE(dir.read("f") == v2) << "a refused put changes nothing";
    }
    {
        feeder feed(stream_kind::pipe, v1);
        auto r = c->put("g", feed.source.get(), v1.size(), {.replace = false});
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        EXPECT_TRUE(r->created);
        EXPECT_TRUE(dir.read("g") == v1);
    }
    EXPECT_TRUE(dir.temp_files().empty());
}

TEST(put, a_server_without_writing_refuses_with_unsupported) {
    root_dir dir;
    auto cfg = writable_config(dir, "read-only");
    cfg.writable = false;
    auto srv = start(cfg);
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    feeder feed(stream_kind::pipe, make_bytes(1, 100));
    auto r = c->put("f", feed.source.get(), 100);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::unsupported) << describe(r.error());
    EXPECT_FALSE(dir.exists("f"));
    EXPECT_TRUE(dir.temp_files().empty());
    EXPECT_EQ(srv->stats().puts, 0U);
    EXPECT_EQ(srv->stats().puts_failed, 1U);
}

TEST(put, longer_than_max_put_bytes_is_refused_with_full) {
    root_dir dir;
    auto cfg = writable_config(dir, "max");
    cfg.max_put_bytes = 10000;
    auto srv = start(cfg);
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    {
        feeder feed(stream_kind::pipe, make_bytes(2, 10001));
        auto r = c->put("big", feed.source.get(), 10001);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().code, errc::full);
        EXPECT_FALSE(dir.exists("big"));
    }
    const auto body = make_bytes(3, 10000);
    feeder feed(stream_kind::pipe, body);
    auto r = c->put("big", feed.source.get(), body.size());
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_TRUE(dir.read("big") == body);
}

TEST(put, bad_paths_and_descriptors_are_refused_and_leave_nothing) {
    root_dir dir;
    auto srv = start(writable_config(dir, "paths"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    std::filesystem::create_directory(dir.path() + "/d");
    const struct {
        const char* path;
        errc code;
    } cases[] = {
        {"../outside", errc::escapes_root},
        {"/etc/passwd-datapump", errc::escapes_root},
        {"missing/dir/f", errc::not_found},
        {"d", errc::not_regular_file},
        {".f.dp-upload-1-1", errc::invalid_argument},
    };
    for (const auto& k : cases) {
        SCOPED_TRACE(k.path);
        feeder feed(stream_kind::pipe, make_bytes(4, 1000));
        auto r = c->put(k.path, feed.source.get(), 1000);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().code, k.code) << describe(r.error());
    }
    auto r = c->put("f", -1, 10);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::invalid_argument);
    r = c->put("", 0, 10);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::invalid_argument);
    EXPECT_TRUE(dir.temp_files().empty());
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/../outside"));
    EXPECT_EQ(srv->stats().puts, 0U);
}

TEST(put, a_writer_closing_early_publishes_nothing_and_keeps_the_old_version) {
    root_dir dir;
    const auto old = make_bytes(20, 2 * buffer + 300);
    dir.write("f", old);
    auto srv = start(writable_config(dir, "early"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    for (const stream_kind kind : {stream_kind::pipe, stream_kind::socketpair}) {
        for (const std::size_t sent : {std::size_t{0}, std::size_t{1000}, 2 * buffer}) {
            SCOPED_TRACE(std::string(name_of(kind)) + " after " + std::to_string(sent) + " bytes");
            feeder feed(kind, make_bytes(21, sent));
            auto r = c->put("f", feed.source.get(), 3 * buffer + 5);
            ASSERT_FALSE(r.has_value());
            EXPECT_EQ(r.error().code, errc::peer_gone) << describe(r.error());
            EXPECT_FALSE(c->server_gone());
            EXPECT_TRUE(dir.read("f") == old);
            EXPECT_TRUE(dir.temp_files().empty());
        }
    }
    EXPECT_EQ(srv->stats().puts, 0U);
    EXPECT_EQ(srv->stats().puts_failed, 6U);
}

TEST(put, a_silent_writer_is_cut_off_after_the_idle_timeout) {
    root_dir dir;
    const auto old = make_bytes(30, 5000);
    dir.write("f", old);
    auto cfg = writable_config(dir, "idle");
    cfg.put_idle_timeout = 200ms;
    auto srv = start(cfg);
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    feeder feed(stream_kind::pipe, make_bytes(31, 1000), ~std::size_t{0}, false);  // 1000 bytes, then silence
    auto r = c->put("f", feed.source.get(), 100000);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::peer_gone) << describe(r.error());
    EXPECT_TRUE(dir.read("f") == old);
    EXPECT_TRUE(dir.temp_files().empty());
}

TEST(put, a_borrow_during_a_put_reads_the_old_version_and_keeps_it_after) {
    root_dir dir;
    const auto old = make_bytes(40, 3 * buffer);
    const auto fresh = make_bytes(41, 4 * buffer + 9);
    dir.write("f", old);
    auto srv = start(writable_config(dir, "borrow"));
    ASSERT_TRUE(srv);
    auto writer = connect_to(*srv);
    auto reader = connect_to(*srv);
    ASSERT_TRUE(writer && reader);
    auto before = reader->open("f");
    ASSERT_TRUE(before.has_value()) << describe(before.error());
    auto held = reader->borrow(*before, 0, old.size());
    ASSERT_TRUE(held.has_value()) << describe(held.error());

    feeder feed(stream_kind::socketpair, fresh, 2 * buffer + 100);  // holds after that much
    auto put = std::async(std::launch::async, [&] { return writer->put("f", feed.source.get(), fresh.size()); });
    ASSERT_TRUE(feed.holding());
    ASSERT_TRUE(wait_until([&] { return !dir.temp_files().empty(); })) << "the put never started";
    // The put is in the middle of the file: a new open and borrow still get the old version.
    auto during = reader->open("f");
    ASSERT_TRUE(during.has_value()) << describe(during.error());
    EXPECT_EQ(during->size(), old.size());
    std::vector<std::byte> seen;
    while (seen.size() < old.size()) {
        auto l = reader->borrow(*during, seen.size(), old.size() - seen.size());
        ASSERT_TRUE(l.has_value()) << describe(l.error());
        ASSERT_FALSE(l->empty());
        for (const auto piece : l->pieces()) {
            seen.insert(seen.end(), piece.begin(), piece.end());
        }
    }
    EXPECT_TRUE(seen == old);
    ASSERT_EQ(put.wait_for(0s), std::future_status::timeout) << "published before all bytes were sent";

    feed.release();
    ASSERT_EQ(put.wait_for(20s), std::future_status::ready);
    auto r = put.get();
    ASSERT_TRUE(r.has_value()) << describe(r.error());
    EXPECT_FALSE(r->created);
    EXPECT_TRUE(dir.read("f") == fresh);
    // The lease taken before keeps the old bytes; a new open sees the new file.
    std::vector<std::byte> kept;
    for (const auto piece : held->pieces()) {
        kept.insert(kept.end(), piece.begin(), piece.end());
    }
    EXPECT_TRUE(kept == old);
    auto after = reader->open("f");
    ASSERT_TRUE(after.has_value()) << describe(after.error());
    EXPECT_EQ(after->size(), fresh.size());
    auto l = reader->borrow(*after, 0, buffer);
    ASSERT_TRUE(l.has_value()) << describe(l.error());
    ASSERT_FALSE(l->empty());
    EXPECT_EQ(std::memcmp(l->pieces()[0].data(), fresh.data(), l->pieces()[0].size()), 0);
}

TEST(put, a_second_put_of_the_same_path_while_one_runs_is_busy) {
    root_dir dir;
    auto srv = start(writable_config(dir, "busy"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    const auto body = make_bytes(50, 2 * buffer);
    feeder first(stream_kind::pipe, body, buffer);
    auto put = std::async(std::launch::async, [&] { return c->put("f", first.source.get(), body.size()); });
    ASSERT_TRUE(first.holding());
    ASSERT_TRUE(wait_until([&] { return !dir.temp_files().empty(); }));
    feeder second(stream_kind::pipe, make_bytes(51, 100));
    auto r = c->put("f", second.source.get(), 100);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::busy);
    first.release();
    ASSERT_EQ(put.wait_for(20s), std::future_status::ready);
    auto done = put.get();
    ASSERT_TRUE(done.has_value()) << describe(done.error());
    EXPECT_TRUE(dir.read("f") == body);
}

TEST(put, without_replace_a_file_created_meanwhile_is_never_replaced) {
    root_dir dir;
    auto srv = start(writable_config(dir, "noreplace"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    const auto body = make_bytes(52, 2 * buffer);
    feeder feed(stream_kind::pipe, body, buffer);
    auto put = std::async(std::launch::async,
                          [&] { return c->put("late", feed.source.get(), body.size(), {.replace = false}); });
    ASSERT_TRUE(feed.holding());
    ASSERT_TRUE(wait_until([&] { return !dir.temp_files().empty(); }));
    const auto intruder = make_bytes(53, 777);
    dir.write("late", intruder);  // another process creates the name after the put's first check
    feed.release();
    ASSERT_EQ(put.wait_for(20s), std::future_status::ready);
    auto r = put.get();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::busy);
    EXPECT_TRUE(dir.read("late") == intruder) << "the file created meanwhile was replaced";
    EXPECT_TRUE(dir.temp_files().empty());
}

TEST(put, a_server_shutting_down_fails_the_put_in_progress) {
    root_dir dir;
    auto srv = start(writable_config(dir, "shutdown"));
    ASSERT_TRUE(srv);
    auto c = connect_to(*srv);
    ASSERT_TRUE(c);
    feeder feed(stream_kind::pipe, make_bytes(60, 2 * buffer), buffer);
    auto put = std::async(std::launch::async, [&] { return c->put("f", feed.source.get(), 2 * buffer); });
    ASSERT_TRUE(feed.holding());
    ASSERT_TRUE(wait_until([&] { return !dir.temp_files().empty(); }));
    srv.reset();  // must not wait for the writer
    ASSERT_EQ(put.wait_for(20s), std::future_status::ready);
    auto r = put.get();
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(r.error().code == errc::closed || r.error().code == errc::peer_gone) << describe(r.error());
    EXPECT_FALSE(dir.exists("f"));
    EXPECT_TRUE(dir.temp_files().empty());
}

// The helper process (loan_test_helper ... put): killed while its put is in progress.
TEST(put, a_client_killed_in_the_middle_of_its_put_publishes_nothing) {
    root_dir dir;
    const auto old = make_bytes(70, 7000);
    dir.write("f", old);
    auto srv = start(writable_config(dir, "killed"));
    ASSERT_TRUE(srv);
    int out[2] = {-1, -1};
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    std::string helper = LOAN_TEST_HELPER;
    std::string endpoint(srv->endpoint());
    std::string path = "f";
    std::string mode = "put";
    std::vector<char*> argv = {helper.data(), endpoint.data(), path.data(), mode.data(), nullptr};
    ASSERT_EQ(::posix_spawn(&pid, helper.c_str(), &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    unique_fd from_helper(out[0]);
    pollfd p{from_helper.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 20000), 1) << "the helper never said ready";
    char ready[8] = {};
    EXPECT_EQ(::read(from_helper.get(), ready, sizeof ready), 6);
    EXPECT_EQ(std::string(ready), "ready\n");
    ASSERT_TRUE(wait_until([&] { return !dir.temp_files().empty(); })) << "the helper's put never started";
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status));
    ASSERT_TRUE(wait_until([&] { return srv->stats().puts_failed == 1 && srv->stats().clients_now == 0; }));
    EXPECT_TRUE(dir.read("f") == old);
    EXPECT_TRUE(dir.temp_files().empty());
    EXPECT_EQ(srv->stats().puts, 0U);
}

}  // namespace
}  // namespace datapump::loan
