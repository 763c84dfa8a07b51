// File: datapump/ipc/internal/segment.hpp
//
// The mapped shared-memory segment of one connection (layout.hpp): created by the client, attached
// by the server after checking that the memfd is what the header and the hello message say.
//
// Thread-safety: immutable after creation; the mapped bytes follow the rules of layout.hpp.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/internal/layout.hpp"
#include "datapump/ipc/internal/ring.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace datapump::ipc::internal {

class segment {
public:
    segment() = default;
    segment(segment&& other) noexcept;
    segment& operator=(segment&& other) noexcept;
    segment(const segment&) = delete;
    segment& operator=(const segment&) = delete;
    ~segment();

    // A new memfd of this geometry, sealed against resizing, header and rings initialised.
    // Errors: no_buffers (memfd/mmap out of memory), io_error.
    [[nodiscard]] static result<segment> create(const geometry& g);
    // Maps a segment a client sent. Checks: the memfd's size, that it is sealed against shrinking,
    // magic, version, and that the header's geometry equals the one computed from the hello's
    // (slots, input, output). Errors: protocol_error naming what was wrong, io_error.
    [[nodiscard]] static result<segment> attach(unique_fd fd, std::uint32_t slots, std::uint32_t input_capacity,
                                                std::uint32_t output_capacity);

    [[nodiscard]] bool valid() const { return base_ != nullptr; }
    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] const geometry& geo() const { return geo_; }
    [[nodiscard]] std::byte* base() const { return base_; }

    [[nodiscard]] ring_header* cs_ring() const { return ring_at(geo_.cs_ring); }
    [[nodiscard]] ring_header* sc_ring() const { return ring_at(geo_.sc_ring); }
    [[nodiscard]] std::uint32_t* cs_entries() const { return entries_at(geo_.cs_ring); }
    [[nodiscard]] std::uint32_t* sc_entries() const { return entries_at(geo_.sc_ring); }

    // Slot `i` (i < slot_count) and its areas.
    [[nodiscard]] slot_header* slot(std::uint32_t i) const {
        return reinterpret_cast<slot_header*>(base_ + geo_.slots + std::size_t{geo_.slot_size} * i);
    }
    [[nodiscard]] std::span<std::byte> input_area(std::uint32_t i) const {
        return {base_ + geo_.slots + std::size_t{geo_.slot_size} * i + sizeof(slot_header), geo_.input_capacity};
    }
    [[nodiscard]] std::span<std::byte> output_area(std::uint32_t i) const {
        return {base_ + geo_.slots + std::size_t{geo_.slot_size} * i + sizeof(slot_header) + geo_.input_capacity,
                geo_.output_capacity};
    }
    // The offset sent through the rings for slot i, and back: no_slot when `offset` does not name
    // the start of a slot (never trust a ring entry).
    [[nodiscard]] std::uint32_t offset_of(std::uint32_t i) const { return geo_.slots + geo_.slot_size * i; }
    [[nodiscard]] std::uint32_t slot_of(std::uint32_t offset) const;
    static constexpr std::uint32_t no_slot = 0xffffffffU;

private:
    segment(unique_fd fd, std::byte* base, const geometry& g) : fd_(std::move(fd)), base_(base), geo_(g) {}
    [[nodiscard]] ring_header* ring_at(std::uint32_t off) const {
        return reinterpret_cast<ring_header*>(base_ + off);
    }
    [[nodiscard]] std::uint32_t* entries_at(std::uint32_t off) const {
        return reinterpret_cast<std::uint32_t*>(base_ + off + sizeof(ring_header));
    }
    void unmap();

    unique_fd fd_;
    std::byte* base_ = nullptr;
    geometry geo_{};
};

}  // namespace datapump::ipc::internal
