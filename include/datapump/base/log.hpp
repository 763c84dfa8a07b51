// File: datapump/base/log.hpp
//
// Logging goes through spdlog's default logger; this header only names the project's logger and
// its set-up so every part logs the same way. Never log on the I/O completion path. spdlog itself
// is not part of the API (the library's sources include datapump/base/internal/log.hpp).
#pragma once

#include "datapump/base/export.hpp"

#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump {

// Sets the default logger's level from a name (trace, debug, info, warn, error, off) and a
// pattern with the part name. Returns false for an unknown level name (the level is left as is).
bool configure_logging(std::string_view level);

}  // namespace datapump
DATAPUMP_API_END
