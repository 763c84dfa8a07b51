// File: examples/fs_provider/pattern_provider.hpp
//
// A third-party provider, built outside the engine and registered at run time with
// fs::registry::add(): it serves virtual files of deterministic bytes, so it needs no storage.
// A path names a file as "<seed>/<size>" (decimal), e.g. "7/1048576"; byte i of that file is
// pattern_byte(seed, i). The instance's root is required by the engine but unused here.
//
// It implements the required ops, access_pattern (recorded) and lock_buffer/unlock_buffer (to
// show the fast-path hook: it counts calls and forwards to the cache's try_loan). It is
// read-only, has no range locks and no change notifications: its files never change.
//
// Thread-safety: the table is immutable; the counters are relaxed atomics (statistics only).
#pragma once

#include <datapump/fs/provider.hpp>

#include <cstddef>
#include <cstdint>

namespace pattern_fs {

// The table to pass to registry::add(). Static storage: outlives every instance.
[[nodiscard]] const datapump::fs::provider_ops* provider();

[[nodiscard]] constexpr std::byte pattern_byte(std::uint64_t seed, std::uint64_t i) {
    const std::uint64_t x = (i ^ (seed * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL;
    return static_cast<std::byte>((x >> 31) & 0xff);
}

// Calls of lock_buffer / unlock_buffer across all instances (for the example's test).
[[nodiscard]] std::uint64_t lock_buffer_calls();
[[nodiscard]] std::uint64_t unlock_buffer_calls();

}  // namespace pattern_fs
