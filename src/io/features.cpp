#include "datapump/io/features.hpp"

#include "datapump/base/internal/log.hpp"

#include <liburing.h>

#include <mutex>

namespace datapump::io {

namespace {

kernel_features probe() {
    kernel_features f;
    io_uring_probe* p = io_uring_get_probe();
    if (p == nullptr) {
        return f;  // io_uring missing or disabled: every feature stays false
    }
    f.io_uring = true;
    f.read_fixed = io_uring_opcode_supported(p, IORING_OP_READ_FIXED) != 0;
    f.read = io_uring_opcode_supported(p, IORING_OP_READ) != 0;
    f.write_fixed = io_uring_opcode_supported(p, IORING_OP_WRITE_FIXED) != 0;
    f.write = io_uring_opcode_supported(p, IORING_OP_WRITE) != 0;
    f.send_zc = io_uring_opcode_supported(p, IORING_OP_SEND_ZC) != 0;
    f.splice = io_uring_opcode_supported(p, IORING_OP_SPLICE) != 0;
    f.fadvise = io_uring_opcode_supported(p, IORING_OP_FADVISE) != 0;
    io_uring_free_probe(p);
    return f;
}

}  // namespace

const kernel_features& detect_features() {
    // A function-local static: C++ guarantees one initialisation even with concurrent callers.
    static const kernel_features features = probe();
    return features;
}

void log_features_once(const kernel_features& f) {
    static std::once_flag once;
    std::call_once(once, [&f] {
        if (!f.io_uring) {
            spdlog::warn("io: io_uring is not available; file I/O falls back to preadv/pwrite on the calling thread");
            return;
        }
        struct row {
            bool present;
            const char* name;
            const char* fallback;
        };
        const row rows[] = {
            {f.read_fixed, "IORING_OP_READ_FIXED", "plain IORING_OP_READ into the arena"},
            {f.read, "IORING_OP_READ", "preadv on the calling thread"},
            {f.write_fixed, "IORING_OP_WRITE_FIXED", "plain write"},
            {f.write, "IORING_OP_WRITE", "pwrite on the calling thread"},
            {f.send_zc, "IORING_OP_SEND_ZC", "copying send or sendfile"},
            {f.splice, "IORING_OP_SPLICE", "sendfile"},
            {f.fadvise, "IORING_OP_FADVISE", "posix_fadvise on the calling thread"},
        };
        bool all = true;
        for (const row& r : rows) {
            if (!r.present) {
                all = false;
                spdlog::warn("io: kernel lacks {}; falling back to {}", r.name, r.fallback);
            }
        }
        if (all) {
            spdlog::info("io: io_uring has every opcode datapump uses");
        }
    });
}

}  // namespace datapump::io
