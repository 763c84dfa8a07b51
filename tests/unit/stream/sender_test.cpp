// stream::sender alone, without HTTP: a file range sent over a TCP loopback pair and an AF_UNIX
// socketpair by each send path (sendfile, splice, send_zc, send), read by a test thread and
// checked byte for byte:
//   - whole ranges of awkward sizes and offsets arrive exactly, counted once per path;
//   - a slow reader behind tiny socket buffers (short sends, EAGAIN, polls for room) still gets
//     every byte in order, and the loan paths pin no buffer once the transfer is done;
//   - a peer that resets mid-body fails the transfer with a reason, and every loan comes back;
//   - VCR: a paused stream sends nothing until resumed; a seek continues from the new place;
//   - an owner that refuses admission holds the stream until resume().
#include "datapump/stream/sender.hpp"

#include "datapump/fs/registry.hpp"
#include "support/loop_thread.hpp"
#include "unit/fs/test_support.hpp"
#include "unit/stream/socket_pairs.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace datapump::test {
namespace {

using namespace std::chrono_literals;
using stream::send_path;

constexpr std::size_t block = 64 * 1024;  // the arena buffer (a cache block)
constexpr auto limit = std::chrono::seconds(60);

// What the sender told its owner. Written on the loop thread; read by the test after `finished`.
class recorder final : public stream::sender_owner {
public:
    stream::sender* s = nullptr;
    std::uint64_t progressed = 0;
    int sends = 0;  // reports of bytes taken: more than the blocks when the socket was often full
    int paused = 0;
    int resumed = 0;
    bool admitted = true;
    int admission_asked = 0;
    std::promise<std::string> finished;  // "" when done, else why it failed

    void sender_progress(std::uint64_t n) override {
        progressed += n;
        sends += n > 0 ? 1 : 0;
    }
    void sender_paused() override { ++paused; }
    void sender_resumed() override { ++resumed; }
    bool sender_admitted() override {
        ++admission_asked;
        return admitted;
    }
    void sender_await_growth() override {}  // no growing file here (sender_follow_test.cpp)
    void sender_done() override { finished.set_value(""); }
    void sender_failed(std::string_view why) override {
        s->end();  // as the connection's close does
        finished.set_value(why.empty() ? std::string("(no reason)") : std::string(why));
    }
    void sender_debug(std::string_view /*detail*/) override {}
    void sender_settle() override {}
};

// Reads `n` bytes (or to EOF / an error) in pieces of at most `piece`, sleeping `pause` between.
std::vector<std::byte> read_n(int fd, std::size_t n, std::size_t piece = 1 << 20,
                              std::chrono::microseconds pause = 0us) {
    std::vector<std::byte> got(n);
    std::size_t at = 0;
    while (at < n) {
        const ssize_t r = ::recv(fd, got.data() + at, std::min(piece, n - at), 0);
        if (r <= 0) {
            break;
        }
        at += static_cast<std::size_t>(r);
        if (pause.count() > 0) {
            std::this_thread::sleep_for(pause);
        }
    }
    got.resize(at);
    return got;
}

struct path_case {
    send_path path;
    bool tcp;
    const char* label;
};

std::string case_name(const ::testing::TestParamInfo<path_case>& info) { return info.param.label; }

class sender_test : public ::testing::TestWithParam<path_case> {
protected:
    void SetUp() override {
        auto c = cache::file_cache::create({.buffers = {.buffer_size = block, .buffer_count = 32}});
        ASSERT_TRUE(c.has_value()) << describe(c.error());
        cache_ = std::move(*c);
        const bool loans = stream::sends_loans(GetParam().path);
        auto inst = providers_.instantiate("posix", {.root = dir_.str(), .cache = loans ? cache_.get() : nullptr,
                                                     .flags = 0});
        ASSERT_TRUE(inst.has_value()) << describe(inst.error());
        instance_ = std::move(*inst);
        loop_ = std::make_unique<loop_thread>(&cache_->buffers().arena());
        ASSERT_TRUE(loop_->ok()) << loop_->error_text();
    }
    void TearDown() override {
        if (loop_) {
            drop_sender();
        }
        if (cache_ != nullptr) {
            // A fallback read's completion posts to the loop from a cache worker: wait for every
            // one before the loop goes (as the server's shutdown does).
            cache_->quiesce();
        }
        loop_.reset();
        if (cache_ != nullptr) {
            cache_->quiesce();
            EXPECT_EQ(cache_->buffers().pinned_buffers(), 0U) << "every loan is back";
        }
    }

