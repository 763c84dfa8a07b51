// libFuzzer target: the shared-memory segment a client offers (src/ipc/segment.cpp) with a hostile
// header and hostile rings. The input: a control byte (bit 0: seal against shrinking, bit 1: size
// the memfd one page off), slots, input and output capacity (as a server would receive them in a
// hello, bounded to small segments), then the bytes the "client" wrote at the start of the memfd
// (header and rings). segment::attach must refuse anything that does not match the geometry it
// computes; an accepted segment's ring entries are then popped and mapped to slots the way the
// server's channel thread does, and must never name a slot outside the segment.
#include "datapump/ipc/internal/ring.hpp"
#include "datapump/ipc/internal/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

using namespace datapump::ipc::internal;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_ipc_segment: broken promise: %s\n", what);
        std::abort();
    }
}

std::uint32_t take_u32(const std::uint8_t*& data, std::size_t& size) {
    std::uint32_t v = 0;
    const std::size_t n = size < 4 ? size : 4;
    std::memcpy(&v, data, n);
    data += n;
    size -= n;
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) {
        return 0;
    }
    const std::uint8_t control = data[0];
    ++data;
    --size;
    // Small geometries only (the server's own limits are larger; the checks are the same).
    const std::uint32_t slots = take_u32(data, size) % 70;
    const std::uint32_t input_capacity = take_u32(data, size) % 9000;
    const std::uint32_t output_capacity = take_u32(data, size) % 9000;
    if (slots == 0) {
        return 0;
    }
    const geometry g = make_geometry(slots, input_capacity, output_capacity);
    int raw = ::memfd_create("fuzz-segment", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    check(raw >= 0, "memfd_create");
    datapump::unique_fd fd(raw);
    const std::uint64_t bytes = (control & 2U) != 0 ? g.total_size + 4096 : g.total_size;
    check(::ftruncate(fd.get(), static_cast<off_t>(bytes)) == 0, "ftruncate");
    const std::size_t header_bytes = size < bytes ? size : static_cast<std::size_t>(bytes);
    if (header_bytes > 0) {
        check(::pwrite(fd.get(), data, header_bytes, 0) == static_cast<ssize_t>(header_bytes), "pwrite");
    }
    if ((control & 1U) != 0) {
        (void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    }
    auto seg = segment::attach(std::move(fd), slots, input_capacity, output_capacity);
    if (!seg) {
        return 0;
    }
    check((control & 1U) != 0 && (control & 2U) == 0, "only a sealed memfd of the exact size is attached");
    check(seg->geo().total_size == g.total_size && seg->geo().slot_count == slots, "the geometry is ours");
    // The channel thread's view of the client's ring: every entry is checked before use.
    ring_consumer cs(seg->cs_ring(), seg->cs_entries(), g.ring_capacity);
    for (std::uint32_t i = 0; i < 2 * g.ring_capacity + 2; ++i) {
        const pop_result p = cs.pop();
        if (p.status != ring_status::ok) {
            break;
        }
        const std::uint32_t slot = seg->slot_of(p.value);
        check(slot == segment::no_slot || slot < slots, "a ring entry names a slot inside the segment");
        if (slot != segment::no_slot) {
            check(seg->offset_of(slot) == p.value, "slot_of and offset_of agree");
            slot_header* h = seg->slot(slot);
            check(reinterpret_cast<std::byte*>(h) + g.slot_size <= seg->base() + g.total_size,
                  "the slot lies within the mapping");
        }
    }
    return 0;
}
