// The identity path of the ingest job: new files of every size around the alignment and window
// boundaries, unaligned ranges into existing files (read-modify-write of heads and tails,
// zero-filled blocks past the old end), and the caller's prefix. Each case checks the file
// byte-exact, its size, the job's total and the counters, for the posix and the direct provider.
#include "unit/ingest/ingest_fixture.hpp"

namespace datapump::test {
namespace {

TEST_P(ingest_test, new_files_of_every_size_round_trip) {
    const std::uint64_t sizes[] = {0, 1, 4095, 4096, 4097, block - 1, block, block + 1, 7 * block + 123};
    std::uint32_t seed = 100;
    for (const std::uint64_t size : sizes) {
        SCOPED_TRACE("size " + std::to_string(size));
        const std::string name = "new-" + std::to_string(size);
        const auto body = pattern(size, seed++);
        fs::file f = open(name, fs::open_mode::create_new);
        const std::uint64_t align = alignment_of(f);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run,
                           {.file = &f, .offset = 0, .length = size, .old_size = 0, .send = {.wire = body, .seed = seed}}));
        ASSERT_TRUE(run.total()) << describe(run.total().error());
        EXPECT_EQ(*run.total(), size);
        EXPECT_EQ(run.final_size, size);
        ASSERT_TRUE(run.truncate(f));
        const auto got = pread_all(dir_.file(name));
        EXPECT_EQ(got.size, size);
        EXPECT_SAME_BYTES(got.bytes, body);
        expect_writes_cover(run, 0, size, align);
        EXPECT_EQ(run.stats.received.load(), size);
        EXPECT_EQ(run.stats.copied.load(), 0U) << "no prefix: the engine copies nothing";
        EXPECT_EQ(run.stats.rmw_reads.load(), 0U) << "a new file has nothing to read";
        EXPECT_EQ(run.stats.zero_filled.load(), align > 1 && size % align != 0 ? 1U : 0U);
        EXPECT_EQ(run.prefix_used, 0U);
        EXPECT_EQ(run.http_status, 0);
    }
}

TEST_P(ingest_test, extent_alignment_is_o_direct_for_new_files) {
    // create_new opens with O_DIRECT where the file system allows it (ext4 / tmpfs here), so the
    // padded-write expectations above are exercised for both providers.
    fs::file f = open("probe", fs::open_mode::create_new);
    EXPECT_EQ(alignment_of(f), fs_block);
}

// An existing file of random content, and ranges that hit every read-modify-write case.
struct range_case {
    const char* what;
    std::uint64_t offset;
    std::uint64_t length;
    std::uint64_t rmw_reads;    // with O_DIRECT alignment (4096); alignment 1 reads nothing
    std::uint64_t zero_filled;
};

constexpr std::uint64_t old_size = 3 * block + 1000;

const range_case range_cases[] = {
    {"head only", 100, 2 * fs_block - 100, 1, 0},
    {"tail only", fs_block, 2 * fs_block + 77, 1, 0},
    {"head and tail in one fs block", fs_block + 4, 10, 1, 0},
    {"head and tail in different fs blocks", 5000, 15000, 2, 0},
    {"across a window boundary", block - 1000, 3000, 2, 0},
    {"across several windows", 123, 2 * block + 5000, 2, 0},
    {"aligned, inside", 2 * fs_block, 2 * fs_block, 0, 0},
    {"ends at the old end (short tail read)", fs_block, old_size - fs_block, 1, 0},
    {"one fs block across the old end", old_size - 10, 20, 1, 0},
    {"extends past the old end", old_size - 500, 10000, 1, 1},
    {"starts past the old end (a gap)", old_size + 5000, 100, 0, 1},
    {"aligned, past the old end", 4 * block, block, 0, 0},
    {"whole old file and more, unaligned end", 0, old_size + 3 * block + 5, 0, 1},
};