    socket_pair make_pair() const { return GetParam().tcp ? tcp_pair() : unix_pair(); }

    // Makes the sender on `pair.ours` and begins a transfer of [start, start + length) of `name`
    // (`size` bytes; on the loop thread); returns begin's error text, empty when it began.
    std::string begin(const socket_pair& pair, const std::string& name, std::uint64_t size, std::uint64_t start,
                      std::uint64_t length, std::shared_ptr<stream::control> controls = nullptr,
                      fs::provider_instance* from = nullptr) {
        std::string error_text;
        loop_->sync([&] {
            sender_ = std::make_unique<stream::sender>(stream::sender_env{.loop = &loop_->loop(),
                                                                          .cache = cache_.get(),
                                                                          .path = GetParam().path,
                                                                          .counters = &counters_,
                                                                          .bytes_sent = &bytes_sent_,
                                                                          .plain_when_copied = plain_when_copied_,
                                                                          .page_cache_below = page_cache_below_},
                                                       pair.ours.get(), owner_, "test");
            owner_.s = sender_.get();
            auto f = (from != nullptr ? *from : instance_).open(name);
            if (!f) {
                error_text = describe(f.error());
                return;
            }
            auto begun = sender_->begin({.file = std::make_shared<fs::file>(std::move(*f)),
                                         .start = start,
                                         .length = length,
                                         .file_size = size,
                                         .controls = std::move(controls),
                                         .pacing = {}});
            if (!begun) {
                error_text = describe(begun.error());
            }
        });
        return error_text;
    }
    // Frees the sender once nothing of it is in the kernel (a SEND_ZC notification may still come
    // after the transfer is done; its completion names the sender).
    void drop_sender() {
        EXPECT_TRUE(wait_for([&] {
            bool idle = true;
            loop_->sync([&] { idle = sender_ == nullptr || sender_->idle(); });
            return idle;
        }, std::chrono::milliseconds(limit)));
        loop_->sync([this] { sender_.reset(); });
    }
    void start() {
        loop_->sync([this] { sender_->start(); });
    }
    // Waits for the transfer's end: "" when done, else why it failed.
    std::string outcome() {
        auto f = owner_.finished.get_future();
        if (f.wait_for(limit) != std::future_status::ready) {
            ADD_FAILURE() << "the transfer did not end";
            return "(hung)";
        }
        return f.get();
    }
    std::uint64_t path_bytes() const {
        switch (GetParam().path) {
            case send_path::sendfile:
                return counters_.sendfile_bytes.load();
            case send_path::splice:
                return counters_.splice_bytes.load();
            case send_path::send_zc:
                return counters_.send_zc_bytes.load();
            default:
                return counters_.send_bytes.load();
        }
    }

