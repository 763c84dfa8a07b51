// stream::open and stream::readmit: a stream admitted with every part filled and its table entry;
// each gate refusing (client limits, capacity, rt) with its figures and nothing left held in the
// gates before it; an unpaced stream without an rt connection; dropping `admitted` giving every
// share back; a stalled stream's readmission. rt runs on a manual clock (no threads).
#include "datapump/stream/open.hpp"

#include "manual_rt.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace rt = datapump::rt;
namespace stream = datapump::stream;

stream::client_address address(std::uint32_t ipv4) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(ipv4);
    return stream::client_address::from(reinterpret_cast<const sockaddr*>(&sa));
}

// The parts of one server, rt on a manual clock: upcalls happen inside run_until, in order.
struct server_parts {
    explicit server_parts(std::uint64_t bytes_per_second = 0, stream::client_limits_config limits = {},
                          double max_density = 0.9)
        : rt_system(max_density), clients(limits), capacity(bytes_per_second) {
        pacing = std::make_unique<stream::rt_pacing>(*rt_system.sys);
    }
    [[nodiscard]] stream::parts parts() {
        return {.clients = clients, .capacity = capacity, .pacing = pacing.get(), .table = table};
    }

    datapump::test::manual_system rt_system;
    stream::client_limits clients;
    stream::admission capacity;
    std::unique_ptr<stream::rt_pacing> pacing;  // goes before rt
    stream::stream_table table;
    std::vector<std::uint64_t> woken;  // the ids the credit wake-up was called with
};

const stream::client_address viewer = address(0x7f000002);  // 127.0.0.2

// 2 MB/s asked with bursts of 1000 B (raised to rt's 64 KiB piece) for bytes [100, 1100) of a
// 5000-byte file.
stream::open_spec spec(server_parts& s, std::uint64_t rate = 2'000'000) {
    return {.from = viewer,
            .rate = rate,
            .burst = 1000,
            .file = "/movies/a.mp4",
            .start = 100,
            .length = 1000,
            .file_size = 5000,
            .send_path = "send_zc",
            .wake = [&s](std::uint64_t id) { s.woken.push_back(id); }};
}

TEST(stream_open, a_paced_stream_holds_every_part) {
    server_parts s(10'000'000);
    auto a = stream::open(s.parts(), spec(s));
    ASSERT_TRUE(a.has_value()) << stream::describe(a.error(), viewer);
    EXPECT_TRUE(a->slot);
    EXPECT_EQ(a->capacity.rate(), 2'000'000U);
    ASSERT_TRUE(a->pacing);
    EXPECT_EQ(a->pacing.piece(), 65536U);
    ASSERT_NE(a->controls, nullptr);
    EXPECT_EQ(a->rate, 2'000'000U);
    EXPECT_EQ(a->burst, 65536U);  // the bucket's depth: the asked 1000 B raised to rt's piece

    // Each gate counts it.
    EXPECT_EQ(s.clients.of(viewer).streams, 1U);
    EXPECT_EQ(s.clients.of(viewer).rate, 2'000'000U);
    EXPECT_EQ(s.capacity.reserved(), 2'000'000U);
    EXPECT_EQ(s.pacing->connections(), 1U);
    EXPECT_EQ(s.table.size(), 0U);  // made, not listed: the owner lists it

    // The credit wake-up is called with the stream's id: spend the start-up burst, wait for credit,
    // and let the next instant come.
    a->pacing.consume(a->pacing.allowance(65536));
    EXPECT_EQ(a->pacing.allowance(1), 0U);
    s.rt_system.sys->run_until(s.rt_system.clock.now() + 1s);
    ASSERT_FALSE(s.woken.empty());
    EXPECT_EQ(s.woken.front(), a->controls->id);
}

TEST(stream_open, the_table_entry_names_the_stream_s_file_range_rate_and_path) {
    server_parts s;
    auto a = stream::open(s.parts(), spec(s));
    ASSERT_TRUE(a.has_value());
    const stream::control& c = *a->controls;
    EXPECT_NE(c.id, 0U);
    EXPECT_EQ(c.file, "/movies/a.mp4");
    EXPECT_EQ(c.start, 100U);
    EXPECT_EQ(c.end, 1100U);
    EXPECT_EQ(c.file_size, 5000U);
    EXPECT_EQ(c.position.load(), 100U);
    EXPECT_EQ(c.bytes_sent.load(), 0U);
    EXPECT_EQ(c.rate, 2'000'000U);
    EXPECT_EQ(c.burst, 65536U);
    EXPECT_EQ(c.send_path, "send_zc");
    EXPECT_EQ(c.capability.size(), 32U);
    // The owner's to fill when it registers the stream on its loop.
    EXPECT_TRUE(c.client.empty());
    EXPECT_FALSE(c.kick);

    // Listed by its owner, it is found by id and by capability.
    s.table.add(a->controls);
    EXPECT_EQ(s.table.find(c.id), a->controls);
    EXPECT_EQ(s.table.find_capability(c.capability), a->controls);
    s.table.remove(c.id);
}

