// File: datapump/ingest/upload_names.hpp
//
// Where an upload lives until it is published (docs/ingest.md, "Uploads: atomic publish"): a
// temporary file beside its target, `DIR/.NAME.dp-upload-PID-N`, renamed over `DIR/NAME` once
// complete and durable. A crash leaves such files behind; the daemon removes them at start-up.
//
// Several daemons may share one root: a temp file is locked (an exclusive OFD lock, which dies
// with its writer's open file, so with its process) for as long as it is written, and start-up
// removes only the temp files nobody holds locked (their writer is dead).
//
//   create_temp:        create_new ──> OFD write lock ──> still our name? ──> written, published
//   remove_leftovers:   open ──> OFD read lock? ── no (a live writer) ──> kept
//                                               └─ yes ──> unlink (lock held), close
//
// Thread-safety: free functions; temp_name() uses an atomic counter.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"
#include "datapump/fs/file.hpp"
#include "datapump/fs/registry.hpp"

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

// Removes every upload temp file beneath `root` whose writer is gone: those no one holds an OFD
// lock on (not following symlinks, not crossing into other file systems). A locked one belongs
// to a live upload (of another process sharing the root) and is left; `kept`, when given, gets
// how many were. Returns how many were removed. Errors: not_found (no root), io_error (the walk
// or an unlink failed; the files removed before it stay removed).
[[nodiscard]] result<std::uint64_t> remove_leftovers(const std::string& root, std::uint64_t* kept = nullptr);

// An upload's temp file, created and locked.
struct temp_file {
    std::string name;  // beneath the root (temp_name(path))
    fs::file file;     // open_mode::create_new; holds the lock until it is closed
};

// Creates the temp file for an upload to `path` (open_mode::create_new) and takes an exclusive
// lock on it for as long as `file` is open, so that remove_leftovers in another process leaves it.
// A name that exists (another process's) or that another process's start-up is removing is
// skipped for the next one. A provider without range locks gives an unlocked file. Errors: those
// of the open (not_found: no such folder; not_regular_file, escapes_root, no_space, ...), busy
// when no free name was found after a few tries.
[[nodiscard]] result<temp_file> create_temp(fs::provider_instance& instance, std::string_view path);

}  // namespace datapump::ingest
DATAPUMP_API_END
