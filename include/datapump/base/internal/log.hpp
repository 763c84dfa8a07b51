// File: datapump/base/internal/log.hpp  (the library's own sources; not installed)
//
// The engine logs through spdlog's default logger. spdlog stays behind the public API: the
// installed datapump/base/log.hpp names only configure_logging(), and the sources that log
// include this header instead.
#pragma once

#include "datapump/base/log.hpp"

#include <spdlog/spdlog.h>
