// The `datapump read` command: N readers of one file through the shared cache.
#pragma once

#include "progress.hpp"

#include <cstdint>
#include <string>

namespace datapump::cli {

struct read_options {
    std::string root = ".";
    std::string path;
    std::string provider = "direct";
    std::uint32_t readers = 1;
    std::uint32_t buffer_kib = 256;
    std::uint32_t cache_mib = 256;
    std::uint32_t readahead = 16;
    std::uint32_t chunk_kib = 1024;
    bool checksum = true;      // touch every byte (a consumer would); off for benchmarks
    bool verify = false;       // compare every byte with pread of the same file
    bool json = false;         // one JSON object on stdout, for scripts
    bool machine = false;      // key=value lines (deprecated: --json)
    bool no_fixed = false;     // direct: no registered buffers
    progress_mode progress = progress_mode::automatic;  // the progress line on stderr
};

// Runs the command; returns the process exit code (0 ok, 1 failure). Prints its report.
int run_read(const read_options& options);

}  // namespace datapump::cli