TEST(stream_open, an_unpaced_stream_holds_no_rt_connection_and_no_capacity) {
    server_parts s(1000);  // a capacity an unpaced stream never meets
    // No rt at all: an unpaced stream never asks it.
    auto a =
        stream::open({.clients = s.clients, .capacity = s.capacity, .pacing = nullptr, .table = s.table}, spec(s, 0));
    ASSERT_TRUE(a.has_value()) << stream::describe(a.error(), viewer);
    EXPECT_TRUE(a->slot);
    EXPECT_EQ(s.clients.of(viewer).streams, 1U);
    EXPECT_EQ(s.clients.of(viewer).rate, 0U);
    EXPECT_FALSE(a->pacing);
    EXPECT_EQ(a->capacity.rate(), 0U);
    EXPECT_EQ(s.capacity.reserved(), 0U);
    EXPECT_EQ(s.pacing->connections(), 0U);
    EXPECT_EQ(a->rate, 0U);
    EXPECT_EQ(a->burst, 1000U);  // as asked: nothing raises it
    EXPECT_EQ(a->controls->rate, 0U);
    EXPECT_EQ(a->controls->burst, 0U);  // the table shows no burst for an unpaced stream
}

TEST(stream_open, a_client_refusal_holds_nothing) {
    server_parts s(10'000'000, {.max_streams = 1});
    auto first = stream::open(s.parts(), spec(s));
    ASSERT_TRUE(first.has_value());
    const std::uint64_t first_id = first->controls->id;

    auto second = stream::open(s.parts(), spec(s));
    ASSERT_FALSE(second.has_value());
    const auto* why = std::get_if<stream::client_refusal>(&second.error());
    ASSERT_NE(why, nullptr);
    EXPECT_EQ(why->limit, stream::client_refusal::kind::streams);
    EXPECT_EQ(why->held, 1U);
    EXPECT_EQ(why->max, 1U);
    EXPECT_EQ(stream::describe(second.error(), viewer), stream::describe(*why, viewer));
    EXPECT_EQ(s.clients.refusals(stream::client_refusal::kind::streams), 1U);

    // The first gate refused: nothing else was asked.
    EXPECT_EQ(s.clients.of(viewer).streams, 1U);
    EXPECT_EQ(s.capacity.reserved(), 2'000'000U);
    EXPECT_EQ(s.capacity.refusals(), 0U);
    EXPECT_EQ(s.pacing->connections(), 1U);
    EXPECT_EQ(s.pacing->refusals(), 0U);
    EXPECT_EQ(s.table.make()->id, first_id + 1);  // no entry was made for it
}

TEST(stream_open, a_capacity_refusal_gives_the_client_slot_back) {
    server_parts s(3'000'000);
    auto first = stream::open(s.parts(), spec(s));
    ASSERT_TRUE(first.has_value());
    const std::uint64_t first_id = first->controls->id;

    auto second = stream::open(s.parts(), spec(s));
    ASSERT_FALSE(second.has_value());
    const auto* why = std::get_if<stream::refusal>(&second.error());
    ASSERT_NE(why, nullptr);
    EXPECT_EQ(why->capacity, 3'000'000U);
    EXPECT_EQ(why->reserved, 2'000'000U);
    EXPECT_EQ(why->asked, 2'000'000U);
    EXPECT_EQ(stream::describe(second.error(), viewer), why->text());
    EXPECT_EQ(s.capacity.refusals(), 1U);

    // The client gate's share is back; rt and the table were not asked.
    EXPECT_EQ(s.clients.of(viewer).streams, 1U);
    EXPECT_EQ(s.clients.of(viewer).rate, 2'000'000U);
    EXPECT_EQ(s.capacity.reserved(), 2'000'000U);
    EXPECT_EQ(s.pacing->connections(), 1U);
    EXPECT_EQ(s.table.make()->id, first_id + 1);
}

