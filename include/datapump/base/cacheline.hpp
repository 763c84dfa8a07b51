// File: datapump/base/cacheline.hpp
#pragma once

#include "datapump/base/export.hpp"

#include <cstddef>

DATAPUMP_API_BEGIN

namespace datapump {

// Fixed rather than std::hardware_destructive_interference_size, whose value GCC warns may change
// between compiler versions; 64 bytes is right for every x86-64 and most arm64 parts.
inline constexpr std::size_t cacheline_size = 64;

}  // namespace datapump
DATAPUMP_API_END