TEST_P(ingest_test, unaligned_ranges_into_an_existing_file) {
    std::uint32_t seed = 200;
    int n = 0;
    for (const range_case& rc : range_cases) {
        SCOPED_TRACE(std::string(rc.what) + ": offset " + std::to_string(rc.offset) + " length " +
                     std::to_string(rc.length));
        const std::string name = "old-" + std::to_string(n++);
        const auto before = pattern(old_size, seed++);
        write_file(dir_.file(name), before);
        const auto body = pattern(rc.length, seed++);
        const std::uint64_t end = rc.offset + rc.length;
        auto expect = before;
        expect.resize(std::max(old_size, end));  // a gap past the old end reads as zeros
        std::copy(body.begin(), body.end(), expect.begin() + static_cast<std::ptrdiff_t>(rc.offset));

        fs::file f = open(name, fs::open_mode::write);
        const std::uint64_t align = alignment_of(f);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run,
                           {.file = &f, .offset = rc.offset, .length = rc.length, .old_size = old_size,
                            .send = {.wire = body, .seed = seed}}));
        ASSERT_TRUE(run.total()) << describe(run.total().error());
        EXPECT_EQ(*run.total(), rc.length);
        EXPECT_EQ(run.final_size, std::max(old_size, end));
        ASSERT_TRUE(run.truncate(f));
        const auto got = pread_all(dir_.file(name));
        EXPECT_EQ(got.size, std::max(old_size, end));
        EXPECT_SAME_BYTES(got.bytes, expect);
        expect_writes_cover(run, rc.offset, end, align);
        EXPECT_EQ(run.stats.received.load(), rc.length);
        EXPECT_EQ(run.stats.copied.load(), 0U);
        EXPECT_EQ(run.stats.rmw_reads.load(), align > 1 ? rc.rmw_reads : 0U);
        EXPECT_EQ(run.stats.zero_filled.load(), align > 1 ? rc.zero_filled : 0U);
    }
}

TEST_P(ingest_test, prefix_bytes_are_copied_and_counted) {
    struct prefix_case {
        const char* what;
        std::uint64_t length;
        std::size_t prefix;  // bytes of the body given as prefix
        std::size_t extra;   // bytes after the body in the prefix (the next request's)
    };
    const prefix_case cases[] = {
        {"a few KiB of a longer body", 3 * block + 777, 10000, 0},
        {"the whole body and more", 5000, 5000, 3000},
        {"more than two windows", 3 * block, 2 * block + 5, 0},
        {"exactly the body", block, block, 0},
    };
    std::uint32_t seed = 300;
    int n = 0;
    for (const prefix_case& pc : cases) {
        SCOPED_TRACE(pc.what);
        const std::string name = "prefix-" + std::to_string(n++);
        const auto body = pattern(pc.length, seed++);
        std::vector<std::byte> head(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(pc.prefix));
        append(head, pattern(pc.extra, seed++));
        const std::vector<std::byte> wire(body.begin() + static_cast<std::ptrdiff_t>(pc.prefix), body.end());
        fs::file f = open(name, fs::open_mode::create_new);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run,
                           {.file = &f, .length = pc.length, .prefix = head, .send = {.wire = wire, .seed = seed}}));
        ASSERT_TRUE(run.total()) << describe(run.total().error());
        EXPECT_EQ(*run.total(), pc.length);
        EXPECT_EQ(run.prefix_used, pc.prefix) << "the prefix past the body is not the body's";
        EXPECT_EQ(run.stats.copied.load(), pc.prefix);
        EXPECT_EQ(run.stats.received.load(), pc.length);
        ASSERT_TRUE(run.truncate(f));
        const auto got = pread_all(dir_.file(name));
        EXPECT_EQ(got.size, pc.length);
        EXPECT_SAME_BYTES(got.bytes, body);
    }
}