TEST(stream_open, an_rt_refusal_gives_the_slot_and_the_capacity_back_with_the_stream_s_figures) {
    // 20 us per tick at 2 MB/s in 64 KiB pieces (30.5 ticks/s): density 0.00061 each. A limit of
    // 0.001 takes one such stream, not two.
    server_parts s(10'000'000, {}, 0.001);
    auto first = stream::open(s.parts(), spec(s));
    ASSERT_TRUE(first.has_value()) << stream::describe(first.error(), viewer);

    auto second = stream::open(s.parts(), spec(s));
    ASSERT_FALSE(second.has_value());
    const auto* why = std::get_if<stream::rt_refusal>(&second.error());
    ASSERT_NE(why, nullptr);
    EXPECT_EQ(why->rate, 2'000'000U);
    EXPECT_EQ(why->piece, 65536U);
    EXPECT_NE(why->reason.find("density"), std::string::npos) << why->reason;
    // The words and figures of the 503 as before stream::open.
    EXPECT_EQ(stream::describe(second.error(), viewer),
              "the pacing scheduler (rt) refused the stream (2000000 B/s in pieces of 65536 B: 30.5 ticks/s): " +
                  why->reason);
    EXPECT_EQ(s.pacing->refusals(), 1U);

    // What the gates before it took is back; the entry made for it was never listed.
    EXPECT_EQ(s.clients.of(viewer).streams, 1U);
    EXPECT_EQ(s.clients.of(viewer).rate, 2'000'000U);
    EXPECT_EQ(s.capacity.reserved(), 2'000'000U);
    EXPECT_EQ(s.pacing->connections(), 1U);
    EXPECT_EQ(s.table.size(), 0U);
}

TEST(stream_open, dropping_admitted_gives_everything_back) {
    server_parts s(10'000'000);
    std::optional<stream::admitted> a;
    {
        auto opened = stream::open(s.parts(), spec(s));
        ASSERT_TRUE(opened.has_value());
        a.emplace(std::move(*opened));  // moved: the moved-from one holds nothing
    }
    EXPECT_EQ(s.clients.addresses(), 1U);
    EXPECT_EQ(s.capacity.reserved(), 2'000'000U);
    EXPECT_EQ(s.pacing->connections(), 1U);
    a.reset();
    EXPECT_EQ(s.clients.addresses(), 0U);
    EXPECT_EQ(s.clients.of(viewer).streams, 0U);
    EXPECT_EQ(s.capacity.reserved(), 0U);
    EXPECT_EQ(s.pacing->connections(), 0U);
    EXPECT_EQ(s.table.size(), 0U);
}

TEST(stream_open, readmit_takes_the_capacity_and_the_rt_connection_again) {
    server_parts s(3'000'000);
    auto a = stream::open(s.parts(), spec(s));
    ASSERT_TRUE(a.has_value());
    const stream::control& c = *a->controls;

    // The stall release gives both back; the slot and the entry stay.
    a->capacity.release();
    a->pacing.release();
    EXPECT_EQ(s.capacity.reserved(), 0U);
    EXPECT_EQ(s.pacing->connections(), 0U);

    // Meanwhile another stream takes the capacity: refused, and the refusal is not counted.
    auto other = s.capacity.reserve(2'000'000);
    ASSERT_TRUE(other.has_value());
    auto refused = stream::readmit(s.parts(), c, [&s](std::uint64_t id) { s.woken.push_back(id); });
    ASSERT_FALSE(refused.has_value());
    ASSERT_TRUE(std::holds_alternative<stream::refusal>(refused.error()));
    EXPECT_EQ(s.capacity.refusals(), 0U);
    EXPECT_EQ(s.pacing->connections(), 0U);

    // Once it ends: readmitted at the entry's rate, in pieces of its burst (rt's piece already).
    other->release();
    auto again = stream::readmit(s.parts(), c, [&s](std::uint64_t id) { s.woken.push_back(id); });
    ASSERT_TRUE(again.has_value()) << stream::describe(again.error(), viewer);
    EXPECT_EQ(again->capacity.rate(), 2'000'000U);
    ASSERT_TRUE(again->pacing);
    EXPECT_EQ(again->pacing.piece(), 65536U);
    EXPECT_EQ(s.capacity.reserved(), 2'000'000U);
    EXPECT_EQ(s.pacing->connections(), 1U);
    EXPECT_EQ(s.clients.of(viewer).streams, 1U);  // the slot was never given back

    // Its credit wakes the same stream.
    again->pacing.consume(again->pacing.allowance(65536));
    EXPECT_EQ(again->pacing.allowance(1), 0U);
    s.rt_system.sys->run_until(s.rt_system.clock.now() + 1s);
    ASSERT_FALSE(s.woken.empty());
    EXPECT_EQ(s.woken.front(), c.id);
}

TEST(stream_open, readmit_of_an_unpaced_stream_takes_nothing) {
    server_parts s(1000);
    auto a = stream::open(s.parts(), spec(s, 0));
    ASSERT_TRUE(a.has_value());
    auto again = stream::readmit(s.parts(), *a->controls, [](std::uint64_t) {});
    ASSERT_TRUE(again.has_value());
    EXPECT_FALSE(again->pacing);
    EXPECT_EQ(again->capacity.rate(), 0U);
    EXPECT_EQ(s.capacity.reserved(), 0U);
}

}  // namespace
