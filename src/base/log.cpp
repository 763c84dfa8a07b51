#include "datapump/base/internal/log.hpp"

#include <string>

namespace datapump {

bool configure_logging(std::string_view level) {
    const auto parsed = spdlog::level::from_str(std::string(level));
    // from_str answers `off` for unknown names; only accept `off` when asked for by name.
    if (parsed == spdlog::level::off && level != "off") {
        return false;
    }
    spdlog::set_level(parsed);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%t] %v");  // ISO 8601 with the UTC offset
    return true;
}

}  // namespace datapump
