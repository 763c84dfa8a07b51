// Test support: the bytes of test file `seed` at `offset`, from a formula. They vary with both,
// so a block read at the wrong offset, or a stale block of another file, never matches by chance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace datapump::testing {

inline std::byte pattern_byte(std::uint64_t seed, std::uint64_t offset) {
    const std::uint64_t x = (offset * 2654435761ULL) ^ (seed * 0x9e3779b97f4a7c15ULL) ^ (offset >> 13);
    return static_cast<std::byte>((x >> 7) & 0xff);
}

inline bool matches_pattern(std::uint64_t seed, std::uint64_t offset, std::span<const std::byte> bytes) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (bytes[i] != pattern_byte(seed, offset + i)) {
            return false;
        }
    }
    return true;
}

}  // namespace datapump::testing
