// File: datapump/io/features.hpp
//
// What this kernel's io_uring can do, found once by probing (io_uring_get_probe) rather than by
// guessing from a kernel version. Every part that uses an io_uring opcode asks here first and
// takes its documented fallback when the opcode is missing:
//
//   feature       used for                          fallback when missing
//   io_uring      everything below                  preadv / pwrite on the caller's thread
//   read_fixed    O_DIRECT reads into the arena      plain read (no fixed buffer)
//   read          reads into any buffer              preadv
//   write_fixed   writes from the arena              plain write
//   write         writes from any buffer             pwrite
//   send_zc       zero-copy socket sends            send (copying) or sendfile
//   splice        file -> pipe -> socket             sendfile
//
// Ownership: plain values; detect_features() caches its answer for the life of the process.
// Thread-safety: every function may be called from any thread.
#pragma once

#include "datapump/base/export.hpp"

DATAPUMP_API_BEGIN

namespace datapump::io {

struct kernel_features {
    bool io_uring = false;     // io_uring_setup works (not disabled by kernel.io_uring_disabled)
    bool read_fixed = false;   // IORING_OP_READ_FIXED
    bool read = false;         // IORING_OP_READ
    bool write_fixed = false;  // IORING_OP_WRITE_FIXED
    bool write = false;        // IORING_OP_WRITE
    bool send_zc = false;      // IORING_OP_SEND_ZC
    bool splice = false;       // IORING_OP_SPLICE
    bool fadvise = false;      // IORING_OP_FADVISE
};

// Probes the kernel on the first call (a throw-away ring) and returns the cached answer after.
// Never fails: a kernel without io_uring reports every feature false.
[[nodiscard]] const kernel_features& detect_features();

// Logs one line per missing feature with the fallback taken (warn level), or one info line when
// everything is present. Logs only on the first call in the process; later calls do nothing.
void log_features_once(const kernel_features& features);

}  // namespace datapump::io
DATAPUMP_API_END
