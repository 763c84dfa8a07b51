// File: datapump/base/check.hpp
//
// The one policy for internal bugs: log what broke and where, then abort. A broken invariant is
// never an error returned to a caller (those are for conditions the caller can act on).
#pragma once

#include "datapump/base/export.hpp"

#include <source_location>

DATAPUMP_API_BEGIN

namespace datapump {

[[noreturn]] void internal_error(const char* condition,
                                 std::source_location where = std::source_location::current());

}  // namespace datapump
DATAPUMP_API_END

// Checked in every build: the cost is a compare and a never-taken branch.
#define DP_CHECK(cond)                                   \
    do {                                                 \
        if (!(cond)) [[unlikely]] {                      \
            ::datapump::internal_error(#cond);           \
        }                                                \
    } while (false)
