// File: include/datapump/stream/send_path.hpp
//
// How a stream's body bytes reach the socket (docs/stream-engine.md, docs/daemon.md "Inside"):
//
//   sendfile, splice   page-cache paths: the file's pages go to the socket, nothing is loaned
//   send_zc, send      loan paths: the bytes are the cache's arena buffers, pinned by read
//                      loans until the kernel is done with them (SEND_ZC: its notification)
//   automatic          not a path: "let the server pick from its provider" (sendfile for posix,
//                      send_zc for direct); a stream::sender is never given it
#pragma once

#include "datapump/base/export.hpp"

#include <cstdint>

DATAPUMP_API_BEGIN

namespace datapump::stream {

enum class send_path : std::uint8_t { automatic, sendfile, splice, send_zc, send };

// The loan paths: the body is sent from arena buffers the cache lends.
[[nodiscard]] constexpr bool sends_loans(send_path p) { return p == send_path::send_zc || p == send_path::send; }

// The path one body takes: `configured`, except that on a loan path a file smaller than
// `page_cache_below` bytes goes by sendfile when its provider keeps it in the page cache too
// (`page_cache`: the provider has page-cache descriptors). nginx's `directio SIZE` draws the same
// line: O_DIRECT and the arena are for large files; a small one would take a whole arena buffer
// for a few KiB and gain nothing from bypassing the page cache. Per file size, not per range, so
// that one file never lives in both caches.
[[nodiscard]] constexpr send_path path_for(send_path configured, std::uint64_t page_cache_below,
                                           std::uint64_t file_size, bool page_cache) {
    return sends_loans(configured) && page_cache && file_size < page_cache_below ? send_path::sendfile : configured;
}

}  // namespace datapump::stream

DATAPUMP_API_END
