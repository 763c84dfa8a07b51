// File: tests/unit/ingest/ingest_fixture.hpp
//
// What every ingest test starts from: a temp dir, a file cache of 64 KiB blocks, a provider
// instance (posix or direct: the suites are parameterised over both), an event loop on its own
// thread with the arena registered, and `ingest_run`: one job fed through an AF_UNIX socketpair (or
// a pipe: send_plan::over_pipe) by a sender thread, waited for with a deadline, then checked
// byte-exact with pread.
//
//   sender thread ──send (random pieces)──> fds[1] ═══ fds[0] <──recv── job (loop thread)
//                 (pipe: write)                                 (pipe: read)
//                                                                        └──WRITE_FIXED──> file
//
// Thread-safety: one test at a time. The job is touched only on the loop thread (start, the
// accessors, cancel, publish and its destruction are posted there); the sender thread owns only
// its end of the socket; readers of a load-and-play view use only the cache.
#pragma once

#include "datapump/fs/registry.hpp"
#include "datapump/http/chunked_body.hpp"
#include "datapump/ingest/ingest.hpp"
#include "datapump/io/event_loop.hpp"
#include "support/loop_thread.hpp"
#include "unit/fs/test_support.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace datapump::test {

inline constexpr std::size_t block = 64 * 1024;  // the arena buffer: one ingest window
inline constexpr std::uint64_t fs_block = 4096;  // the file system block (O_DIRECT alignment)
// Every wait has a deadline: a job that never finishes fails the test instead of hanging it.
// Generous, for the sanitizer builds on a shared 2-core machine.
inline constexpr auto done_limit = std::chrono::seconds(60);

[[nodiscard]] inline std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }
[[nodiscard]] inline std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

[[nodiscard]] inline std::vector<std::byte> bytes_of(std::string_view s) {
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
}

inline void append(std::vector<std::byte>& to, std::span<const std::byte> what) {
    to.insert(to.end(), what.begin(), what.end());
}

// The whole file as pread sees it (a fresh descriptor, no O_DIRECT), and its size from fstat.
struct file_bytes {
    std::uint64_t size = 0;
    std::vector<std::byte> bytes;
};
[[nodiscard]] inline file_bytes pread_all(const std::string& path) {
    file_bytes out;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ADD_FAILURE() << "open " << path << ": " << std::strerror(errno);
        return out;
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0) {
        out.size = static_cast<std::uint64_t>(st.st_size);
    }
    out.bytes.resize(out.size);
    std::uint64_t at = 0;
    while (at < out.size) {
        const ssize_t n = ::pread(fd, out.bytes.data() + at, out.size - at, static_cast<off_t>(at));
        if (n <= 0) {
            ADD_FAILURE() << "pread " << path << " at " << at << ": " << (n == 0 ? "EOF" : std::strerror(errno));
            out.bytes.resize(at);
            break;
        }
        at += static_cast<std::uint64_t>(n);
    }
    ::close(fd);
    return out;
}

// What the sender thread sends into its end of the socketpair.
struct send_plan {
    std::vector<std::byte> wire{};
    // Send only this many bytes, then wait for ingest_run::release_sender() before the rest.
    std::size_t hold_at = ~std::size_t{0};
    bool shut = true;                       // shutdown(SHUT_WR) after the last byte
    std::chrono::microseconds pause{0};     // between pieces (load-and-play: a slow body)
    std::size_t max_piece = 3 * block;      // pieces are 1..max_piece bytes, from a seeded RNG
    std::uint32_t seed = 12345;
    bool over_pipe = false;                 // a pipe instead of a socketpair (shut = close the write end)
    bool nonblocking = false;               // the job's end is O_NONBLOCK (io_uring then answers EAGAIN)
};

// How a test's body is framed: exactly `length` bytes, or HTTP's chunked coding (the decoder the
// HTTP server gives ingest, http::chunked_body, with max_body as its limit).
enum class framing : std::uint8_t { identity, chunked };

// One job as a test drives it.
struct ingest_case {
    fs::file* file = nullptr;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    std::uint64_t old_size = 0;
    framing coding = framing::identity;
    std::span<const std::byte> prefix{};  // copied by job::start (the caller may reuse it)
    std::uint64_t max_body = 0;
    ingest::options opts{};
    send_plan send{};
    // Runs on the loop thread right after job::start returned (in the same task).
    std::function<void(ingest::job&)> after_start{};
    // on_done destroys the job (the contract allows it: on_done is the job's last act).
    bool drop_in_on_done = false;
};

struct write_seen {
    std::uint64_t offset = 0;
    result<std::uint64_t> bytes;
};

