// File: datapump/http/proto/mime.hpp
//
// Content-Type from a file name's extension: a fixed table of the media the server is meant for
// (video, audio, streaming manifests, subtitles, the web files of a player page), and the server's
// table (`mime_types`), which adds a system mime.types (Debian's /etc/mime.types, from the
// media-types package) for every extension the fixed table does not name. No sniffing.
//
// content_type_for is a pure function over static data. A mime_types is filled once and then only
// read: const members are thread-safe.
#pragma once

#include "datapump/base/export.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

DATAPUMP_API_BEGIN

namespace datapump::http {

// Returns the Content-Type for the extension of the last segment of `path` (after its last '.',
// compared case-insensitively), e.g. "video/mp4" for "a/B.MP4", "text/html; charset=utf-8" for
// "index.html"; "application/octet-stream" for an unknown or missing extension. The view refers to
// static storage.
[[nodiscard]] std::string_view content_type_for(std::string_view path);

// The server's table: the fixed one above first, then a system table for the rest. The fixed table
// wins where both name an extension: it holds the types players and browsers expect for this
// server's media, where system tables differ (Debian's /etc/mime.types says `ts` is Qt
// Linguist's text/vnd.trolltech.linguist; an HLS player needs video/mp2t for its segments).
class DATAPUMP_API mime_types {
public:
    // The fixed table only.
    mime_types() = default;

    // Adds the entries of `text`, in mime.types format: per line a type and its extensions,
    // separated by blanks; '#' starts a comment. A line whose type has no '/' (or anything but
    // letters, digits and "!#$&^_.+-" around it), and extensions longer than 32 bytes or with
    // bytes other than letters, digits and "+-_." are skipped. Extensions compare
    // case-insensitively; the first line naming one wins. Returns the entries added.
    std::size_t add_system(std::string_view text);

    // Content-Type for the extension of the last segment of `path`: the fixed table's, else the
    // system table's, else "application/octet-stream". The view lives as long as *this.
    [[nodiscard]] std::string_view lookup(std::string_view path) const;

    // Extensions the system table added.
    [[nodiscard]] std::size_t system_entries() const { return system_.size(); }

private:
    std::unordered_map<std::string, std::string> system_;  // lowercase extension -> type
};

}  // namespace datapump::http
DATAPUMP_API_END
