// File: datapump/rt/handler.hpp
//
// rthandlers: the application's code, upcalled by the system (seed 001: the system is active,
// the application passive). A handler is attached to a port; when the port is a stage of a
// connection, the system calls it once per buffer, at the instant the connection's QoS asks for,
// on one of its virtual processors:
//
//   source (stage 0)  fills up.data() and sets up.length (default: the whole buffer)
//   middle stages     see the same buffer (same address: zero copies) and may change it in place
//   sink (last)       consumes it
//
// The buffer is the system's, lent for the duration of the upcall. To keep it longer, a handler
// calls up.keep(): the returned held_buffer is a loan with a deadline (the buffer's ideal instant
// plus the connection's delay bound: "transport time plus handler time"). A loan held past its
// deadline is reclaimed: its bytes become ordinary (swappable) memory at the same address, the
// pool gets its memory back at a new address, and `reclaims` is counted. The holder loses nothing:
// its pointer stays valid and the bytes stay the same. That is why a kept buffer is read-only to
// its holder. (A middle stage's keep() shares the buffer with the stages after it: they may still
// change it in place until the chain ends; reclaim waits for that.)
//
// For a direct connection (system::connect_direct) the bytes never reach the application: the
// handler is upcalled with a null buffer (up.data().data() == nullptr) and up.length = the bytes
// the engine moved, for synchronisation only.
//
// Rules for handlers: return quickly (within the budget the port declared: nothing preempts an
// upcall, and an overrun is counted); never block on the engine (post to it: system::post); never
// touch an upcall's buffer after returning unless it was kept.
//
// Thread-safety: an upcall runs on a VP thread (or, on a manual clock, the thread in
// system::run_until). A connection's stages run one at a time, in order, on one VP.
// held_buffer may be moved to and released on any thread.
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/rt/clock.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

DATAPUMP_API_BEGIN

namespace datapump::rt {

// Private state defined under src/: declared outside the exported region (the library's
// default, hidden), so that nothing of it is exported.
DATAPUMP_API_END
namespace detail {
struct loan_record;
struct job;
class scheduler;
}  // namespace detail
DATAPUMP_API_BEGIN

// A kept buffer: read-only bytes that stay valid until the handle is dropped, whether or not the
// system reclaimed the pool's memory meanwhile.
class held_buffer {
public:
    held_buffer() = default;
    held_buffer(held_buffer&& other) noexcept;
    held_buffer& operator=(held_buffer&& other) noexcept;
    held_buffer(const held_buffer&) = delete;
    held_buffer& operator=(const held_buffer&) = delete;
    ~held_buffer();

    [[nodiscard]] explicit operator bool() const { return record_ != nullptr; }
    // The bytes, as the stage that kept them left them. Valid until release or destruction.
    [[nodiscard]] std::span<const std::byte> data() const;
    [[nodiscard]] std::uint64_t sequence() const;
    // True once the system moved the bytes out of the pool (the deadline passed).
    [[nodiscard]] bool reclaimed() const;
    // Gives the loan back now (the destructor does the same).
    void release();

private:
    friend struct detail::job;
    explicit held_buffer(std::shared_ptr<detail::loan_record> record) : record_(std::move(record)) {}
    std::shared_ptr<detail::loan_record> record_;
};

class upcall {
public:
    upcall(const upcall&) = delete;
    upcall& operator=(const upcall&) = delete;

    // The buffer (capacity = the connection's buffer size); null for direct connections.
    [[nodiscard]] std::span<std::byte> data() const { return data_; }
    // Bytes valid in the buffer. The source sets it (default: the whole buffer); a later stage
    // may lower it. For a null buffer: the bytes the engine moved for this buffer.
    [[nodiscard]] std::size_t length() const { return length_; }
    void set_length(std::size_t n) { length_ = n < data_.size() || data_.data() == nullptr ? n : data_.size(); }
    // The buffer's number within its connection (0, 1, …).
    [[nodiscard]] std::uint64_t sequence() const { return sequence_; }
    // Which stage is being upcalled (0 = the source) and how many the chain has.
    [[nodiscard]] unsigned stage() const { return stage_; }
    [[nodiscard]] unsigned stages() const { return stages_; }
    // The buffer's ideal instant t_k and its deadline t_k + D.
    [[nodiscard]] time_point ideal() const { return ideal_; }
    [[nodiscard]] time_point deadline() const { return deadline_; }
    // True during connect-time calibration of a handler without a declared budget: the buffer is
    // scratch, nothing will follow; a handler with side effects should skip them.
    [[nodiscard]] bool calibrating() const { return calibrating_; }

    // Source only: this is the last buffer; the connection ends after it passes the chain.
    void end_of_stream() { end_ = true; }
    // Keeps the buffer past the upcall (see the banner). Returns an empty handle for null
    // buffers and calibration runs.
    [[nodiscard]] held_buffer keep();

private:
    friend struct detail::job;
    friend class detail::scheduler;
    upcall() = default;

    std::span<std::byte> data_;
    std::size_t length_ = 0;
    std::uint64_t sequence_ = 0;
    unsigned stage_ = 0;
    unsigned stages_ = 0;
    time_point ideal_{};
    time_point deadline_{};
    bool calibrating_ = false;
    bool end_ = false;
    detail::job* job_ = nullptr;
};

using handler = std::function<void(upcall&)>;

}  // namespace datapump::rt
DATAPUMP_API_END
