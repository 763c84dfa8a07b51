// Per-client-address limits (stream/client_limits.hpp).
#include "datapump/stream/client_limits.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <thread>
#include <vector>

using datapump::stream::client_address;
using datapump::stream::client_limits;
using datapump::stream::client_refusal;
using datapump::stream::connection_slot;
using datapump::stream::stream_slot;

namespace {

client_address v4(const char* text) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, text, &a.sin_addr);
    return client_address::from(reinterpret_cast<const sockaddr*>(&a));
}

client_address v6(const char* text) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    ::inet_pton(AF_INET6, text, &a.sin6_addr);
    return client_address::from(reinterpret_cast<const sockaddr*>(&a));
}

}  // namespace

TEST(client_address, an_ipv4_mapped_ipv6_address_is_its_ipv4_address) {
    EXPECT_EQ(v4("127.0.0.2"), v6("::ffff:127.0.0.2"));
    EXPECT_NE(v4("127.0.0.2"), v4("127.0.0.3"));
    EXPECT_NE(v4("127.0.0.2"), v6("::1"));
    EXPECT_EQ(v6("::ffff:10.1.2.3").text(), "10.1.2.3");
    EXPECT_EQ(v6("2001:db8::7").text(), "2001:db8::7");
}

TEST(client_limits, connections_over_the_cap_are_refused_per_address_and_come_back_when_closed) {
    client_limits limits({.max_connections = 2});
    auto a1 = limits.connect(v4("127.0.0.2"));
    auto a2 = limits.connect(v6("::ffff:127.0.0.2"));  // the same client, seen as IPv6
    ASSERT_TRUE(a1 && a2);
    auto a3 = limits.connect(v4("127.0.0.2"));
    ASSERT_FALSE(a3);
    EXPECT_EQ(a3.error().limit, client_refusal::kind::connections);
    EXPECT_EQ(a3.error().held, 2U);
    EXPECT_EQ(limits.refusals(client_refusal::kind::connections), 1U);
    EXPECT_TRUE(limits.connect(v4("127.0.0.3")).has_value()) << "another address has its own count";
    a1->release();
    EXPECT_EQ(limits.of(v4("127.0.0.2")).connections, 1U);
    EXPECT_TRUE(limits.connect(v4("127.0.0.2")).has_value());
}

TEST(client_limits, streams_and_paced_rate_are_capped_per_address) {
    client_limits limits({.max_streams = 3, .max_rate = 10'000'000});
    const client_address a = v4("192.0.2.1");
    auto s1 = limits.start_stream(a, 6'000'000);
    ASSERT_TRUE(s1);
    auto s2 = limits.start_stream(a, 5'000'000);
    ASSERT_FALSE(s2) << "6 + 5 MB/s passes 10 MB/s";
    EXPECT_EQ(s2.error().limit, client_refusal::kind::rate);
    EXPECT_EQ(s2.error().held, 6'000'000U);
    auto s3 = limits.start_stream(a, 4'000'000);
    auto s4 = limits.start_stream(a, 0);  // unpaced: no rate, still a stream
    ASSERT_TRUE(s3 && s4);
    auto s5 = limits.start_stream(a, 0);
    ASSERT_FALSE(s5);
    EXPECT_EQ(s5.error().limit, client_refusal::kind::streams);
    EXPECT_EQ(limits.refusals(client_refusal::kind::streams), 1U);
    EXPECT_EQ(limits.refusals(client_refusal::kind::rate), 1U);
    EXPECT_NE(describe(s5.error(), a).find("192.0.2.1"), std::string::npos);
    EXPECT_TRUE(limits.start_stream(v4("192.0.2.2"), 9'000'000).has_value());
    const auto held = limits.of(a);
    EXPECT_EQ(held.streams, 3U);
    EXPECT_EQ(held.rate, 10'000'000U);
    s1->release();
    EXPECT_EQ(limits.of(a).rate, 4'000'000U);
    EXPECT_TRUE(limits.start_stream(a, 6'000'000).has_value());
}

TEST(client_limits, entries_go_when_their_address_holds_nothing) {
    client_limits limits({.max_connections = 1, .max_streams = 1});
    {
        auto c = limits.connect(v4("198.51.100.1"));
        auto s = limits.start_stream(v4("198.51.100.1"), 1000);
        ASSERT_TRUE(c && s);
        EXPECT_FALSE(limits.start_stream(v4("198.51.100.1"), 1000));
        EXPECT_FALSE(limits.connect(v4("198.51.100.1")));
        connection_slot moved = std::move(*c);
        EXPECT_EQ(limits.addresses(), 1U);
    }
    EXPECT_EQ(limits.addresses(), 0U);
    client_limits by_rate({.max_rate = 100});
    EXPECT_FALSE(by_rate.start_stream(v4("198.51.100.9"), 1000)) << "1000 B/s alone passes 100";
    EXPECT_EQ(by_rate.addresses(), 0U) << "a refused address that holds nothing is not kept";
}

TEST(client_limits, zero_means_no_limit) {
    client_limits limits({});
    std::vector<connection_slot> conns;
    std::vector<stream_slot> streams;
    for (int i = 0; i < 1000; ++i) {
        conns.push_back(std::move(*limits.connect(v4("127.0.0.1"))));
        streams.push_back(std::move(*limits.start_stream(v4("127.0.0.1"), 1'000'000'000)));
    }
    EXPECT_EQ(limits.of(v4("127.0.0.1")).streams, 1000U);
}

TEST(client_limits, counts_stay_exact_under_threads) {
    client_limits limits({.max_connections = 1'000'000});
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&limits] {
            for (int i = 0; i < 2000; ++i) {
                auto c = limits.connect(v4("127.0.0.5"));
                auto s = limits.start_stream(v4("127.0.0.5"), 10);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(limits.addresses(), 0U);
}

// conf: a reload's limits apply to what is counted after it; what an address holds stays.
TEST(client_limits, new_limits_apply_to_new_connections_and_streams) {
    client_limits limits({.max_connections = 1, .max_streams = 1});
    auto c1 = limits.connect(v4("127.0.0.2"));
    auto s1 = limits.start_stream(v4("127.0.0.2"), 0);
    ASSERT_TRUE(c1 && s1);
    EXPECT_FALSE(limits.connect(v4("127.0.0.2")));
    limits.set_config({.max_connections = 2, .max_streams = 1, .max_rate = 1000});
    EXPECT_EQ(limits.config().max_connections, 2U);
    EXPECT_EQ(limits.config().max_rate, 1000U);
    EXPECT_TRUE(limits.connect(v4("127.0.0.2")));
    EXPECT_FALSE(limits.start_stream(v4("127.0.0.2"), 0));
    limits.set_config({});  // no limits
    auto s2 = limits.start_stream(v4("127.0.0.2"), 5000);
    EXPECT_TRUE(s2);
    EXPECT_EQ(limits.of(v4("127.0.0.2")).streams, 2U);  // the first is still held
}
