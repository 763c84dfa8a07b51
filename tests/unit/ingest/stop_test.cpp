// How an ingest job stops: the peer closing before the end of the body, cancel() in the middle
// of it, one window in flight, and a file system that fills up (a 2 MiB tmpfs mounted for the
// test: ENOSPC must come back as errc::no_space).
#include "unit/ingest/ingest_fixture.hpp"

#include <sys/mount.h>

#include <filesystem>

namespace datapump::test {
namespace {

class stop_test : public ingest_test {};

TEST_P(stop_test, peer_closing_early_is_peer_gone) {
    const std::uint64_t sizes[] = {3 * block + 5, 100};
    for (const std::uint64_t size : sizes) {
        SCOPED_TRACE("size " + std::to_string(size));
        const auto body = pattern(size, 600);
        const std::vector<std::byte> part(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(size * 2 / 3));
        fs::file f = open("early-" + std::to_string(size), fs::open_mode::create_new);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run, {.file = &f, .length = size, .send = {.wire = part}}));
        ASSERT_FALSE(run.total());
        EXPECT_EQ(run.total().error().code, errc::peer_gone) << describe(run.total().error());
        EXPECT_EQ(run.stats.received.load(), part.size());
        for (const auto& w : run.writes()) {
            EXPECT_TRUE(w.bytes) << "only the body's end was missing, storage did not fail";
        }
    }
}

TEST_P(stop_test, peer_closing_before_any_byte_is_peer_gone) {
    fs::file f = open("nothing", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = 1000, .send = {}}));
    ASSERT_FALSE(run.total());
    EXPECT_EQ(run.total().error().code, errc::peer_gone);
    EXPECT_TRUE(run.writes().empty());
}

TEST_P(stop_test, one_window_in_flight_round_trips) {
    const std::uint64_t size = 7 * block + 123;
    const auto body = pattern(size, 601);
    fs::file f = open("one-window", fs::open_mode::create_new);
    const std::uint64_t align = alignment_of(f);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = size, .opts = {.windows_in_flight = 1},
                                  .send = {.wire = body, .max_piece = 10000}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_EQ(*run.total(), size);
    ASSERT_TRUE(run.truncate(f));
    const auto got = pread_all(dir_.file("one-window"));
    EXPECT_EQ(got.size, size);
    EXPECT_SAME_BYTES(got.bytes, body);
    expect_writes_cover(run, 0, size, align);
}

TEST_P(stop_test, cancel_mid_body_reports_its_error_once) {
    const std::uint64_t size = 6 * block;
    const auto body = pattern(size, 602);
    fs::file f = open("cancelled", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    // The sender stops after 2.5 windows and waits: the job is then in a receive with half a
    // window landed (with MSG_WAITALL, still unreported).
    ASSERT_TRUE(run.start({.file = &f, .length = size, .send = {.wire = body, .hold_at = 5 * block / 2}}));
    ASSERT_TRUE(wait_for([&] { return run.sent() == 5 * block / 2 && run.stats.received.load() >= 2 * block; },
                         std::chrono::seconds(30)))
        << "received " << run.stats.received.load() << ", sent " << run.sent() << ", on_done ran "
        << run.done_calls() << " times";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const error why{errc::closed, 0, "test: cancelled"};
    run.cancel(why);
    ASSERT_TRUE(run.wait_done());
    ASSERT_FALSE(run.total());
    EXPECT_EQ(run.total().error().code, errc::closed);
    EXPECT_STREQ(run.total().error().what, why.what);
    // Idempotent, and nothing happens after on_done.
    run.cancel(error{errc::io_error, 0, "test: again"});
    run.release_sender();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    loop_->sync([] {});
    EXPECT_EQ(run.done_calls(), 1);
    // The two full windows before the hold were written (or at least not failed).
    for (const auto& w : run.writes()) {
        EXPECT_TRUE(w.bytes) << describe(w.bytes.error());
    }
}

TEST_P(stop_test, cancel_twice_before_on_done_reports_the_first) {
    fs::file f = open("cancelled-twice", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run.start({.file = &f, .length = 1000, .send = {.wire = pattern(10, 603), .shut = false}}));
    loop_->sync([] {});
    run.cancel(error{errc::closed, 0, "test: first"});
    run.cancel(error{errc::io_error, 0, "test: second"});
    ASSERT_TRUE(run.wait_done());
    ASSERT_FALSE(run.total());
    EXPECT_EQ(run.total().error().code, errc::closed);
    loop_->sync([] {});
    EXPECT_EQ(run.done_calls(), 1);
}

TEST_P(stop_test, cancel_in_the_task_that_started_the_job) {
    fs::file f = open("cancelled-at-once", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    int done_before_return = -1;
    ASSERT_TRUE(run.start({.file = &f, .length = 3 * block, .send = {.wire = pattern(3 * block, 604)},
                           .after_start = [&](ingest::job& j) {
                               j.cancel(error{errc::closed, 0, "test: at once"});
                               done_before_return = run.done_calls();
                           }}));
    ASSERT_TRUE(run.wait_done());
    EXPECT_EQ(done_before_return, 0) << "on_done ran inside cancel()";
    ASSERT_FALSE(run.total());
    EXPECT_EQ(run.total().error().code, errc::closed);
    EXPECT_TRUE(run.writes().empty());
    loop_->sync([] {});
    EXPECT_EQ(run.done_calls(), 1);
}

// Every arena buffer pinned by someone else: the job has nowhere to receive into. It must end
// with no_buffers at once (the daemon answers 503: a moment later there may be one), never wait
// for a buffer that no event of its own will free (the daemon's idle timer then cut it: 408).
TEST_P(stop_test, no_free_buffer_ends_the_job_with_no_buffers) {
    std::vector<cache::fill_ticket> held;
    const std::uint32_t count = cache_->buffers().arena().count();
    for (std::uint32_t i = 0; i < count; ++i) {
        auto got = cache_->buffers().lock_or_claim({.file = ~std::uint64_t{0}, .block = i});
        ASSERT_TRUE(got.has_value()) << describe(got.error());
        held.push_back(std::get<cache::fill_ticket>(std::move(*got)));
    }
    const auto body = pattern(1000, 602);
    fs::file f = open("no-buffer", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = body.size(), .send = {.wire = body}}));
    ASSERT_FALSE(run.total());
    EXPECT_EQ(run.total().error().code, errc::no_buffers) << describe(run.total().error());
    EXPECT_TRUE(run.writes().empty());
}

