// File: src/fs/common/paths.hpp
//
// Path resolution shared by the local providers: every path resolves beneath the instance's root
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so '..', absolute paths and symlinks
// that leave the root fail in the kernel, not in string checks that races could defeat.
//
// Thread-safety: free functions over descriptors the caller owns.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/fs/provider.hpp"

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

namespace datapump::fs::local {

// Opens `root` as a directory (O_PATH). Errors: not_found, not_regular_file (not a directory),
// invalid_argument (null or empty).
[[nodiscard]] result<unique_fd> open_root(const char* root);

// Opens a regular file beneath `root_fd`: resolves with O_PATH first and checks the type (so a
// fifo never blocks and a device is never opened), then opens with `flags` and checks it is
// still the same inode (a replacement racing it is opened anew, up to 8 times). Errors:
// invalid_argument (empty path), escapes_root, not_found, not_regular_file, unsupported (openat2
// or O_DIRECT unavailable), file_changed (the name kept being replaced), io_error. `opened`, when given,
// gets the open file's attributes (its fstat, made anyway for the inode check: the caller need
// not stat again).
[[nodiscard]] result<unique_fd> open_regular(int root_fd, const char* path, int flags, mode_t mode = 0,
                                             file_info* opened = nullptr);

// Opens the directory `path` names beneath `root_fd` for reading (fsync-able); "" or "." is the
// root itself. Errors: as open_regular, not_regular_file when it is not a directory.
[[nodiscard]] result<unique_fd> open_directory(int root_fd, const char* path);

// Splits "a/b/c" into its directory "a/b" ("" for a bare name) and last component "c". Errors:
// invalid_argument when the last component is empty, "." or "..".
struct split_path {
    std::string directory;
    std::string name;
};
[[nodiscard]] result<split_path> split_last(const char* path);

// Attributes of an open file. Errors: io_error, file_changed (deleted).
[[nodiscard]] result<file_info> info_of(int fd);
// The same from a stat already made.
[[nodiscard]] result<file_info> info_from(const struct ::stat& st);

// Errors: out_of_range when `range` does not lie within [0, size].
[[nodiscard]] result<void> check_range(const file_info& info, byte_range range);

}  // namespace datapump::fs::local
