// The ingest job fed through a pipe instead of a socket (a local client's source, docs/ipc.md
// "Local ingest (put)"): READ at no offset instead of RECV, short reads looped. New files of every
// size around the alignment and window boundaries, a writer that closes early, a source in
// O_NONBLOCK mode (the job must wait, not fail), chunked framing, and a closed descriptor refused
// at start.
#include "unit/ingest/ingest_fixture.hpp"

#include <cstdio>
#include <limits>

namespace datapump::test {
namespace {

class pipe_test : public ingest_test {};

TEST_P(pipe_test, new_files_of_every_size_round_trip) {
    const std::uint64_t sizes[] = {0,         1,     4095,      4096,           4097,
                                   block - 1, block, block + 1, 7 * block + 123, 40 * block + 5};
    std::uint32_t seed = 700;
    for (const std::uint64_t size : sizes) {
        SCOPED_TRACE("size " + std::to_string(size));
        const std::string name = "pipe-" + std::to_string(size);
        const auto body = pattern(size, seed++);
        fs::file f = open(name, fs::open_mode::create_new);
        const std::uint64_t align = alignment_of(f);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run, {.file = &f, .offset = 0, .length = size, .old_size = 0,
                                      .send = {.wire = body, .seed = seed, .over_pipe = true}}));
        ASSERT_TRUE(run.total()) << describe(run.total().error());
        EXPECT_EQ(*run.total(), size);
        EXPECT_EQ(run.final_size, size);
        ASSERT_TRUE(run.truncate(f));
        const auto got = pread_all(dir_.file(name));
        EXPECT_EQ(got.size, size);
        EXPECT_SAME_BYTES(got.bytes, body);
        expect_writes_cover(run, 0, size, align);
        EXPECT_EQ(run.stats.received.load(), size);
        EXPECT_EQ(run.stats.copied.load(), 0U) << "bytes read from a pipe land in the window: no copy";
    }
}

TEST_P(pipe_test, an_unaligned_range_into_an_existing_file) {
    const std::uint64_t old_size = 3 * block + 1000;
    const auto before = pattern(old_size, 750);
    write_file(dir_.file("old"), before);
    const std::uint64_t offset = block - 1000;
    const auto body = pattern(2 * block + 5000, 751);
    const std::uint64_t end = offset + body.size();  // past the old end: the tail block is zero-filled
    auto expect = before;
    expect.resize(std::max(old_size, end));
    std::copy(body.begin(), body.end(), expect.begin() + static_cast<std::ptrdiff_t>(offset));
    fs::file f = open("old", fs::open_mode::write);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .offset = offset, .length = body.size(), .old_size = old_size,
                                  .send = {.wire = body, .over_pipe = true}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    ASSERT_TRUE(run.truncate(f));
    const auto got = pread_all(dir_.file("old"));
    EXPECT_EQ(got.size, std::max(old_size, end));
    EXPECT_SAME_BYTES(got.bytes, expect);
}

TEST_P(pipe_test, a_writer_closing_early_is_peer_gone) {
    const std::uint64_t sizes[] = {3 * block + 5, 100};
    for (const std::uint64_t size : sizes) {
        SCOPED_TRACE("size " + std::to_string(size));
        const auto body = pattern(size, 760);
        const std::vector<std::byte> part(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(size * 2 / 3));
        fs::file f = open("early-" + std::to_string(size), fs::open_mode::create_new);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run, {.file = &f, .length = size, .send = {.wire = part, .over_pipe = true}}));
        ASSERT_FALSE(run.total());
        EXPECT_EQ(run.total().error().code, errc::peer_gone) << describe(run.total().error());
        EXPECT_EQ(run.stats.received.load(), part.size());
    }
}

TEST_P(pipe_test, a_writer_closing_before_any_byte_is_peer_gone) {
    fs::file f = open("nothing", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = 1000, .send = {.over_pipe = true}}));
    ASSERT_FALSE(run.total());
    EXPECT_EQ(run.total().error().code, errc::peer_gone);
    EXPECT_TRUE(run.writes().empty());
}

TEST_P(pipe_test, a_nonblocking_source_is_waited_for) {
    // The caller's descriptor may be O_NONBLOCK (a local client's pipe: the flag belongs to the
    // open file, shared with the client). Small pieces with pauses make the job read the pipe empty
    // again and again: io_uring must wait for it (pipes support NOWAIT, so the kernel arms a poll)
    // rather than complete the read with EAGAIN. The pauses only pace the sender; the outcome does
    // not depend on them.
    const auto body = pattern(3 * block + 7, 770);
    fs::file f = open("nonblocking", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .length = body.size(),
                                  .send = {.wire = body,
                                           .pause = std::chrono::microseconds(500),
                                           .max_piece = 8000,
                                           .over_pipe = true,
                                           .nonblocking = true}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    ASSERT_TRUE(run.truncate(f));
    EXPECT_SAME_BYTES(pread_all(dir_.file("nonblocking")).bytes, body);
}

TEST_P(pipe_test, a_chunked_body_round_trips) {
    const auto body = pattern(2 * block + 333, 780);
    std::vector<std::byte> wire;
    const std::size_t sizes[] = {1, 4096, 17, block + 3, 100000};
    std::size_t at = 0;
    for (std::size_t i = 0; at < body.size(); ++i) {
        const std::size_t n = std::min(sizes[i % std::size(sizes)], body.size() - at);
        char line[32];
        std::snprintf(line, sizeof line, "%zx\r\n", n);
        append(wire, bytes_of(line));
        append(wire, std::span(body).subspan(at, n));
        append(wire, bytes_of("\r\n"));
        at += n;
    }
    append(wire, bytes_of("0\r\n\r\n"));
    fs::file f = open("chunked", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .coding = framing::chunked, .max_body = body.size(),
                                  .send = {.wire = wire, .max_piece = 20000, .over_pipe = true}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_EQ(*run.total(), body.size());
    EXPECT_TRUE(run.leftover.empty());
    ASSERT_TRUE(run.truncate(f));
    const auto got = pread_all(dir_.file("chunked"));
    EXPECT_EQ(got.size, body.size());
    EXPECT_SAME_BYTES(got.bytes, body);
}

TEST_P(pipe_test, a_closed_source_descriptor_is_refused_at_start) {
    fs::file f = open("closed", fs::open_mode::create_new);
    const int never_open = std::numeric_limits<int>::max();  // past any RLIMIT_NOFILE
    result<std::unique_ptr<ingest::job>> started = fail(errc::io_error, "not run");
    loop_->sync([&] {
        ingest::source from;
        from.socket = never_open;
        ingest::callbacks cb;
        cb.on_done = [](result<std::uint64_t>) {};
        started = ingest::job::start(loop_->loop(), *cache_, from, {.file = &f, .length = 10}, {}, std::move(cb),
                                     nullptr);
    });
    ASSERT_FALSE(started);
    EXPECT_EQ(started.error().code, errc::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(providers, pipe_test, ::testing::ValuesIn(both_providers), provider_label);

}  // namespace
}  // namespace datapump::test
