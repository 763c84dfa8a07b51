// File: datapump/http/proto/mime.hpp
//
// Content-Type from a file name's extension: a fixed table of the media the server is meant for
// (video, audio, streaming manifests, the web files of a player page). No sniffing, no system
// mime.types, so the answer is the same on every host.
//
// Pure function over static data; thread-safe.
#pragma once

#include "datapump/base/export.hpp"

#include <string_view>

DATAPUMP_API_BEGIN

namespace datapump::http {

// Returns the Content-Type for the extension of the last segment of `path` (after its last '.',
// compared case-insensitively), e.g. "video/mp4" for "a/B.MP4", "text/html; charset=utf-8" for
// "index.html"; "application/octet-stream" for an unknown or missing extension. The view refers to
// static storage.
[[nodiscard]] std::string_view content_type_for(std::string_view path);

}  // namespace datapump::http
DATAPUMP_API_END