TEST_P(ingest_test, prefix_lands_after_the_head_block_was_read) {
    // The head block's read-modify-write read must not overwrite prefix bytes copied into it.
    const auto before = pattern(old_size, 400);
    write_file(dir_.file("old"), before);
    const std::uint64_t offset = 5000;
    const std::uint64_t length = 20000;
    const auto body = pattern(length, 401);
    const std::vector<std::byte> head(body.begin(), body.begin() + 3000);
    const std::vector<std::byte> wire(body.begin() + 3000, body.end());
    auto expect = before;
    std::copy(body.begin(), body.end(), expect.begin() + offset);

    fs::file f = open("old", fs::open_mode::write);
    const std::uint64_t align = alignment_of(f);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run,
                       {.file = &f, .offset = offset, .length = length, .old_size = old_size, .prefix = head,
                        .send = {.wire = wire}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_EQ(run.prefix_used, head.size());
    EXPECT_EQ(run.stats.copied.load(), head.size());
    EXPECT_EQ(run.stats.rmw_reads.load(), align > 1 ? 2U : 0U);
    ASSERT_TRUE(run.truncate(f));
    const auto got = pread_all(dir_.file("old"));
    EXPECT_EQ(got.size, old_size);
    EXPECT_SAME_BYTES(got.bytes, expect);
}

TEST_P(ingest_test, prefix_buffer_may_be_reused_once_start_returned) {
    // ingest.hpp: the prefix is "copied at start", so the caller may reuse its head buffer at once.
    const std::uint64_t length = 3 * block;
    const auto body = pattern(length, 410);
    std::vector<std::byte> head(body.begin(), body.begin() + 10000);
    const std::vector<std::byte> wire(body.begin() + 10000, body.end());
    fs::file f = open("reused", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = length, .prefix = head, .send = {.wire = wire},
                                  .after_start = [&](ingest::job&) { std::fill(head.begin(), head.end(), std::byte{0xee}); }}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_EQ(run.stats.copied.load(), 10000U);
    ASSERT_TRUE(run.truncate(f));
    const auto got = pread_all(dir_.file("reused"));
    EXPECT_SAME_BYTES(got.bytes, body);
}

TEST_P(ingest_test, identity_reads_no_byte_past_the_body) {
    const std::uint64_t length = block + 10;
    const auto body = pattern(length, 420);
    auto wire = body;
    const auto next = pattern(5000, 421);
    append(wire, next);
    fs::file f = open("exact", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = length, .send = {.wire = wire}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_EQ(*run.total(), length);
    EXPECT_TRUE(run.leftover.empty());
    EXPECT_SAME_BYTES(run.drain_socket(), next);
    ASSERT_TRUE(run.truncate(f));
    EXPECT_SAME_BYTES(pread_all(dir_.file("exact")).bytes, body);
}

TEST_P(ingest_test, on_done_may_destroy_the_job) {
    const std::uint64_t length = 2 * block + 300;
    const auto body = pattern(length, 430);
    fs::file f = open("dropped", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = length, .send = {.wire = body}, .drop_in_on_done = true}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_FALSE(run.job_alive());
    ASSERT_TRUE(f.truncate_and_sync(length));
    EXPECT_SAME_BYTES(pread_all(dir_.file("dropped")).bytes, body);
}

TEST_P(ingest_test, two_jobs_share_one_loop) {
    // A loop serves several uploads at once: two jobs, both slow, interleave on one ring.
    const std::uint64_t size = 5 * block + 17;
    const auto a = pattern(size, 440);
    const auto b = pattern(size, 441);
    fs::file fa = open("two-a", fs::open_mode::create_new);
    fs::file fb = open("two-b", fs::open_mode::create_new);
    ingest_run ra(*loop_, *cache_);
    ingest_run rb(*loop_, *cache_);
    const send_plan slow{.pause = std::chrono::microseconds(500), .max_piece = 16 * 1024};
    send_plan sa = slow;
    sa.wire = a;
    send_plan sb = slow;
    sb.wire = b;
    sb.seed = 99;
    ASSERT_TRUE(ra.start({.file = &fa, .length = size, .opts = {.windows_in_flight = 2}, .send = sa}));
    ASSERT_TRUE(rb.start({.file = &fb, .length = size, .opts = {.windows_in_flight = 2}, .send = sb}));
    ASSERT_TRUE(ra.wait_done());
    ASSERT_TRUE(rb.wait_done());
    ASSERT_TRUE(ra.total()) << describe(ra.total().error());
    ASSERT_TRUE(rb.total()) << describe(rb.total().error());
    ASSERT_TRUE(ra.truncate(fa));
    ASSERT_TRUE(rb.truncate(fb));
    EXPECT_SAME_BYTES(pread_all(dir_.file("two-a")).bytes, a);
    EXPECT_SAME_BYTES(pread_all(dir_.file("two-b")).bytes, b);
}

TEST_P(ingest_test, start_refuses_what_can_never_work) {
    fs::file f = open("refused", fs::open_mode::create_new);
    const auto refused = [&](const ingest_case& c, errc want) {
        ingest_run run(*loop_, *cache_);
        auto started = run.start(c);
        ASSERT_FALSE(started);
        EXPECT_EQ(started.error().code, want);
        EXPECT_EQ(run.done_calls(), 0) << "a refused start runs no callback";
    };
    refused({.file = nullptr, .length = 10}, errc::invalid_argument);
    refused({.file = &f, .offset = 10, .length = 10, .opts = {.load_and_play = true}}, errc::invalid_argument);
    refused({.file = &f, .offset = 10, .old_size = 100, .coding = framing::chunked, .max_body = 100},
            errc::invalid_argument);
    fs::file r = [&] {
        write_file(dir_.file("ro"), pattern(10));
        return open("ro", fs::open_mode::read);
    }();
    refused({.file = &r, .length = 10}, errc::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(providers, ingest_test, ::testing::ValuesIn(both_providers), provider_label);

}  // namespace
}  // namespace datapump::test
