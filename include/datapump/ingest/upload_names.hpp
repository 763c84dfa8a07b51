// File: datapump/ingest/upload_names.hpp
//
// Where an upload lives until it is published (docs/ingest.md, "Uploads: atomic publish"): a
// temporary file beside its target, `DIR/.NAME.dp-upload-PID-N`, renamed over `DIR/NAME` once
// complete and durable. A crash leaves such files behind; the daemon removes them at start-up.
//
// Thread-safety: free functions; temp_name() uses an atomic counter.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <cstdint>
#include <string>
#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::ingest {

// The temp file for an upload to `path` (relative, "a/b/c.mp4" -> "a/b/.c.mp4.dp-upload-PID-N"),
// unique within this process.
[[nodiscard]] std::string temp_name(std::string_view path);

// True when the last component of `path` is an upload's temp file name.
[[nodiscard]] bool is_temp_name(std::string_view path);

// Removes every upload temp file beneath `root` (not following symlinks, not crossing into other
// file systems). Returns how many were removed. Errors: not_found (no root), io_error (the walk
// or an unlink failed; the files removed before it stay removed).
[[nodiscard]] result<std::uint64_t> remove_leftovers(const std::string& root);

}  // namespace datapump::ingest
DATAPUMP_API_END