class ingest_run {
public:
    ingest_run(loop_thread& loop, cache::file_cache& cache)
        : loop_(loop), cache_(cache), done_future_(done_.get_future().share()) {}
    ingest_run(const ingest_run&) = delete;
    ingest_run& operator=(const ingest_run&) = delete;
    ~ingest_run() { shut_down(); }

    // Makes the socketpair, starts the job on the loop thread and then the sender. Returns
    // job::start's error, if any (no sender runs then).
    [[nodiscard]] result<void> start(const ingest_case& c) {
        int fds[2] = {-1, -1};
        pipe_ = c.send.over_pipe;
        if (pipe_ ? ::pipe2(fds, O_CLOEXEC) != 0 : ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
            return fail_errno(pipe_ ? "pipe2" : "socketpair");
        }
        job_fd_ = fds[0];
        send_fd_ = fds[1];
        if (c.send.nonblocking && ::fcntl(job_fd_, F_SETFL, ::fcntl(job_fd_, F_GETFL) | O_NONBLOCK) != 0) {
            return fail_errno("fcntl O_NONBLOCK");
        }
        result<void> started;
        loop_.sync([&] {
            ingest::callbacks cb;
            cb.on_write = [this](std::uint64_t offset, result<std::uint64_t> bytes) {
                writes_.push_back({offset, bytes});  // loop thread; read after on_done
            };
            cb.on_progress = [this] { progress_.fetch_add(1, std::memory_order_relaxed); };
            cb.on_done = [this, drop = c.drop_in_on_done](result<std::uint64_t> total) {
                if (done_calls_.fetch_add(1, std::memory_order_acq_rel) == 0) {
                    total_ = total;
                    if (drop) {
                        job_.reset();  // destroys this very std::function's owner
                    }
                    done_.set_value();
                }
            };
            if (c.coding == framing::chunked) {
                decoder_ = std::make_unique<http::chunked_body>(http::chunked_limits{.max_body = c.max_body});
            }
            auto j = ingest::job::start(loop_.loop(), cache_,
                                        {.socket = job_fd_, .prefix = c.prefix, .decoder = decoder_.get()},
                                        {.file = c.file, .offset = c.offset, .length = c.length,
                                         .old_size = c.old_size},
                                        c.opts, std::move(cb), &stats);
            if (!j) {
                started = std::unexpected(j.error());
                return;
            }
            job_ = std::move(*j);
            view = job_->view();
            if (c.after_start) {
                c.after_start(*job_);
            }
        });
        if (!started) {
            return started;
        }
        plan_ = c.send;
        sender_ = std::thread([this] { send_body(); });
        return {};
    }

    // Waits for on_done (bounded), then reads the job's accessors on the loop thread.
    [[nodiscard]] bool wait_done() {
        if (done_future_.wait_for(done_limit) != std::future_status::ready) {
            ADD_FAILURE() << "on_done did not run within the deadline";
            // Unstick it: a job that honours cancel() finishes now; one that does not is a bug the
            // test binary cannot recover from (its buffers are still lent to the kernel).
            cancel(error{errc::closed, 0, "test: deadline"});
            std::this_thread::sleep_for(std::chrono::seconds(5));
            if (done_calls_.load() == 0) {
                std::fprintf(stderr, "FATAL: the ingest job ignored cancel() after its deadline\n");
                std::abort();
            }
            return false;
        }
        loop_.sync([&] {
            if (job_ == nullptr) {
                return;  // dropped by on_done
            }
            prefix_used = job_->prefix_used();
            const auto left = job_->leftover();
            leftover.assign(left.begin(), left.end());
            final_size = job_->final_size();
            http_status = decoder_ != nullptr ? decoder_->http_status() : 0;
        });
        return true;
    }

    [[nodiscard]] const result<std::uint64_t>& total() const { return total_; }
    [[nodiscard]] int done_calls() const { return done_calls_.load(std::memory_order_acquire); }
    // After wait_done(): every on_write the job made (written on the loop thread before on_done).
    [[nodiscard]] const std::vector<write_seen>& writes() const { return writes_; }
    [[nodiscard]] std::uint64_t progress_calls() const { return progress_.load(std::memory_order_relaxed); }

    void cancel(error why) {
        loop_.sync([&] {
            if (job_ != nullptr) {
                job_->cancel(why);
            }
        });
    }
    [[nodiscard]] bool job_alive() {
        bool alive = false;
        loop_.sync([&] { alive = job_ != nullptr; });
        return alive;
    }
    void release_sender() {
        release_.store(true, std::memory_order_release);
        release_.notify_all();
    }
    // Bytes of the wire the sender has handed to the socket so far.
    [[nodiscard]] std::size_t sent() const { return sent_.load(std::memory_order_acquire); }

