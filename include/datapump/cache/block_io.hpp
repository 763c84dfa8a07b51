// File: datapump/cache/block_io.hpp
//
// What the cache needs from storage, and nothing more: read whole blocks into arena buffers and
// write them back. File-system providers (datapump/fs) implement these for each open file; the
// cache never sees paths, descriptors or providers. Block b of a file covers bytes
// [b * block_size, (b + 1) * block_size), block_size being the arena's buffer size.
//
// Both interfaces are slow-path only: their calls may block, and are made from worker threads,
// the prefetch thread or a caller that said it may block — never from an I/O completion path.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

DATAPUMP_API_BEGIN

namespace datapump::cache {

struct block_read {
    std::uint64_t offset = 0;       // file offset, a multiple of the block size
    std::span<std::byte> dst;       // the whole arena buffer (page aligned: O_DIRECT-safe)
    std::uint32_t buffer_index = 0; // index of dst in the arena (io_uring fixed-buffer index)
    // Set by the source: bytes read (less than dst.size() only for the file's last block), or
    // the error for this block.
    result<std::uint32_t> outcome = std::unexpected(error{errc::io_error, 0, "block read: not run"});
};

class block_source {
public:
    virtual ~block_source() = default;
    // Reads every request in `reads`, keeping several in flight where the source can, and sets
    // each outcome. Must not return before every outcome is set. Thread-safe: several threads
    // may read the same source at once.
    virtual void read_blocks(std::span<block_read> reads) = 0;
};

class block_sink {
public:
    virtual ~block_sink() = default;
    // Writes `bytes` at `offset` (a multiple of the block size). `buffer_index` is the arena
    // index of the bytes, for fixed-buffer writes. Returns once the bytes are with the kernel.
    [[nodiscard]] virtual result<void> write_block(std::uint64_t offset, std::span<const std::byte> bytes,
                                                   std::uint32_t buffer_index) = 0;
    // Called once after the last write: the file's final size is `size`; make it durable.
    [[nodiscard]] virtual result<void> finish(std::uint64_t size) = 0;
};

}  // namespace datapump::cache
DATAPUMP_API_END
