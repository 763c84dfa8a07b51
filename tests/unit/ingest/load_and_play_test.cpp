// Load-and-play: a reader thread follows the job's view while the body arrives slowly, and ends
// cleanly only once the caller published the file; when the body fails, or the caller fails or
// never publishes it, the reader gets an error instead of waiting for ever.
#include "unit/ingest/ingest_fixture.hpp"

namespace datapump::test {
namespace {

// Follows a load-and-play file from offset 0 with loan_read until it ends or fails, checking
// every byte against `body`. Joined by its destructor: declare it before the ingest_run, so the
// job (whose destruction fails an unpublished file and so wakes the reader) goes first.
class follower {
public:
    follower(cache::file_cache& cache, std::shared_ptr<cache::cached_file> view, const std::vector<std::byte>& body)
        : thread_([this, &cache, view = std::move(view), &body] { follow(cache, *view, body); }) {}
    follower(const follower&) = delete;
    follower& operator=(const follower&) = delete;
    ~follower() { thread_.join(); }

    // Waits (bounded) for the reader to stop; false when it still waits at the frontier.
    [[nodiscard]] bool wait_ended(std::chrono::milliseconds limit) {
        return wait_for([&] { return ended_.load(std::memory_order_acquire); }, limit);
    }
    [[nodiscard]] bool ended() const { return ended_.load(std::memory_order_acquire); }
    // Valid once ended() (acquire pairs with the release store at the end of follow()).
    [[nodiscard]] std::uint64_t got() const { return got_; }
    [[nodiscard]] const std::optional<error>& failure() const { return failure_; }
    [[nodiscard]] cache::file_status status_at_end() const { return status_; }
    [[nodiscard]] std::int64_t mismatch() const { return mismatch_; }
    [[nodiscard]] std::uint64_t reads() const { return reads_; }
    // Bytes seen so far, while it runs (monitoring).
    [[nodiscard]] std::uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }

private:
    void follow(cache::file_cache& cache, const cache::cached_file& view, const std::vector<std::byte>& body) {
        std::uint64_t pos = 0;
        std::uint64_t ask = 1000;
        for (;;) {
            auto loans = cache.loan_read(view, pos, ask);
            ++reads_;
            ask = ask * 7 % (3 * block) + 1;  // assorted request sizes, across window boundaries
            if (!loans) {
                failure_ = loans.error();
                break;
            }
            if (loans->empty()) {
                status_ = view.status();
                break;
            }
            for (const auto& loan : *loans) {
                const auto bytes = loan.bytes();
                if (loan.file_offset() != pos || pos + bytes.size() > body.size() ||
                    std::memcmp(bytes.data(), body.data() + pos, bytes.size()) != 0) {
                    mismatch_ = static_cast<std::int64_t>(pos);
                }
                pos += bytes.size();
            }
            progress_.store(pos, std::memory_order_relaxed);
            if (mismatch_ >= 0) {
                break;
            }
        }
        got_ = pos;
        ended_.store(true, std::memory_order_release);
    }

