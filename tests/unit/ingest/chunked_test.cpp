// The chunked path of the ingest job: bodies in chunks of assorted sizes (1-byte chunks, chunk
// extensions, chunks larger than a window, a trailer), the bytes of the next request after the
// body (leftover), the prefix, and the refusals (400 for bad framing, 413 past max_body).
#include "unit/ingest/ingest_fixture.hpp"

#include <cstdio>

namespace datapump::test {
namespace {

const std::string next_request = "GET /next HTTP/1.1\r\nHost: example\r\n\r\n";

// `body` in chunks of the sizes in `sizes` (cycled), with extensions and size spellings varied,
// then the last chunk, a trailer field and the final CRLF.
std::vector<std::byte> encode_chunked(std::span<const std::byte> body, std::span<const std::size_t> sizes) {
    std::vector<std::byte> out;
    std::size_t at = 0;
    for (std::size_t i = 0; at < body.size(); ++i) {
        const std::size_t n = std::min(sizes[i % sizes.size()], body.size() - at);
        char line[64];
        switch (i % 4) {
            case 0: std::snprintf(line, sizeof line, "%zx\r\n", n); break;
            case 1: std::snprintf(line, sizeof line, "%zX;name=value\r\n", n); break;
            case 2: std::snprintf(line, sizeof line, "000%zx \t;ext;other=\"q\"\r\n", n); break;
            default: std::snprintf(line, sizeof line, "%zx;x\r\n", n); break;
        }
        append(out, bytes_of(line));
        append(out, body.subspan(at, n));
        append(out, bytes_of("\r\n"));
        at += n;
    }
    append(out, bytes_of("0;last=1\r\nX-Checksum: 12345\r\n\r\n"));
    return out;
}

const std::size_t assorted[] = {1, 1, 1, 17, 4096, 1, block, 3, 100000, 63, 64, 65, 2 * block + 7, 5, 1};

class chunked_test : public ingest_test {
protected:
    // A chunked ingest of `wire` (plus the next request behind it) into a new file: checks the
    // file, the total and that leftover + what is still in the socket == the next request.
    void round_trip(const std::string& name, const std::vector<std::byte>& body, std::size_t prefix_bytes) {
        auto wire = encode_chunked(body, assorted);
        const std::size_t body_wire = wire.size();
        append(wire, bytes_of(next_request));
        const std::vector<std::byte> prefix(wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(prefix_bytes));
        const std::vector<std::byte> rest(wire.begin() + static_cast<std::ptrdiff_t>(prefix_bytes), wire.end());

        fs::file f = open(name, fs::open_mode::create_new);
        const std::uint64_t align = alignment_of(f);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run, {.file = &f, .coding = framing::chunked, .prefix = prefix,
                                      .max_body = body.size(), .send = {.wire = rest, .max_piece = 20000}}));
        ASSERT_TRUE(run.total()) << describe(run.total().error());
        EXPECT_EQ(*run.total(), body.size());
        EXPECT_EQ(run.final_size, body.size());
        EXPECT_EQ(run.http_status, 0);
        EXPECT_EQ(run.prefix_used, std::min(prefix_bytes, body_wire));
        // What the job received past the body, then what it left in the socket: the next request.
        auto after = run.leftover;
        append(after, run.drain_socket());
        if (prefix_bytes > body_wire) {
            after.insert(after.begin(), prefix.begin() + static_cast<std::ptrdiff_t>(body_wire), prefix.end());
            EXPECT_TRUE(run.leftover.empty()) << "the prefix's own bytes past the body are not leftover";
        }
        EXPECT_SAME_BYTES(after, bytes_of(next_request));
        ASSERT_TRUE(run.truncate(f));
        const auto got = pread_all(dir_.file(name));
        EXPECT_EQ(got.size, body.size());
        EXPECT_SAME_BYTES(got.bytes, body);
        expect_writes_cover(run, 0, body.size(), align);
        EXPECT_EQ(run.stats.received.load(), body.size());
        EXPECT_LE(run.stats.copied.load(), body.size());
        EXPECT_EQ(run.stats.rmw_reads.load(), 0U);
        EXPECT_EQ(run.stats.zero_filled.load(), align > 1 && body.size() % align != 0 ? 1U : 0U);
    }

    // A chunked ingest that must be refused with `code` / `status`.
    void refused(const std::vector<std::byte>& wire, std::uint64_t max_body, errc code, int status,
                 std::span<const std::byte> prefix = {}) {
        fs::file f = open("refused-" + std::to_string(n_++), fs::open_mode::create_new);
        ingest_run run(*loop_, *cache_);
        ASSERT_TRUE(run_to_done(run, {.file = &f, .coding = framing::chunked, .prefix = prefix,
                                      .max_body = max_body, .send = {.wire = wire, .shut = false}}));
        ASSERT_FALSE(run.total()) << "accepted " << *run.total() << " bytes";
        EXPECT_EQ(run.total().error().code, code) << describe(run.total().error());
        EXPECT_EQ(run.http_status, status);
    }

    int n_ = 0;
};

TEST_P(chunked_test, assorted_chunks_round_trip) {
    round_trip("c-big", pattern(3 * block + 12345, 500), 0);
    round_trip("c-one", pattern(1, 501), 0);
    round_trip("c-window", pattern(block, 502), 0);
}