INSTANTIATE_TEST_SUITE_P(providers, stop_test, ::testing::ValuesIn(both_providers), provider_label);

// A 2 MiB tmpfs: ingesting 4 MiB must fail with no_space (tmpfs takes O_DIRECT since Linux 6.6).
class full_fs_test : public ingest_test {
protected:
    void SetUp() override {
        ingest_test::SetUp();
        if (HasFatalFailure()) {
            return;
        }
        mount_point_ = dir_.file("small");
        std::filesystem::create_directory(mount_point_);
        if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=2m") != 0) {
            FAIL() << "mount -t tmpfs -o size=2m tmpfs " << mount_point_ << ": " << std::strerror(errno)
                   << " (the test needs CAP_SYS_ADMIN to make a small full file system)";
        }
        mounted_ = true;
        auto inst = providers_.instantiate(GetParam(), {.root = mount_point_, .cache = cache_.get()});
        ASSERT_TRUE(inst.has_value()) << describe(inst.error());
        small_ = std::move(*inst);
    }
    void TearDown() override {
        small_ = fs::provider_instance{};
        if (mounted_ && ::umount2(mount_point_.c_str(), 0) != 0) {
            ADD_FAILURE() << "umount " << mount_point_ << ": " << std::strerror(errno);
            (void)::umount2(mount_point_.c_str(), MNT_DETACH);
        }
        ingest_test::TearDown();
    }

    std::string mount_point_;
    bool mounted_ = false;
    fs::provider_instance small_;
};

TEST_P(full_fs_test, enospc_is_no_space) {
    const std::uint64_t size = 4 << 20;
    const auto body = pattern(size, 700);
    {
        auto opened = small_.open("big", fs::open_mode::create_new);
        ASSERT_TRUE(opened) << describe(opened.error());
        fs::file f = std::move(*opened);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run, {.file = &f, .length = size, .send = {.wire = body}}));
        ASSERT_FALSE(run.total()) << "4 MiB fit in a 2 MiB file system";
        EXPECT_EQ(run.total().error().code, errc::no_space) << describe(run.total().error());
        bool write_failed = false;
        for (const auto& w : run.writes()) {
            if (!w.bytes) {
                write_failed = true;
                EXPECT_EQ(w.bytes.error().code, errc::no_space) << describe(w.bytes.error());
            }
        }
        EXPECT_TRUE(write_failed) << "on_write reported no failed write";
    }
}

INSTANTIATE_TEST_SUITE_P(providers, full_fs_test, ::testing::ValuesIn(both_providers), provider_label);

}  // namespace
}  // namespace datapump::test
