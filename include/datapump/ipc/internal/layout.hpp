// File: datapump/ipc/internal/layout.hpp
//
// The shared-memory segment of one client-server connection. The client creates it (memfd),
// the server maps it; both sides see the same bytes and neither trusts what the other wrote.
//
//   offset 0           segment_header                      one cache line
//   cs_ring            ring_header + u32[capacity]         client -> server slot offsets
//   sc_ring            ring_header + u32[capacity]         server -> client slot offsets
//   slots              slot_count x slot_size              [slot_header | input | output]
//
// Offsets only, never pointers. Every field that the other side writes is read once, into a
// local, and checked before use (see ring.hpp and the server's validation).
#pragma once

#include "datapump/base/cacheline.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace datapump::ipc::internal {

inline constexpr std::uint64_t segment_magic = 0x3130435049504444ULL;  // "DDPIPC01" little-endian
inline constexpr std::uint32_t layout_version = 1;

struct alignas(cacheline_size) segment_header {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t slot_count;
    std::uint32_t slot_size;        // header + input_capacity + output_capacity, cache-line multiple
    std::uint32_t input_capacity;
    std::uint32_t output_capacity;
    std::uint32_t ring_capacity;    // power of two >= slot_count
    std::uint32_t cs_ring;          // offset of the client -> server ring
    std::uint32_t sc_ring;          // offset of the server -> client ring
    std::uint32_t slots;            // offset of slot 0
    std::uint32_t reserved;
    std::uint64_t total_size;       // bytes of the segment
};
static_assert(std::is_standard_layout_v<segment_header>);
static_assert(sizeof(segment_header) == cacheline_size);

// A ring: producer line, consumer line, then the entries. Indices run free (wrap at 2^32); an
// entry lives at index & (capacity - 1).
struct ring_header {
    // Producer's line. `tail` is written by the producer only (release), read by the consumer
    // (acquire). `bell` is the futex word the consumer sleeps on; the producer bumps it and wakes
    // only when `sleeping` says the consumer sleeps.
    alignas(cacheline_size) std::atomic<std::uint32_t> tail;
    std::atomic<std::uint32_t> bell;
    // Consumer's line. `head` is written by the consumer only (release), read by the producer.
    alignas(cacheline_size) std::atomic<std::uint32_t> head;
    std::atomic<std::uint32_t> sleeping;
};
static_assert(std::is_standard_layout_v<ring_header>);
static_assert(sizeof(ring_header) == 2 * cacheline_size);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// Slot flags (header.flags): set by the client.
inline constexpr std::uint32_t flag_sync = 1U << 0;     // complete through `done`, not the s->c ring
inline constexpr std::uint32_t flag_worker = 1U << 1;   // run on the server's worker pool, not inline

struct alignas(cacheline_size) slot_header {
    std::uint32_t code;
    std::uint32_t flags;
    std::uint32_t input_len;
    std::uint32_t output_cap;      // bytes of the output area the client offers for this command
    std::uint32_t sequence;        // client-chosen; echoed in nothing, for debugging
    std::int32_t status;           // server: the handler's status code
    std::uint32_t output_len;      // server: bytes written to the output area
    std::uint32_t reserved;
    // Sync completion: the server stores 1 (release) after status and output; the caller waits
    // for it (acquire). `waiting` says the caller sleeps on `done` (futex): the server wakes it
    // only then.
    alignas(16) std::atomic<std::uint32_t> done;
    std::atomic<std::uint32_t> waiting;
};
static_assert(std::is_standard_layout_v<slot_header>);
static_assert(sizeof(slot_header) == cacheline_size);

// A slot-header field the other side may be writing right now: one relaxed atomic access each,
// so every check and every use of a value see the same value (and no torn read).
[[nodiscard]] inline std::uint32_t read_field(const std::uint32_t& field) {
    return __atomic_load_n(&field, __ATOMIC_RELAXED);
}
[[nodiscard]] inline std::int32_t read_field(const std::int32_t& field) {
    return __atomic_load_n(&field, __ATOMIC_RELAXED);
}
inline void write_field(std::uint32_t& field, std::uint32_t v) { __atomic_store_n(&field, v, __ATOMIC_RELAXED); }
inline void write_field(std::int32_t& field, std::int32_t v) { __atomic_store_n(&field, v, __ATOMIC_RELAXED); }

struct geometry {
    std::uint32_t slot_count;
    std::uint32_t input_capacity;
    std::uint32_t output_capacity;
    std::uint32_t ring_capacity;
    std::uint32_t slot_size;
    std::uint32_t cs_ring;
    std::uint32_t sc_ring;
    std::uint32_t slots;
    std::uint64_t total_size;
};

[[nodiscard]] constexpr std::uint32_t round_up(std::uint32_t v, std::uint32_t to) {
    return (v + to - 1) / to * to;
}

// The layout for these capacities. Callers check the inputs (see limits in client/server).
[[nodiscard]] constexpr geometry make_geometry(std::uint32_t slot_count, std::uint32_t input_capacity,
                                               std::uint32_t output_capacity) {
    geometry g{};
    g.slot_count = slot_count;
    g.input_capacity = round_up(input_capacity, cacheline_size);
    g.output_capacity = round_up(output_capacity, cacheline_size);
    g.ring_capacity = 1;
    while (g.ring_capacity < slot_count) {
        g.ring_capacity <<= 1U;
    }
    g.slot_size = static_cast<std::uint32_t>(sizeof(slot_header)) + g.input_capacity + g.output_capacity;
    const std::uint32_t ring_bytes =
        round_up(static_cast<std::uint32_t>(sizeof(ring_header)) + 4 * g.ring_capacity, cacheline_size);
    g.cs_ring = static_cast<std::uint32_t>(sizeof(segment_header));
    g.sc_ring = g.cs_ring + ring_bytes;
    g.slots = round_up(g.sc_ring + ring_bytes, 4096);
    g.total_size = std::uint64_t{g.slots} + std::uint64_t{g.slot_size} * slot_count;
    g.total_size = (g.total_size + 4095) / 4096 * 4096;
    return g;
}

}  // namespace datapump::ipc::internal
