#include "datapump/ingest/upload_names.hpp"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

namespace datapump::ingest {

namespace {

constexpr std::string_view marker = ".dp-upload-";

std::string_view last_component(std::string_view path) {
    const std::size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// nftw has no context pointer: the walk is serialised and its state lives here.
std::mutex walk_mutex;
std::uint64_t walk_removed = 0;
int walk_error = 0;

int visit(const char* path, const struct stat* st, int type, struct FTW* /*where*/) {
    if (type == FTW_F && S_ISREG(st->st_mode) && is_temp_name(path)) {
        if (::unlink(path) == 0) {
            ++walk_removed;
        } else if (errno != ENOENT) {
            walk_error = errno;
        }
    }
    return 0;
}

}  // namespace

std::string temp_name(std::string_view path) {
    static std::atomic<std::uint64_t> next{0};
    const std::size_t slash = path.rfind('/');
    const std::string_view dir = slash == std::string_view::npos ? std::string_view() : path.substr(0, slash + 1);
    const std::string_view name = last_component(path);
    std::string tail(marker);
    tail += std::to_string(::getpid());
    tail += '-';
    tail += std::to_string(next.fetch_add(1, std::memory_order_relaxed));
    // A name component is at most NAME_MAX (255) bytes: a long target name is shortened in its
    // temp name (the counter keeps temp names unique).
    constexpr std::size_t name_max = 255;
    const std::size_t room = name_max - 1 - tail.size();
    std::string out(dir);
    out += '.';
    out += name.substr(0, std::min(name.size(), room));
    out += tail;
    return out;
}

bool is_temp_name(std::string_view path) {
    const std::string_view name = last_component(path);
    if (name.size() < 2 || name.front() != '.') {
        return false;
    }
    const std::size_t at = name.rfind(marker);
    if (at == std::string_view::npos || at < 2) {
        return false;
    }
    // After the marker: PID '-' N, digits only.
    const std::string_view tail = name.substr(at + marker.size());
    const std::size_t dash = tail.find('-');
    if (dash == std::string_view::npos || dash == 0 || dash + 1 == tail.size()) {
        return false;
    }
    for (std::size_t i = 0; i < tail.size(); ++i) {
        if (i != dash && (tail[i] < '0' || tail[i] > '9')) {
            return false;
        }
    }
    return true;
}

result<std::uint64_t> remove_leftovers(const std::string& root) {
    struct stat st {};
    if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return fail(errc::not_found, "upload leftovers: the root is not a directory", errno);
    }
    const std::lock_guard lock(walk_mutex);
    walk_removed = 0;
    walk_error = 0;
    // nftw's only shared state is ours (walk_*), serialised by walk_mutex.
    if (::nftw(root.c_str(), &visit, 32, FTW_PHYS | FTW_MOUNT) != 0) {  // NOLINT(concurrency-mt-unsafe)
        return fail_errno("upload leftovers: walking the root");
    }
    if (walk_error != 0) {
        return fail(errc::io_error, "upload leftovers: unlink", walk_error);
    }
    return walk_removed;
}

}  // namespace datapump::ingest
