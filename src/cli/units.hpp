// Human units for the command-line tool's reports: binary prefixes (KiB, MiB, GiB, TiB), three
// significant digits, like `ls -h` and `dd status=progress` (which say what they mean).
//   human_bytes(1536)        -> "1.50 KiB"       human_bytes(100)  -> "100 B"
//   human_rate(157286400.0)  -> "150 MiB/s"
#pragma once

#include <cstdint>
#include <string>

namespace datapump::cli {

[[nodiscard]] std::string human_bytes(std::uint64_t bytes);
// bytes_per_second < 0 or not finite reads as 0.
[[nodiscard]] std::string human_rate(double bytes_per_second);

}  // namespace datapump::cli