    std::uint64_t got_ = 0;
    std::optional<error> failure_;
    cache::file_status status_ = cache::file_status::writing;
    std::int64_t mismatch_ = -1;
    std::uint64_t reads_ = 0;
    std::atomic<std::uint64_t> progress_{0};
    std::atomic<bool> ended_{false};
    std::thread thread_;  // last: starts after the fields it writes exist
};

class load_and_play_test : public ingest_test {
protected:
    // A slow body: small pieces with a pause between them, so the reader catches up and waits.
    static send_plan slow(std::vector<std::byte> wire) {
        return {.wire = std::move(wire), .pause = std::chrono::microseconds(1500), .max_piece = 8 * 1024};
    }
};

TEST_P(load_and_play_test, reader_follows_the_body_and_ends_after_publish) {
    const std::uint64_t size = 5 * block + 999;
    const auto body = pattern(size, 800);
    fs::file f = open("lap", fs::open_mode::create_new);
    std::optional<follower> reader;
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run.start({.file = &f, .length = size, .opts = {.load_and_play = true}, .send = slow(body)}));
    ASSERT_NE(run.view, nullptr);
    reader.emplace(*cache_, run.view, body);
    ASSERT_TRUE(run.wait_done());
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_EQ(*run.total(), size);
    ASSERT_TRUE(run.truncate(f));
    // Every byte is readable, but the file is not published yet: the reader waits at the end.
    ASSERT_TRUE(wait_for([&] { return reader->progress() == size || reader->ended(); }, std::chrono::seconds(30)));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(reader->ended()) << "the reader ended before the file was published";
    EXPECT_EQ(run.view->status(), cache::file_status::writing);
    run.publish_succeeded();
    ASSERT_TRUE(reader->wait_ended(std::chrono::seconds(30))) << "the reader did not end after publish";
    EXPECT_FALSE(reader->failure()) << describe(*reader->failure());
    EXPECT_EQ(reader->mismatch(), -1);
    EXPECT_EQ(reader->got(), size);
    EXPECT_EQ(reader->status_at_end(), cache::file_status::complete);
    EXPECT_GT(reader->reads(), 2U);
    EXPECT_GT(run.progress_calls(), 0U);
    const auto got = pread_all(dir_.file("lap"));
    EXPECT_EQ(got.size, size);
    EXPECT_SAME_BYTES(got.bytes, body);
    // A reader that starts after the end reads the whole published file.
    auto all = cache_->loan_read(*run.view, 0, size);
    ASSERT_TRUE(all) << describe(all.error());
    std::uint64_t at = 0;
    for (const auto& loan : *all) {
        ASSERT_EQ(loan.file_offset(), at);
        ASSERT_EQ(0, std::memcmp(loan.bytes().data(), body.data() + at, loan.size()));
        at += loan.size();
    }
    EXPECT_EQ(at, size);
}

TEST_P(load_and_play_test, frontier_moves_with_every_receive) {
    // docs/ingest.md: "the file's size for readers is the byte count received so far". A sender
    // that stops after 10000 bytes (far from a window's end) must not keep them from readers.
    const std::uint64_t size = 2 * block;
    const std::size_t first = 10000;
    const auto body = pattern(size, 805);
    fs::file f = open("lap-frontier", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run.start({.file = &f, .length = size, .opts = {.load_and_play = true},
                           .send = {.wire = body, .hold_at = first, .max_piece = 4000}}));
    ASSERT_TRUE(wait_for([&] { return run.view->size() >= first; }, std::chrono::seconds(10)))
        << "the readers' end of file is " << run.view->size() << " with " << run.sent() << " bytes sent";
    EXPECT_EQ(run.view->size(), first);
    EXPECT_EQ(run.stats.received.load(), first);
    auto loans = cache_->loan_read(*run.view, 0, size);
    ASSERT_TRUE(loans) << describe(loans.error());
    std::uint64_t at = 0;
    for (const auto& loan : *loans) {
        ASSERT_EQ(0, std::memcmp(loan.bytes().data(), body.data() + at, loan.size()));
        at += loan.size();
    }
    EXPECT_EQ(at, first);
    run.release_sender();
    ASSERT_TRUE(run.wait_done());
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    ASSERT_TRUE(run.truncate(f));
    run.publish_succeeded();
    EXPECT_SAME_BYTES(pread_all(dir_.file("lap-frontier")).bytes, body);
}

