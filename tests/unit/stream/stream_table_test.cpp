#include "datapump/stream/stream_table.hpp"

#include <gtest/gtest.h>

namespace {

using datapump::errc;
using datapump::stream::stream_table;

TEST(stream_table, ids_are_unique_and_listing_is_ordered) {
    stream_table t;
    auto a = t.make();
    auto b = t.make();
    EXPECT_NE(a->id, b->id);
    t.add(b);
    t.add(a);
    const auto all = t.list();
    ASSERT_EQ(all.size(), 2U);
    EXPECT_LT(all[0]->id, all[1]->id);
    t.remove(a->id);
    EXPECT_EQ(t.size(), 1U);
    EXPECT_EQ(t.find(a->id), nullptr);
}

TEST(stream_table, capabilities_are_random_hex_and_found_only_while_listed) {
    stream_table t;
    auto a = t.make();
    auto b = t.make();
    ASSERT_EQ(a->capability.size(), 32U);
    EXPECT_EQ(a->capability.find_first_not_of("0123456789abcdef"), std::string::npos) << a->capability;
    EXPECT_NE(a->capability, b->capability);
    EXPECT_EQ(t.find_capability(a->capability), nullptr) << "not listed yet";
    t.add(a);
    t.add(b);
    EXPECT_EQ(t.find_capability(a->capability), a);
    EXPECT_EQ(t.find_capability(b->capability), b);
    EXPECT_EQ(t.find_capability(std::to_string(a->id)), nullptr);
    EXPECT_EQ(t.find_capability(""), nullptr);
    t.remove(a->id);
    EXPECT_EQ(t.find_capability(a->capability), nullptr) << "an ended stream's capability is dead";
    EXPECT_EQ(t.find_capability(b->capability), b);
}

TEST(stream_table, controls_set_requests_and_kick_the_owner) {
    stream_table t;
    auto c = t.make();
    c->file_size = 1000;
    int kicks = 0;
    c->kick = [&] { ++kicks; };
    t.add(c);
    ASSERT_TRUE(t.pause(c->id));
    EXPECT_TRUE(c->pause_requested.load());
    ASSERT_TRUE(t.resume(c->id));
    EXPECT_FALSE(c->pause_requested.load());
    ASSERT_TRUE(t.seek(c->id, 999));
    EXPECT_EQ(c->seek_to.load(), 999);
    ASSERT_TRUE(t.set_speed(c->id, 4));
    EXPECT_EQ(c->speed.load(), 4U);
    EXPECT_EQ(kicks, 4);
}

TEST(stream_table, bad_requests_are_refused_without_a_kick) {
    stream_table t;
    auto c = t.make();
    c->file_size = 1000;
    int kicks = 0;
    c->kick = [&] { ++kicks; };
    t.add(c);
    EXPECT_EQ(t.pause(c->id + 100).error().code, errc::not_found);
    EXPECT_EQ(t.seek(c->id, 1000).error().code, errc::out_of_range);
    EXPECT_EQ(t.set_speed(c->id, 0).error().code, errc::invalid_argument);
    EXPECT_EQ(t.set_speed(c->id, 65).error().code, errc::invalid_argument);
    EXPECT_EQ(kicks, 0);
    EXPECT_EQ(c->seek_to.load(), -1);
}

}  // namespace