    // The bytes still in the socket after the job stopped reading (the sender shut its end).
    [[nodiscard]] std::vector<std::byte> drain_socket() {
        join_sender();
        std::vector<std::byte> out;
        std::byte buf[4096];
        for (;;) {
            const ssize_t n = ::recv(job_fd_, buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0) {
                break;
            }
            out.insert(out.end(), buf, buf + n);
        }
        return out;
    }

    // After a clean on_done: the caller's part of the contract (truncate to final_size and sync).
    [[nodiscard]] result<void> truncate(fs::file& file) const { return file.truncate_and_sync(final_size); }
    void publish_succeeded() {
        loop_.sync([&] { job_->publish_succeeded(); });
    }
    void publish_failed(error why) {
        loop_.sync([&] { job_->publish_failed(why); });
    }
    // Drops the job on the loop thread (the contract's thread); readers of its view then see
    // complete (published) or writer_failed.
    void drop_job() {
        if (job_ != nullptr) {
            loop_.sync([&] { job_.reset(); });
        }
    }

    ingest::counters stats;
    std::shared_ptr<cache::cached_file> view;
    std::size_t prefix_used = 0;
    std::vector<std::byte> leftover;
    std::uint64_t final_size = 0;
    int http_status = 0;  // a chunked body's decoder's verdict: 400 or 413 when it refused (else 0)

private:
    void send_body() {
        if (pipe_) {
            // A write to a pipe whose reader is gone raises SIGPIPE: blocked on this thread, the
            // write fails with EPIPE instead (and the pending signal dies with the thread).
            sigset_t pipe_signal;
            sigemptyset(&pipe_signal);
            sigaddset(&pipe_signal, SIGPIPE);
            pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
        }
        std::mt19937 rng(plan_.seed);
        std::uniform_int_distribution<std::size_t> piece(1, plan_.max_piece);
        std::size_t at = 0;
        while (at < plan_.wire.size()) {
            if (at == plan_.hold_at && !wait_release()) {
                return;
            }
            std::size_t n = std::min(piece(rng), plan_.wire.size() - at);
            if (at < plan_.hold_at) {
                n = std::min(n, plan_.hold_at - at);
            }
            std::size_t off = 0;
            while (off < n) {
                const ssize_t k = pipe_ ? ::write(send_fd_, plan_.wire.data() + at + off, n - off)
                                        : ::send(send_fd_, plan_.wire.data() + at + off, n - off, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR) {
                    continue;
                }
                if (k <= 0) {
                    return;  // the job's end is closed: it stopped reading
                }
                off += static_cast<std::size_t>(k);
                sent_.fetch_add(static_cast<std::size_t>(k), std::memory_order_release);
            }
            at += n;
            if (plan_.pause.count() > 0) {
                std::this_thread::sleep_for(plan_.pause);
            }
        }
        if (at == plan_.hold_at && !wait_release()) {
            return;
        }
        if (plan_.shut && pipe_) {
            ::close(std::exchange(send_fd_, -1));  // the only way to end a pipe; joined before anyone reads send_fd_
        } else if (plan_.shut) {
            ::shutdown(send_fd_, SHUT_WR);
        }
    }
    bool wait_release() {
        const auto end = std::chrono::steady_clock::now() + done_limit;
        while (!release_.load(std::memory_order_acquire)) {
            if (std::chrono::steady_clock::now() > end) {
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }
    void join_sender() {
        if (sender_.joinable()) {
            release_sender();
            sender_.join();
        }
    }
    void shut_down() {
        // Closing the job's end makes a sender blocked in send() fail with EPIPE. A pipe has no
        // shutdown(): its read end is closed only once the job no longer reads it (below).
        if (job_fd_ >= 0 && !pipe_) {
            ::shutdown(job_fd_, SHUT_RDWR);
        }
        if (!pipe_) {
            join_sender();
        }
        if (job_ != nullptr && done_calls_.load() == 0) {
            // A test that stopped early (a failed assertion): the job must finish before it may
            // be destroyed.
            cancel(error{errc::closed, 0, "test: stopped early"});
            if (done_future_.wait_for(done_limit) != std::future_status::ready) {
                std::fprintf(stderr, "FATAL: the ingest job ignored cancel() at the end of a test\n");
                std::abort();
            }
        }
        drop_job();
        view.reset();
        if (job_fd_ >= 0) {
            ::close(job_fd_);
        }
        join_sender();  // a pipe's sender blocked on a full pipe got EPIPE from the close above
        if (send_fd_ >= 0) {
            ::close(send_fd_);
        }
    }

    loop_thread& loop_;
    cache::file_cache& cache_;
    std::unique_ptr<http::chunked_body> decoder_;  // a chunked case's; outlives the job (declared first)
    std::unique_ptr<ingest::job> job_;
    int job_fd_ = -1;
    int send_fd_ = -1;
    bool pipe_ = false;
    send_plan plan_;
    std::thread sender_;
    std::atomic<std::size_t> sent_{0};
    std::atomic<bool> release_{false};
    std::promise<void> done_;
    std::shared_future<void> done_future_;
    std::atomic<int> done_calls_{0};
    result<std::uint64_t> total_ = fail(errc::io_error, "test: on_done never ran");
    std::vector<write_seen> writes_;
    std::atomic<std::uint64_t> progress_{0};
};

// Starts `c` and waits for on_done; true when both happened (on_done exactly once).
[[nodiscard]] inline bool run_to_done(ingest_run& run, const ingest_case& c) {
    auto started = run.start(c);
    EXPECT_TRUE(started) << describe(started.error());
    if (!started || !run.wait_done()) {
        return false;
    }
    EXPECT_EQ(run.done_calls(), 1);
    return true;
}

// The fixture: parameter = the provider name.
class ingest_test : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override {
        auto c = cache::file_cache::create({.buffers = {.buffer_size = block, .buffer_count = 64}});
        ASSERT_TRUE(c.has_value()) << describe(c.error());
        cache_ = std::move(*c);
        auto inst = providers_.instantiate(GetParam(), {.root = dir_.str(), .cache = cache_.get()});
        ASSERT_TRUE(inst.has_value()) << describe(inst.error());
        instance_ = std::move(*inst);
        loop_ = std::make_unique<loop_thread>(&cache_->buffers().arena());
        ASSERT_TRUE(loop_->ok()) << loop_->error_text();
        ASSERT_TRUE(loop_->loop().has_fixed_buffers()) << loop_->loop().fixed_buffers_error();
    }
    void TearDown() override {
        loop_.reset();
        if (cache_ != nullptr) {
            cache_->quiesce();
        }
    }

    [[nodiscard]] fs::file open(const std::string& name, fs::open_mode mode) {
        auto f = instance_.open(name, mode);
        if (!f) {
            ADD_FAILURE() << "open " << name << ": " << describe(f.error());
            std::abort();
        }
        return std::move(*f);
    }
    // The storage alignment the engine will use for `f` (extent()'s, as the job asks it).
    [[nodiscard]] static std::uint64_t alignment_of(const fs::file& f) {
        auto e = f.extent(0, 1);
        EXPECT_TRUE(e) << describe(e.error());
        return e ? std::max<std::uint64_t>(e->alignment, 1) : 1;
    }

    // on_write: every write succeeded, one per window, and together they cover exactly
    // [align_down(offset), align_up(end)) (the padded range; the exact one with alignment 1).
    static void expect_writes_cover(const ingest_run& run, std::uint64_t offset, std::uint64_t end,
                                    std::uint64_t align) {
        std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
        for (const auto& w : run.writes()) {
            ASSERT_TRUE(w.bytes) << "write at " << w.offset << ": " << describe(w.bytes.error());
            ranges.emplace_back(w.offset, *w.bytes);
        }
        std::sort(ranges.begin(), ranges.end());
        if (end == offset) {
            EXPECT_TRUE(ranges.empty());
            EXPECT_EQ(run.stats.written.load(), 0U);
            return;
        }
        const std::uint64_t lo = align_down(offset, align);
        const std::uint64_t hi = align_up(end, align);
        std::uint64_t at = lo;
        for (const auto& [o, n] : ranges) {
            EXPECT_EQ(o, at) << "writes leave a gap or overlap";
            EXPECT_GT(n, 0U);
            EXPECT_EQ(o / block, (o + n - 1) / block) << "a write crosses a window at " << o;
            at = o + n;
        }
        EXPECT_EQ(at, hi);
        EXPECT_EQ(ranges.size(), (hi - 1) / block - lo / block + 1) << "one write per window";
        EXPECT_EQ(run.stats.written.load(), hi - lo);
        EXPECT_GE(run.stats.writes.load(), ranges.size());
    }

    temp_dir dir_;
    std::unique_ptr<cache::file_cache> cache_;
    fs::registry providers_;
    fs::provider_instance instance_;
    std::unique_ptr<loop_thread> loop_;
};

inline std::string provider_label(const ::testing::TestParamInfo<const char*>& info) { return info.param; }

inline const char* const both_providers[] = {"posix", "direct"};

}  // namespace datapump::test