TEST_P(chunked_test, empty_body) {
    round_trip("c-empty", {}, 0);
}

TEST_P(chunked_test, prefix_holds_framing_and_data) {
    // The first 100 wire bytes: a size line, a few 1-byte chunks and part of a 4096-byte one.
    round_trip("c-prefix", pattern(2 * block + 99, 503), 100);
}

TEST_P(chunked_test, prefix_holds_the_whole_body_and_more) {
    const auto body = pattern(5000, 504);
    const std::size_t whole = encode_chunked(body, assorted).size() + next_request.size();
    round_trip("c-prefix-all", body, whole);
}

TEST_P(chunked_test, appends_at_an_unaligned_end_of_an_existing_file) {
    const std::uint64_t old = 5000;
    const auto before = pattern(old, 505);
    write_file(dir_.file("c-append"), before);
    const auto body = pattern(2 * block + 100, 506);
    auto expect = before;
    append(expect, body);
    fs::file f = open("c-append", fs::open_mode::write);
    const std::uint64_t align = alignment_of(f);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .offset = old, .old_size = old, .coding = framing::chunked,
                                  .max_body = body.size(), .send = {.wire = encode_chunked(body, assorted)}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    EXPECT_EQ(*run.total(), body.size());
    ASSERT_TRUE(run.truncate(f));
    const auto got = pread_all(dir_.file("c-append"));
    EXPECT_EQ(got.size, expect.size());
    EXPECT_SAME_BYTES(got.bytes, expect);
    expect_writes_cover(run, old, old + body.size(), align);
    EXPECT_EQ(run.stats.rmw_reads.load(), align > 1 ? 1U : 0U);
    EXPECT_EQ(run.stats.zero_filled.load(), align > 1 ? 1U : 0U);
}

TEST_P(chunked_test, short_append_inside_the_last_old_block) {
    // Head and tail in the old file's last, partial fs block: it is read (once), not zero-filled.
    const std::uint64_t old = 5000;
    const auto before = pattern(old, 511);
    write_file(dir_.file("c-short"), before);
    const auto body = pattern(10, 512);
    auto expect = before;
    append(expect, body);
    fs::file f = open("c-short", fs::open_mode::write);
    const std::uint64_t align = alignment_of(f);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .offset = old, .old_size = old, .coding = framing::chunked,
                                  .max_body = 100, .send = {.wire = encode_chunked(body, assorted)}}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    ASSERT_TRUE(run.truncate(f));
    const auto got = pread_all(dir_.file("c-short"));
    EXPECT_EQ(got.size, expect.size());
    EXPECT_SAME_BYTES(got.bytes, expect);
    EXPECT_EQ(run.stats.rmw_reads.load(), align > 1 ? 1U : 0U);
    EXPECT_EQ(run.stats.zero_filled.load(), 0U) << "the block was read, like the identity path counts it";
}

TEST_P(chunked_test, prefix_buffer_may_be_reused_once_start_returned) {
    const auto body = pattern(block + 5, 513);
    const auto wire = encode_chunked(body, assorted);
    std::vector<std::byte> head(wire.begin(), wire.begin() + 300);
    const std::vector<std::byte> rest(wire.begin() + 300, wire.end());
    fs::file f = open("c-reused", fs::open_mode::create_new);
    ingest_run run(*loop_, *cache_);
    ASSERT_TRUE(run_to_done(run, {.file = &f, .coding = framing::chunked, .prefix = head, .max_body = body.size(),
                                  .send = {.wire = rest},
                                  .after_start = [&](ingest::job&) { std::fill(head.begin(), head.end(), std::byte{0xee}); }}));
    ASSERT_TRUE(run.total()) << describe(run.total().error());
    ASSERT_TRUE(run.truncate(f));
    EXPECT_SAME_BYTES(pread_all(dir_.file("c-reused")).bytes, body);
}

TEST_P(chunked_test, malformed_framing_is_400) {
    refused(bytes_of("5\r\nhello\r\nZZ\r\n"), 1000, errc::protocol_error, 400);
    refused(bytes_of("5\r\nhelloXX\r\n0\r\n\r\n"), 1000, errc::protocol_error, 400);
    // After more than a window of data has been received and written.
    auto wire = bytes_of("20000\r\n");
    append(wire, pattern(0x20000, 507));
    append(wire, bytes_of("\r\n5\nabcde"));  // bare LF
    refused(wire, 1 << 20, errc::protocol_error, 400);
    // In the prefix: nothing is received, on_done still reports it.
    const auto bad = bytes_of("G\r\n");
    refused({}, 1000, errc::protocol_error, 400, bad);
}

TEST_P(chunked_test, body_over_max_body_is_413) {
    auto one = bytes_of("20000\r\n");
    append(one, pattern(0x20000, 508));
    refused(one, 100000, errc::full, 413);
    auto two = bytes_of("ea60\r\n");
    append(two, pattern(60000, 509));
    append(two, bytes_of("\r\nea60\r\n"));
    append(two, pattern(60000, 510));
    refused(two, 100000, errc::full, 413);
}

INSTANTIATE_TEST_SUITE_P(providers, chunked_test, ::testing::ValuesIn(both_providers), provider_label);

}  // namespace
}  // namespace datapump::test
