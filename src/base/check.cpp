#include "datapump/base/check.hpp"

#include <cstdio>
#include <cstdlib>

namespace datapump {

void internal_error(const char* condition, std::source_location where) {
    // stderr directly: the logger may be what is broken, and this must not allocate.
    std::fprintf(stderr, "datapump internal error: %s failed at %s:%u (%s)\n", condition,
                 where.file_name(), static_cast<unsigned>(where.line()), where.function_name());
    std::abort();
}

}  // namespace datapump
