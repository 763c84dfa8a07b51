#include "units.hpp"

#include <array>
#include <cmath>
#include <cstdio>

namespace datapump::cli {

namespace {

std::string scaled(double value, const char* suffix) {
    static constexpr std::array<const char*, 5> prefixes{"", "Ki", "Mi", "Gi", "Ti"};
    if (!std::isfinite(value) || value < 0) {
        value = 0;
    }
    std::size_t p = 0;
    // 1023.9 KiB would print as "1024 KiB": move up once the rounded value reaches 1000.
    while (p + 1 < prefixes.size() && value >= 999.5) {
        value /= 1024.0;
        ++p;
    }
    char text[48] = {};
    if (p == 0) {
        std::snprintf(text, sizeof text, "%.0f %s", value, suffix);
    } else {
        const char* format = value < 9.995 ? "%.2f %s%s" : (value < 99.95 ? "%.1f %s%s" : "%.0f %s%s");
        std::snprintf(text, sizeof text, format, value, prefixes[p], suffix);
    }
    return text;
}

}  // namespace

std::string human_bytes(std::uint64_t bytes) {
    return scaled(static_cast<double>(bytes), "B");
}

std::string human_rate(double bytes_per_second) {
    return scaled(bytes_per_second, "B/s");
}

}  // namespace datapump::cli
