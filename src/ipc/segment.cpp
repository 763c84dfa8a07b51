#include "datapump/ipc/internal/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

namespace datapump::ipc::internal {

segment::segment(segment&& other) noexcept
    : fd_(std::move(other.fd_)), base_(std::exchange(other.base_, nullptr)), geo_(other.geo_) {}

segment& segment::operator=(segment&& other) noexcept {
    if (this != &other) {
        unmap();
        fd_ = std::move(other.fd_);
        base_ = std::exchange(other.base_, nullptr);
        geo_ = other.geo_;
    }
    return *this;
}

segment::~segment() { unmap(); }

void segment::unmap() {
    if (base_ != nullptr) {
        ::munmap(base_, geo_.total_size);
        base_ = nullptr;
    }
}

result<segment> segment::create(const geometry& g) {
    unique_fd fd(::memfd_create("datapump-ipc", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) {
        return fail_errno("ipc segment: memfd_create");
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(g.total_size)) != 0) {
        return fail_errno("ipc segment: ftruncate");
    }
    // The server checks these seals: a client cannot shrink the segment under the server's
    // mapping (which would turn the server's next access into SIGBUS).
    if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        return fail_errno("ipc segment: seal");
    }
    void* p = ::mmap(nullptr, g.total_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
    if (p == MAP_FAILED) {
        return fail_errno("ipc segment: mmap");
    }
    auto* base = static_cast<std::byte*>(p);
    auto* h = new (base) segment_header{};
    h->magic = segment_magic;
    h->version = layout_version;
    h->slot_count = g.slot_count;
    h->slot_size = g.slot_size;
    h->input_capacity = g.input_capacity;
    h->output_capacity = g.output_capacity;
    h->ring_capacity = g.ring_capacity;
    h->cs_ring = g.cs_ring;
    h->sc_ring = g.sc_ring;
    h->slots = g.slots;
    h->total_size = g.total_size;
    new (base + g.cs_ring) ring_header{};
    new (base + g.sc_ring) ring_header{};
    for (std::uint32_t i = 0; i < g.slot_count; ++i) {
        new (base + g.slots + std::size_t{g.slot_size} * i) slot_header{};
    }
    return segment(std::move(fd), base, g);
}

result<segment> segment::attach(unique_fd fd, std::uint32_t slots, std::uint32_t input_capacity,
                                std::uint32_t output_capacity) {
    const geometry g = make_geometry(slots, input_capacity, output_capacity);
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) {
        return fail_errno("ipc segment: fstat");
    }
    if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != g.total_size) {
        return fail(errc::protocol_error, "ipc segment: not a memfd of the announced size");
    }
    const int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
        return fail(errc::protocol_error, "ipc segment: not sealed against shrinking");
    }
    void* p = ::mmap(nullptr, g.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) {
        return fail_errno("ipc segment: mmap");
    }
    segment s(std::move(fd), static_cast<std::byte*>(p), g);
    // Read the header once; compare with what we computed ourselves (we use only our own).
    segment_header h{};
    std::memcpy(&h, s.base_, sizeof(h));
    if (h.magic != segment_magic || h.version != layout_version || h.slot_count != g.slot_count ||
        h.slot_size != g.slot_size || h.input_capacity != g.input_capacity ||
        h.output_capacity != g.output_capacity || h.ring_capacity != g.ring_capacity || h.cs_ring != g.cs_ring ||
        h.sc_ring != g.sc_ring || h.slots != g.slots || h.total_size != g.total_size) {
        return fail(errc::protocol_error, "ipc segment: header does not match the announced geometry");
    }
    return s;
}

std::uint32_t segment::slot_of(std::uint32_t offset) const {
    if (offset < geo_.slots) {
        return no_slot;
    }
    const std::uint32_t rel = offset - geo_.slots;
    if (rel % geo_.slot_size != 0 || rel / geo_.slot_size >= geo_.slot_count) {
        return no_slot;
    }
    return rel / geo_.slot_size;
}

}  // namespace datapump::ipc::internal