    temp_dir dir_;
    std::unique_ptr<cache::file_cache> cache_;
    fs::registry providers_;
    fs::provider_instance instance_;
    std::unique_ptr<loop_thread> loop_;
    stream::send_counters counters_;
    std::atomic<std::uint64_t> bytes_sent_{0};
    recorder owner_;
    std::unique_ptr<stream::sender> sender_;
    bool plain_when_copied_ = false;
    std::uint64_t page_cache_below_ = 0;
};

TEST_P(sender_test, a_range_arrives_byte_exact_and_counted_once) {
    const std::size_t size = 5 * block + 1234;
    const auto content = pattern(size, 31);
    write_file(dir_.file("f"), content);
    struct range {
        std::uint64_t start;
        std::uint64_t length;
    };
    for (const range r : {range{0, size}, range{block - 7, 2 * block + 9}, range{size - 1, 1}, range{3, 5}}) {
        SCOPED_TRACE("range " + std::to_string(r.start) + "+" + std::to_string(r.length));
        owner_.finished = {};
        const std::uint64_t before = bytes_sent_.load();
        const std::uint64_t path_before = path_bytes();
        const socket_pair pair = make_pair();
        ASSERT_EQ(begin(pair, "f", size, r.start, r.length), "");
        auto reader = std::async(std::launch::async, [&] { return read_n(pair.theirs.get(), r.length); });
        start();
        EXPECT_EQ(outcome(), "");
        const auto got = reader.get();
        EXPECT_SAME_BYTES(std::span(got), std::span(content).subspan(r.start, r.length));
        EXPECT_EQ(bytes_sent_.load() - before, r.length);
        EXPECT_EQ(path_bytes() - path_before, r.length);
        drop_sender();
    }
}

TEST_P(sender_test, a_slow_reader_behind_small_buffers_gets_every_byte_in_order) {
    const std::size_t size = 3 * block + 999;
    const auto content = pattern(size, 32);
    write_file(dir_.file("slow"), content);
    const socket_pair pair = make_pair();
    shrink_buffers(pair, 16384);
    ASSERT_EQ(begin(pair, "slow", size, 0, size), "");
    auto reader = std::async(std::launch::async, [&] { return read_n(pair.theirs.get(), size, 1500, 50us); });
    start();
    EXPECT_EQ(outcome(), "");
    const auto got = reader.get();
    EXPECT_SAME_BYTES(std::span(got), std::span(content));
    EXPECT_EQ(owner_.progressed, size) << "the owner heard of every byte once";
    // Unhindered, the body would go in one call (sendfile's 2 MiB, splice's 1 MiB pipe) or one send
    // per block (the loan paths): more sends than that means the socket was full (short sends).
    const int unhindered = stream::sends_loans(GetParam().path) ? 4 : 1;
    EXPECT_GT(owner_.sends, unhindered) << "the socket was full (short sends, EAGAIN)";
}

TEST_P(sender_test, a_peer_that_resets_mid_body_fails_the_transfer_and_loans_come_back) {
    const std::size_t size = 24 * block;
    write_file(dir_.file("big"), pattern(size, 33));
    socket_pair pair = make_pair();
    shrink_buffers(pair, 16384);
    ASSERT_EQ(begin(pair, "big", size, 0, size), "");
    start();
    const auto first = read_n(pair.theirs.get(), 10000);
    EXPECT_EQ(first.size(), 10000U);
    const linger rst{1, 0};
    ::setsockopt(pair.theirs.get(), SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    pair.theirs.reset();
    const std::string why = outcome();
    EXPECT_NE(why, "") << "a body the peer did not take is not done";
    // The connection shuts its socket down on failure: every operation in the kernel completes.
    ::shutdown(pair.ours.get(), SHUT_RDWR);
    drop_sender();
    cache_->quiesce();
    EXPECT_EQ(cache_->buffers().pinned_buffers(), 0U) << "no loan outlives a failed transfer";
}

TEST_P(sender_test, a_paused_stream_sends_nothing_until_resumed) {
    const std::size_t size = 2 * block + 77;
    const auto content = pattern(size, 34);
    write_file(dir_.file("p"), content);
    auto controls = std::make_shared<stream::control>();
    controls->pause_requested.store(true);
    const socket_pair pair = make_pair();
    ASSERT_EQ(begin(pair, "p", size, 0, size, controls), "");
    start();
    bool paused = false;
    loop_->sync([&] { paused = sender_->paused(); });
    EXPECT_TRUE(paused);
    EXPECT_EQ(controls->state.load(), stream::run_state::paused);
    int queued = -1;
    ASSERT_EQ(::ioctl(pair.theirs.get(), FIONREAD, &queued), 0);
    EXPECT_EQ(queued, 0) << "a stream paused before its first send sends nothing";
    controls->pause_requested.store(false);
    loop_->sync([this] { sender_->kick(); });
    const auto got = read_n(pair.theirs.get(), size);
    EXPECT_EQ(outcome(), "");
    EXPECT_SAME_BYTES(std::span(got), std::span(content));
    loop_->sync([&] {
        EXPECT_EQ(owner_.paused, 1);
        EXPECT_EQ(owner_.resumed, 1);
    });
}

TEST_P(sender_test, a_seek_goes_on_from_the_new_place) {
    const std::size_t size = 4 * block;
    const auto content = pattern(size, 35);
    write_file(dir_.file("s"), content);
    auto controls = std::make_shared<stream::control>();
    const std::uint64_t to = block + 100;
    controls->seek_to.store(static_cast<std::int64_t>(to));
    const socket_pair pair = make_pair();
    // A body of size - to bytes: after the seek it runs from `to` to the end of the file.
    ASSERT_EQ(begin(pair, "s", size, 0, size - to, controls), "");
    auto reader = std::async(std::launch::async, [&] { return read_n(pair.theirs.get(), size - to); });
    start();
    EXPECT_EQ(outcome(), "");
    const auto got = reader.get();
    EXPECT_SAME_BYTES(std::span(got), std::span(content).subspan(to));
    EXPECT_EQ(controls->position.load(), size);
}

TEST_P(sender_test, a_stream_not_admitted_waits_for_resume) {
    const std::size_t size = block + 5;
    const auto content = pattern(size, 36);
    write_file(dir_.file("a"), content);
    const socket_pair pair = make_pair();
    ASSERT_EQ(begin(pair, "a", size, 0, size), "");
    loop_->sync([this] { owner_.admitted = false; });
    start();
    bool waiting = false;
    loop_->sync([&] { waiting = sender_->waiting_on_client(); });
    EXPECT_TRUE(waiting) << "a stream refused admission counts against the send timeout";
    EXPECT_EQ(bytes_sent_.load(), 0U);
    loop_->sync([this] {
        owner_.admitted = true;
        sender_->resume();
    });
    const auto got = read_n(pair.theirs.get(), size);
    EXPECT_EQ(outcome(), "");
    EXPECT_SAME_BYTES(std::span(got), std::span(content));
}

TEST_P(sender_test, a_transfer_ended_before_its_start_sends_nothing) {
    write_file(dir_.file("gone"), pattern(100, 37));
    const socket_pair pair = make_pair();
    ASSERT_EQ(begin(pair, "gone", 100, 0, 100), "");
    // Ending before the start: nothing is sent and nothing is held.
    loop_->sync([this] {
        sender_->end();
        EXPECT_FALSE(sender_->active());
        sender_->start();
        EXPECT_TRUE(sender_->idle());
    });
    EXPECT_EQ(bytes_sent_.load(), 0U);
}

const path_case cases[] = {
    {send_path::sendfile, true, "sendfile_tcp"}, {send_path::sendfile, false, "sendfile_unix"},
    {send_path::splice, true, "splice_tcp"},     {send_path::splice, false, "splice_unix"},
    {send_path::send_zc, true, "send_zc_tcp"},   {send_path::send_zc, false, "send_zc_unix"},
    {send_path::send, true, "send_tcp"},         {send_path::send, false, "send_unix"},
};
INSTANTIATE_TEST_SUITE_P(paths, sender_test, ::testing::ValuesIn(cases), case_name);

// SEND_ZC over TCP loopback: the kernel copies every zero-copy send to a local socket and says so
// in the notification. With plain_when_copied the sender then sends the rest plainly: only the
// sends made before the first notification came back (one per slot at most) are SEND_ZC (before
// this, 342 of the 400 blocks went by SEND_ZC here; how many depends on how fast the peer window
// opens, which a loaded machine slows, so the opposite is not asserted). Every byte arrives.
class sender_zc_test : public sender_test {
protected:
    // Sends 400 blocks (long enough for the peer window to take whole loans) and checks that every
    // byte arrived, counted as the send_zc path's.
    void send_all() {
        const std::size_t size = 400 * block;
        const auto content = pattern(size, 37);
        write_file(dir_.file("f"), content);
        const socket_pair pair = make_pair();
        ASSERT_EQ(begin(pair, "f", size, 0, size), "");
        auto reader = std::async(std::launch::async, [&] { return read_n(pair.theirs.get(), size); });
        start();
        EXPECT_EQ(outcome(), "");
        const auto got = reader.get();
        EXPECT_SAME_BYTES(std::span(got), std::span(content));
        drop_sender();
        EXPECT_GE(counters_.send_zc_copied.load(), 1U);
        EXPECT_EQ(counters_.send_zc_bytes.load(), size);  // the path's bytes, however each send went
    }
};

TEST_P(sender_zc_test, once_the_kernel_says_it_copies_the_rest_goes_by_plain_send) {
    plain_when_copied_ = true;
    send_all();
    EXPECT_GE(counters_.send_zc_sends.load(), 1U);
    EXPECT_LE(counters_.send_zc_sends.load(), 4U) << "SEND_ZC went on after the kernel said it copies";
}

const path_case zc_cases[] = {{send_path::send_zc, true, "send_zc_tcp"}};
INSTANTIATE_TEST_SUITE_P(loopback, sender_zc_test, ::testing::ValuesIn(zc_cases), case_name);

// The direct provider on a loan path: a file smaller than page_cache_below goes by sendfile (its
// descriptor's O_DIRECT cleared) and takes no loan (nginx's directio line); a file of that size or more goes
// from the arena; page_cache_below 0 sends every file from the arena. Every byte arrives.
class sender_small_file_test : public sender_test {};

TEST_P(sender_small_file_test, small_files_go_from_the_page_cache_large_ones_from_the_arena) {
    auto direct = providers_.instantiate("direct", {.root = dir_.str(), .cache = cache_.get(), .flags = 0});
    ASSERT_TRUE(direct.has_value()) << describe(direct.error());
    const std::size_t small = 3 * block + 17;
    const std::size_t large = 4 * block;
    write_file(dir_.file("small"), pattern(small, 41));
    write_file(dir_.file("large"), pattern(large, 43));
    struct run {
        std::uint64_t below;
        const char* name;
        std::size_t size;
        bool page_cache;
    };
    for (const run r : {run{large, "small", small, true}, run{large, "large", large, false},
                        run{0, "small", small, false}}) {
        SCOPED_TRACE(std::string(r.name) + " with page_cache_below " + std::to_string(r.below));
        page_cache_below_ = r.below;
        owner_.finished = {};
        const std::uint64_t sendfile_before = counters_.sendfile_bytes.load();
        const std::uint64_t loans_before = path_bytes();
        const auto lookups = [this] {
            const auto c = cache_->counters().snapshot();
            return c.hits + c.misses;
        };
        const std::uint64_t lookups_before = lookups();
        const socket_pair pair = make_pair();
        ASSERT_EQ(begin(pair, r.name, r.size, 0, r.size, nullptr, &*direct), "");
        auto reader = std::async(std::launch::async, [&] { return read_n(pair.theirs.get(), r.size); });
        start();
        EXPECT_EQ(outcome(), "");
        const auto got = reader.get();
        const auto want = pattern(r.size, std::string_view(r.name) == "small" ? 41 : 43);
        EXPECT_SAME_BYTES(std::span(got), std::span(want));
        EXPECT_EQ(counters_.sendfile_bytes.load() - sendfile_before, r.page_cache ? r.size : 0U);
        EXPECT_EQ(path_bytes() - loans_before, r.page_cache ? 0U : r.size);
        const std::uint64_t looked_up = lookups() - lookups_before;
        EXPECT_EQ(looked_up == 0, r.page_cache) << looked_up << " cache look-ups";
        drop_sender();
    }
}

const path_case loan_cases[] = {{send_path::send_zc, true, "send_zc_tcp"}, {send_path::send, false, "send_unix"}};
INSTANTIATE_TEST_SUITE_P(loan_paths, sender_small_file_test, ::testing::ValuesIn(loan_cases), case_name);

}  // namespace
}  // namespace datapump::test
