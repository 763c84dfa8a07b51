#include "datapump/base/error.hpp"

#include <cstring>

namespace datapump {

std::unexpected<error> fail_errno(const char* what, int sys) {
    errc code = errc::io_error;
    switch (sys) {
        case ENOENT: code = errc::not_found; break;
        case EAGAIN: code = errc::would_block; break;
        case EXDEV: code = errc::escapes_root; break;
        case EISDIR: code = errc::not_regular_file; break;
        case EBUSY: code = errc::busy; break;
        case EINVAL: code = errc::invalid_argument; break;
        case EOPNOTSUPP: code = errc::unsupported; break;
        case ENOMEM:
        case ENOBUFS: code = errc::no_buffers; break;
        case ENOSPC:
        case EDQUOT: code = errc::no_space; break;
        default: break;
    }
    return std::unexpected(error{code, sys, what});
}

const char* errno_text(int sys) {
    // strerrordesc_np (glibc >= 2.32) returns a static string and touches no shared buffer.
    const char* text = ::strerrordesc_np(sys);
    return text != nullptr ? text : "unknown error";
}

std::string_view to_string(errc code) {
    switch (code) {
        case errc::would_block: return "would block";
        case errc::not_found: return "not found";
        case errc::not_regular_file: return "not a regular file";
        case errc::out_of_range: return "out of range";
        case errc::escapes_root: return "path escapes the served root";
        case errc::no_buffers: return "no free cache buffers (all pinned)";
        case errc::io_error: return "I/O error";
        case errc::file_changed: return "file changed during the operation";
        case errc::writer_failed: return "the writer failed";
        case errc::busy: return "busy";
        case errc::invalid_argument: return "invalid argument";
        case errc::unsupported: return "unsupported";
        case errc::closed: return "closed";
        case errc::full: return "full";
        case errc::peer_gone: return "the peer is gone";
        case errc::protocol_error: return "the peer broke the protocol";
        case errc::no_space: return "no space left on the file system";
    }
    return "unknown error";
}

std::string describe(const error& e, std::string_view subject) {
    std::string out = e.what;
    out += ": ";
    out += to_string(e.code);
    if (e.sys != 0) {
        out += " (";
        out += errno_text(e.sys);
        out += ")";
    }
    if (!subject.empty()) {
        out += " on ";
        out += subject;
    }
    return out;
}

}  // namespace datapump
