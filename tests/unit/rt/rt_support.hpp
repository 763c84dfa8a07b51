// Test support for rt/: a system on a manual clock (no threads: the test drives it with
// run_until), QoS built field by field, and the pattern a source writes for buffer k.
#pragma once

#include "datapump/rt/system.hpp"

#include "support/pattern.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>

namespace datapump::rt::testing {

using namespace std::chrono_literals;

inline qos make_qos(double rate, duration delay = duration(0), late_policy on_late = late_policy::deliver_late,
                    std::size_t buffer_count = 4, std::size_t buffer_size = 4096) {
    qos q;
    q.rate = rate;
    q.delay = delay;
    q.on_late = on_late;
    q.buffer_count = buffer_count;
    q.buffer_size = buffer_size;
    return q;
}

inline port_options budget_of(duration d) {
    port_options o;
    o.budget = d;
    return o;
}

inline system_config manual_config(const manual_clock& clock, unsigned vps = 1) {
    system_config config;
    config.vps = vps;
    config.time = &clock;
    config.engine = false;
    return config;
}

// One VP on the machine's clock, without real-time priority or pinning (tests check behaviour,
// not timing), and without the engine loop unless asked.
inline system_config real_time_config(const char* name = "rt", bool engine = false) {
    system_config config;
    config.vps = 1;
    config.priority = kernel_priority::none;
    config.pin = false;
    config.engine = engine;
    config.name = name;
    return config;
}

inline std::unique_ptr<system> make_system(const system_config& config) {
    auto made = system::create(config);
    EXPECT_TRUE(made.has_value()) << (made ? "" : describe(made.error()));
    return made ? std::move(*made) : nullptr;
}

// Opens a port or fails the test (an empty handle then).
inline port make_port(system& sys, std::string_view name, handler fn, duration budget = 100us) {
    auto p = sys.open_port(name, std::move(fn), budget_of(budget));
    EXPECT_TRUE(p.has_value()) << name << ": " << (p ? "" : describe(p.error()));
    return p ? std::move(*p) : port{};
}

// Connects or fails the test (an empty handle then).
inline connection connect_chain(system& sys, std::initializer_list<std::string_view> chain, const qos& q) {
    auto c = sys.connect(chain, q);
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().reason);
    return c ? std::move(*c) : connection{};
}

// Buffer k's bytes: they differ per k and per offset.
inline void fill(std::span<std::byte> bytes, std::uint64_t k) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        bytes[i] = datapump::testing::pattern_byte(k, i);
    }
}

inline bool holds(std::span<const std::byte> bytes, std::uint64_t k) {
    return datapump::testing::matches_pattern(k, 0, bytes);
}

}  // namespace datapump::rt::testing
