// File: tests/unit/stream/manual_rt.hpp
//
// An rt system on a manual clock for the stream tests: one VP, no engine thread; upcalls happen
// inside sys->run_until(), in order, on the calling thread.
//
// Thread-safety: belongs to its test.
#pragma once

#include "datapump/rt/system.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace datapump::test {

struct manual_system {
    explicit manual_system(double max_density = 0.9) {
        rt::system_config config;
        config.vps = 1;
        config.time = &clock;
        config.engine = false;
        config.max_density = max_density;
        auto made = rt::system::create(config);
        EXPECT_TRUE(made.has_value());
        sys = std::move(*made);
    }
    rt::manual_clock clock;
    std::unique_ptr<rt::system> sys;
};

}  // namespace datapump::test