TEST_P(load_and_play_test, late_reader_gets_evicted_windows_from_storage) {
    // More windows than the arena has buffers: by the time a reader starts, the first windows were
    // written and evicted, so it reads them back through the view's source (the file itself).
    const std::uint64_t size = 80 * block + 123;
    const auto body = pattern(size, 804);
    fs::file f = open("lap-late", fs::open_mode::create_new);
    std::optional<follower> reader;
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run.start({.file = &f, .length = size, .opts = {.load_and_play = true}, .send = {.wire = body}}));
    ASSERT_TRUE(run.wait_done());
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    const auto disk_reads_before = cache_->counters().snapshot().disk_read_bytes;
    reader.emplace(*cache_, run.view, body);
    ASSERT_TRUE(wait_for([&] { return reader->progress() == size || reader->ended(); }, std::chrono::seconds(30)));
    EXPECT_FALSE(reader->ended()) << "ended before publish";
    ASSERT_TRUE(run.truncate(f));
    run.publish_succeeded();
    ASSERT_TRUE(reader->wait_ended(std::chrono::seconds(30)));
    EXPECT_FALSE(reader->failure()) << describe(*reader->failure());
    EXPECT_EQ(reader->mismatch(), -1);
    EXPECT_EQ(reader->got(), size);
    EXPECT_GT(cache_->counters().snapshot().disk_read_bytes, disk_reads_before) << "nothing was evicted";
}

TEST_P(load_and_play_test, failing_body_wakes_the_reader_with_an_error) {
    const std::uint64_t size = 4 * block;
    const auto body = pattern(size, 801);
    const std::vector<std::byte> part(body.begin(), body.begin() + 2 * block + 100);
    fs::file f = open("lap-fail", fs::open_mode::create_new);
    std::optional<follower> reader;
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run.start({.file = &f, .length = size, .opts = {.load_and_play = true}, .send = slow(part)}));
    reader.emplace(*cache_, run.view, body);
    ASSERT_TRUE(run.wait_done());
    ASSERT_FALSE(run.total());
    EXPECT_EQ(run.total().error().code, errc::peer_gone);
    ASSERT_TRUE(reader->wait_ended(std::chrono::seconds(30))) << "the reader still waits after the job failed";
    ASSERT_TRUE(reader->failure()) << "the reader ended cleanly on a failed body";
    EXPECT_TRUE(reader->failure()->code == errc::peer_gone || reader->failure()->code == errc::writer_failed)
        << describe(*reader->failure());
    EXPECT_EQ(reader->mismatch(), -1);
    EXPECT_LE(reader->got(), part.size());
    EXPECT_EQ(run.view->status(), cache::file_status::failed);
}

TEST_P(load_and_play_test, publish_failed_wakes_the_reader_with_its_error) {
    const std::uint64_t size = 2 * block + 7;
    const auto body = pattern(size, 802);
    fs::file f = open("lap-unpublished", fs::open_mode::create_new);
    std::optional<follower> reader;
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run.start({.file = &f, .length = size, .opts = {.load_and_play = true}, .send = slow(body)}));
    reader.emplace(*cache_, run.view, body);
    ASSERT_TRUE(run.wait_done());
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    run.publish_failed(error{errc::no_space, 28, "test: publish"});
    ASSERT_TRUE(reader->wait_ended(std::chrono::seconds(30)));
    ASSERT_TRUE(reader->failure());
    EXPECT_EQ(reader->failure()->code, errc::no_space);
    EXPECT_EQ(reader->mismatch(), -1);
}

TEST_P(load_and_play_test, dropping_an_unpublished_job_fails_its_readers) {
    const std::uint64_t size = block + 1;
    const auto body = pattern(size, 803);
    fs::file f = open("lap-dropped", fs::open_mode::create_new);
    std::optional<follower> reader;
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run.start({.file = &f, .length = size, .opts = {.load_and_play = true}, .send = slow(body)}));
    reader.emplace(*cache_, run.view, body);
    ASSERT_TRUE(run.wait_done());
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    run.drop_job();
    ASSERT_TRUE(reader->wait_ended(std::chrono::seconds(30)));
    ASSERT_TRUE(reader->failure());
    EXPECT_EQ(reader->failure()->code, errc::writer_failed);
}

INSTANTIATE_TEST_SUITE_P(providers, load_and_play_test, ::testing::ValuesIn(both_providers), provider_label);

}  // namespace
}  // namespace datapump::test
