// Descriptors from client to server (exec_flags::fds, connection::take_fds): over the socket
// (a command that would fit a slot included) and the in-process path, sync and async; what the
// handler does not take is closed before the reply; the caller keeps its own descriptors; the
// client refuses more than 16 or a closed one; and hostile clients on a raw socket (more
// descriptors than the control buffer holds, descriptors on a notification, a malformed command
// carrying some) are handled without a descriptor left open.
//
// "Closed everywhere" is observed without timing: the read end of a pipe travels, the test keeps
// only the write end, and poll() on that reports POLLERR once no read end is open anywhere (the
// server lives in this process, so its copies are ours too). /proc/self/fd is counted as well.
#include "datapump/ipc/client.hpp"
#include "datapump/ipc/internal/wire.hpp"
#include "datapump/ipc/server.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace datapump::ipc {
namespace {

using namespace std::chrono_literals;
using internal::msg;
using internal::wire_header;

constexpr std::uint32_t op_read_all = 1;   // takes the descriptors, reads each; output "a|b|c", status = count
constexpr std::uint32_t op_leave = 2;      // takes nothing; status = 0
constexpr std::uint32_t op_take_twice = 3; // status = first count * 100 + second count

std::string unique_endpoint(const char* what) {
    static std::atomic<int> n{0};
    return "@datapump-fds-test-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(n.fetch_add(1));
}

std::string string_of(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Entries of /proc/self/fd (the directory's own descriptor included, the same every time).
int open_fds() {
    std::error_code ec;
    int n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::end(it);
         it.increment(ec)) {
        ++n;
    }
    EXPECT_FALSE(ec) << "listing /proc/self/fd: " << ec.message();
    return n;
}

// A pipe with its contents written and its write end kept (to watch for the last read end).
struct pipe_pair {
    unique_fd read;
    unique_fd write;
    explicit pipe_pair(const std::string& contents = {}) {
        int p[2] = {-1, -1};
        EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
        read = unique_fd(p[0]);
        write = unique_fd(p[1]);
        if (!contents.empty()) {
            EXPECT_EQ(::write(write.get(), contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
        }
    }
    // True once no read end is open anywhere (the caller closed its own first).
    [[nodiscard]] bool readers_gone() const {
        pollfd p{write.get(), POLLOUT, 0};
        return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
    }
};

struct fd_server {
    std::unique_ptr<server_runtime> runtime;
    std::unique_ptr<server> srv;
    std::string endpoint;
    std::atomic<int> execs{0};
    std::atomic<int> notes{0};
    std::atomic<int> taken_in_notify{-1};

    explicit fd_server(const char* what) : endpoint(unique_endpoint(what)) {
        runtime = server_runtime::init({2}).value();
        server_handlers h;
        h.exec = [this](connection& c, std::uint32_t code, std::span<const std::byte>,
                        std::span<std::byte> out) -> exec_result {
            execs.fetch_add(1);
            if (code == op_leave) {
                return {0, 0};
            }
            if (code == op_take_twice) {
                const auto first = c.take_fds().size();
                const auto second = c.take_fds().size();
                return {static_cast<std::int32_t>(first * 100 + second), 0};
            }
            std::string got;
            const auto fds = c.take_fds();
            for (const auto& fd : fds) {
                char buf[64];
                const ssize_t n = ::read(fd.get(), buf, sizeof buf);
                got += (got.empty() ? "" : "|") + std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
            }
            const std::size_t n = std::min(got.size(), out.size());
            if (n > 0) {
                std::memcpy(out.data(), got.data(), n);
            }
            return {static_cast<std::int32_t>(fds.size()), static_cast<std::uint32_t>(n)};
        };
        h.notify = [this](connection& c, std::uint32_t, std::span<const std::byte>) {
            taken_in_notify.store(static_cast<int>(c.take_fds().size()));
            notes.fetch_add(1);
        };
        srv = runtime->create(endpoint, std::move(h)).value();
    }
};

class fd_paths : public ::testing::TestWithParam<const char*> {
protected:
    // "slot": shared memory set up (yet commands with descriptors go over the socket); "backup":
    // socket only; "direct": in-process call.
    client_options options() const {
        const std::string p = GetParam();
        client_options o;
        o.in_process = p == "direct";
        o.use_shared_memory = p != "backup";
        return o;
    }
    bool direct() const { return std::string(GetParam()) == "direct"; }
};

TEST_P(fd_paths, descriptors_sent_with_a_command_reach_the_handler_and_the_caller_keeps_its_own) {
    const int before = open_fds();
    {
        fd_server ts("reach");
        auto c = client::init(ts.endpoint, options()).value();
        pipe_pair a("one");
        pipe_pair b("two");
        pipe_pair d("three");
        const int fds[] = {a.read.get(), b.read.get(), d.read.get()};
        std::vector<std::byte> out(64);
        auto r = c->execute(op_read_all, {}, out, {}, {.fds = fds});
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        EXPECT_EQ(r->status, 3);
        EXPECT_EQ(string_of(std::span(out).first(r->output_len)), "one|two|three");
        // Still the caller's, open and usable: a byte written now comes out of its own read end.
        for (const pipe_pair* p : {&a, &b, &d}) {
            EXPECT_GE(::fcntl(p->read.get(), F_GETFD), 0);
            ASSERT_EQ(::write(p->write.get(), "x", 1), 1);
            char x = 0;
            EXPECT_EQ(::read(p->read.get(), &x, 1), 1);
            EXPECT_EQ(x, 'x');
        }
        const auto s = c->stats();
        EXPECT_EQ(s.slot_commands, 0U) << "descriptors never travel through a slot";
        EXPECT_EQ(s.backup_commands, direct() ? 0U : 1U);
        EXPECT_EQ(s.direct_commands, direct() ? 1U : 0U);
        // The handler's copies were closed with it: once ours go, no read end is left.
        a.read.reset();
        EXPECT_TRUE(a.readers_gone());
    }
    EXPECT_EQ(open_fds(), before);
}

TEST_P(fd_paths, descriptors_the_handler_does_not_take_are_closed_before_the_reply) {
    const int before = open_fds();
    {
        fd_server ts("leave");
        auto c = client::init(ts.endpoint, options()).value();
        pipe_pair p("unread");
        const int fd = p.read.get();
        auto r = c->execute(op_leave, {}, {}, {}, {.fds = std::span(&fd, 1)});
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        p.read.reset();
        EXPECT_TRUE(p.readers_gone()) << "the server still holds the descriptor after its reply";

        pipe_pair q;
        const int qfd = q.read.get();
        r = c->execute(op_take_twice, {}, {}, {}, {.fds = std::span(&qfd, 1)});
        ASSERT_TRUE(r.has_value()) << describe(r.error());
        EXPECT_EQ(r->status, 100) << "the first take gets the descriptor, the second nothing";
        q.read.reset();
        EXPECT_TRUE(q.readers_gone());

        // Outside exec there is nothing to take.
        ASSERT_TRUE(c->notify(1, {}).has_value());
        c->deinit();  // the server's notify handler has run for a direct client; others: wait below
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (ts.notes.load() == 0 && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(1ms);
        }
        ASSERT_EQ(ts.notes.load(), 1);
        EXPECT_EQ(ts.taken_in_notify.load(), 0);
    }
    EXPECT_EQ(open_fds(), before);
}

TEST_P(fd_paths, an_async_command_carries_descriptors_the_caller_closes_at_once) {
    fd_server ts("async");
    auto c = client::init(ts.endpoint, options()).value();
    std::vector<std::byte> out(64);
    std::promise<outcome> done;
    auto fut = done.get_future();
    callbacks cb;
    cb.context = &done;
    cb.completion = [](void* ctx, outcome& o) { static_cast<std::promise<outcome>*>(ctx)->set_value(std::move(o)); };
    {
        pipe_pair p("async bytes");
        const int fd = p.read.get();
        ASSERT_TRUE(c->execute(op_read_all, {}, out, cb, {.on_worker = true, .fds = std::span(&fd, 1)}).has_value());
    }  // both ends closed here: the server reads its own copy, and the data stays in the pipe
    ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
    outcome o = fut.get();
    ASSERT_TRUE(o.has_value()) << describe(o.error());
    EXPECT_EQ(o->status, 1);
    EXPECT_EQ(string_of(std::span(out).first(o->output_len)), "async bytes");
}

INSTANTIATE_TEST_SUITE_P(paths, fd_paths, ::testing::Values("slot", "backup", "direct"),
                         [](const auto& param_info) { return std::string(param_info.param); });

TEST(fds, more_than_sixteen_or_a_closed_descriptor_is_refused_before_anything_is_sent) {
    fd_server ts("refused");
    for (const bool in_process : {false, true}) {
        client_options o;
        o.in_process = in_process;
        auto c = client::init(ts.endpoint, o).value();
        pipe_pair p;
        std::vector<int> many(17, p.read.get());
        auto r = c->execute(op_read_all, {}, {}, {}, {.fds = many});
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().code, errc::invalid_argument);
        const int closed[] = {p.read.get(), -1};
        r = c->execute(op_read_all, {}, {}, {}, {.fds = closed});
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().code, errc::invalid_argument);
        many.resize(16);
        r = c->execute(op_leave, {}, {}, {}, {.fds = many});
        EXPECT_TRUE(r.has_value()) << "16 is the limit, not past it";
    }
    EXPECT_EQ(ts.execs.load(), 2) << "the refused commands never reached the server";
}

// A raw client speaking the wire protocol by hand (backup mode: hello without a segment).
class raw_client {
public:
    explicit raw_client(const std::string& endpoint) {
        sock_ = internal::connect_endpoint(endpoint).value();
        wire_header h{};
        h.type = static_cast<std::uint32_t>(msg::hello);
        h.code = 1;
        EXPECT_TRUE(internal::send_message(sock_.get(), h, {}).has_value());
        internal::received m;
        EXPECT_TRUE(internal::receive_message(sock_.get(), 0, m).has_value());
        EXPECT_EQ(m.header.type, static_cast<std::uint32_t>(msg::welcome));
    }

    // sendmsg with any number of descriptors (send_message refuses more than 16).
    void send(wire_header h, std::span<const std::byte> payload, std::span<const int> fds) {
        h.version = internal::wire_version;
        h.payload_len = static_cast<std::uint32_t>(payload.size());
        iovec iov[2] = {{&h, sizeof h}, {const_cast<std::byte*>(payload.data()), payload.size()}};
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = payload.empty() ? 1 : 2;
        std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
        m.msg_control = control.data();
        m.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
        ASSERT_GT(::sendmsg(sock_.get(), &m, MSG_NOSIGNAL), 0) << "errno " << errno;
    }

    // The next message (bounded wait); peer_gone once the server cut us off.
    result<internal::received> next() {
        pollfd p{sock_.get(), POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) {
            return fail(errc::io_error, "test: nothing from the server within 10 s");
        }
        internal::received m;
        if (auto got = internal::receive_message(sock_.get(), 1 << 16, m); !got) {
            return std::unexpected(got.error());
        }
        return m;
    }

private:
    unique_fd sock_;
};

wire_header command_header(std::uint32_t code, std::uint32_t input_len) {
    wire_header h{};
    h.type = static_cast<std::uint32_t>(msg::command);
    h.token = 1;
    h.code = code;
    h.a = input_len;
    return h;
}

TEST(fds, a_client_sending_more_descriptors_than_allowed_is_cut_off_and_none_stays_open) {
    const int before = open_fds();
    {
        fd_server ts("ctrunc");
        pipe_pair p;
        {
            raw_client raw(ts.endpoint);
            std::vector<int> many(20, p.read.get());  // 20 copies: the server's buffer holds 16
            raw.send(command_header(op_read_all, 0), {}, many);
            p.read.reset();
            auto m = raw.next();
            ASSERT_FALSE(m.has_value()) << "the command was answered: type " << m->header.type;
            EXPECT_EQ(m.error().code, errc::peer_gone) << describe(m.error());
            EXPECT_TRUE(p.readers_gone()) << "the descriptors that arrived were not closed before the cut-off";
        }
        EXPECT_EQ(ts.execs.load(), 0);
        EXPECT_EQ(ts.srv->stats().protocol_disconnects, 1U);
    }
    EXPECT_EQ(open_fds(), before);
}

TEST(fds, descriptors_on_a_notification_cut_the_client_off_and_are_closed) {
    const int before = open_fds();
    {
        fd_server ts("notify");
        pipe_pair p;
        {
            raw_client raw(ts.endpoint);
            wire_header h{};
            h.type = static_cast<std::uint32_t>(msg::notify);
            const int fd = p.read.get();
            raw.send(h, {}, std::span(&fd, 1));
            p.read.reset();
            auto m = raw.next();
            ASSERT_FALSE(m.has_value());
            EXPECT_EQ(m.error().code, errc::peer_gone) << describe(m.error());
            EXPECT_TRUE(p.readers_gone());
        }
        EXPECT_EQ(ts.notes.load(), 0) << "the notify handler must not see such a message";
        EXPECT_EQ(ts.srv->stats().protocol_disconnects, 1U);
    }
    EXPECT_EQ(open_fds(), before);
}

TEST(fds, a_malformed_command_with_descriptors_is_refused_and_they_are_closed_before_the_reply) {
    const int before = open_fds();
    {
        fd_server ts("malformed");
        pipe_pair p;
        {
            raw_client raw(ts.endpoint);
            const int fd = p.read.get();
            raw.send(command_header(op_read_all, 10), {}, std::span(&fd, 1));  // says 10 input bytes, has none
            p.read.reset();
            auto m = raw.next();
            ASSERT_TRUE(m.has_value()) << describe(m.error());
            EXPECT_EQ(m->header.type, static_cast<std::uint32_t>(msg::reply));
            EXPECT_EQ(m->header.status, bad_command);
            EXPECT_NE(m->header.flags & internal::reply_bad, 0U);
            EXPECT_TRUE(p.readers_gone());
            // The connection stays: a well-formed command with a descriptor still works.
            pipe_pair q("still here");
            const int qfd = q.read.get();
            raw.send(command_header(op_read_all, 0), {}, std::span(&qfd, 1));
            m = raw.next();
            ASSERT_TRUE(m.has_value()) << describe(m.error());
            EXPECT_EQ(m->header.status, 1);
        }
        EXPECT_EQ(ts.srv->stats().bad_commands, 1U);
        EXPECT_EQ(ts.srv->stats().protocol_disconnects, 0U);
    }
    EXPECT_EQ(open_fds(), before);
}

}  // namespace
}  // namespace datapump::ipc
