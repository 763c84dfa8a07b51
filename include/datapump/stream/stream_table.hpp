// File: datapump/stream/stream_table.hpp
//
// The live streams of a daemon, by id, with the VCR controls any thread may apply to them.
//
//   stream_table ──shares──> control (one per live stream) <──shares── the stream on its loop
//
// A `control` is the meeting point of two sides. The stream's loop thread owns the transfer and
// publishes its progress (position, bytes sent, state) into the control's atomics; control
// callers (the HTTP control API on any loop, the library) write requests (pause, seek, speed)
// into other atomics and call the control's `kick`, which wakes the owning loop. The loop reads
// the requests at its next step. Nothing is locked on the data path: the table's mutex is taken
// only to add, remove, find and list.
//
// Thread-safety: every member of stream_table, and of control except where it says "owner",
// may be called from any thread.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/base/export.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::stream {

enum class run_state : std::uint8_t { playing, paused, waiting, ending };
[[nodiscard]] const char* to_string(run_state s);

struct control {
    // Fixed at creation.
    std::uint64_t id = 0;
    std::string client;
    std::string file;
    std::uint64_t start = 0;  // first byte of the file the response covers
    std::uint64_t end = 0;    // one past the last
    std::uint64_t file_size = 0;
    std::uint64_t rate = 0;
    std::uint64_t burst = 0;
    unsigned loop = 0;
    std::string send_path;
    // The stream's capability: 32 lowercase hex digits of 128 random bits (getrandom), the only
    // name under which an anonymous client may control it (docs/daemon.md, "Control plane").
    // Empty when the kernel gave no random bytes: then the stream has no public control.
    std::string capability;

    // Progress, written by the owner with relaxed stores (a monitoring snapshot: readers accept a
    // value one step old; no other memory depends on these).
    std::atomic<std::uint64_t> position{0};
    std::atomic<std::uint64_t> bytes_sent{0};
    std::atomic<run_state> state{run_state::playing};

    // Requests, written by control callers, read by the owner at its next step. Release on the
    // write pairs with the owner's acquire exchange, so a request and the kick that follows it
    // are seen together.
    std::atomic<bool> pause_requested{false};
    std::atomic<std::int64_t> seek_to{-1};
    std::atomic<std::uint32_t> speed{1};

    // Set once by the owner before the control is published in the table; wakes the owner's loop.
    std::function<void()> kick;
};

class stream_table {
public:
    // Makes a control with a fresh id (never reused in the table's life) and a fresh random
    // capability. Not yet listed.
    [[nodiscard]] std::shared_ptr<control> make();
    // Lists `c` (after the owner set kick), by id and by capability.
    void add(const std::shared_ptr<control>& c);
    void remove(std::uint64_t id);
    [[nodiscard]] std::shared_ptr<control> find(std::uint64_t id) const;
    // The listed stream whose capability is `capability`; null for an unknown or ended one. A
    // hash lookup: capabilities are random, so its timing tells nothing about a valid one.
    [[nodiscard]] std::shared_ptr<control> find_capability(std::string_view capability) const;
    // Every listed stream, by increasing id.
    [[nodiscard]] std::vector<std::shared_ptr<control>> list() const;
    [[nodiscard]] std::size_t size() const;

    // VCR requests. Errors: not_found (no such stream), out_of_range (seek outside the file),
    // invalid_argument (speed 0 or above max_speed).
    [[nodiscard]] result<std::shared_ptr<control>> pause(std::uint64_t id);
    [[nodiscard]] result<std::shared_ptr<control>> resume(std::uint64_t id);
    [[nodiscard]] result<std::shared_ptr<control>> seek(std::uint64_t id, std::uint64_t offset);
    [[nodiscard]] result<std::shared_ptr<control>> set_speed(std::uint64_t id, std::uint32_t factor);

    static constexpr std::uint32_t max_speed = 64;

private:
    mutable std::mutex mutex_;
    std::unordered_map<std::uint64_t, std::shared_ptr<control>> streams_;  // guarded by mutex_
    std::unordered_map<std::string, std::shared_ptr<control>> by_capability_;  // guarded by mutex_
    std::atomic<std::uint64_t> next_id_{1};
};

}  // namespace datapump::stream
DATAPUMP_API_END
