// File: datapump/ipc/internal/ring.hpp
//
// One direction of a channel: a single-producer single-consumer FIFO of u32 slot offsets in shared
// memory, with a futex doorbell. The two ends live in different processes; each end keeps its own
// index and a cached copy of the other's in its own (private) memory, so a push or pop touches the
// other side's cache line only when the cached copy says the ring looks full or empty.
//
//   ring_header.tail  written by the producer (release), read by the consumer (acquire)
//   ring_header.head  written by the consumer (release), read by the producer (acquire)
//   entries[i & (capacity-1)]  written by the producer before the tail store that publishes it
//
// The other side may be hostile: an index it wrote that is more than `capacity` away from ours
// is reported as `corrupt`, never followed.
//
// Doorbell (Dekker-style: the four crossing operations are seq_cst, no fences, which TSan cannot
// model):
//   consumer about to sleep: sleeping = 1 (seq_cst); re-read tail (seq_cst); futex_wait(bell, seen)
//   producer after a push:   tail = t (seq_cst); if sleeping (seq_cst): bell++, futex_wake(bell)
// At least one side sees the other's store, so a push is never missed by a sleeping consumer.
//
// Thread-safety: one thread at a time per end (the producer end and the consumer end are
// separate objects, move-only, and may be used by two different threads or processes).
#pragma once

#include "datapump/ipc/internal/layout.hpp"
#include "datapump/ipc/wait.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace datapump::ipc::internal {

enum class ring_status : std::uint8_t { ok, empty, full, corrupt };

struct pop_result {
    ring_status status;
    std::uint32_t value;
};

class ring_producer {
public:
    ring_producer() = default;
    ring_producer(ring_header* header, std::uint32_t* entries, std::uint32_t capacity);

    // Appends `value` and wakes a sleeping consumer. ok, full, or corrupt (the consumer's head is
    // not within capacity of our tail).
    [[nodiscard]] ring_status push(std::uint32_t value, bool ring_now = true);
    // Wakes the consumer if it sleeps. After quiet pushes (ring_now = false), which batch a run of
    // completions into one wake-up: a producer must ring() before it waits or stops producing.
    void ring();
    [[nodiscard]] std::uint32_t capacity() const { return capacity_; }

private:
    void wake_if_sleeping();

    ring_header* header_ = nullptr;
    std::uint32_t* entries_ = nullptr;
    std::uint32_t capacity_ = 0;
    std::uint32_t tail_ = 0;         // our index (also in shared memory, but we trust only this)
    std::uint32_t head_cache_ = 0;   // last head we read
};

class ring_consumer {
public:
    ring_consumer() = default;
    ring_consumer(ring_header* header, std::uint32_t* entries, std::uint32_t capacity);

    // Takes the oldest entry: ok with the value, empty, or corrupt (the producer's tail is not
    // within capacity of our head).
    [[nodiscard]] pop_result pop();
    // Waits until the ring looks non-empty, `stop` is set, or (sleep phase) a wake-up arrives.
    // Spurious returns are allowed; callers loop on pop().
    void wait(const wait_policy& policy, const std::atomic<bool>& stop);
    // The same, for a thread that does not own this end: waits until the tail moves past
    // `seen_head` (a position() read earlier, by whoever owned the end then). Reads only shared
    // words, so it may run while another thread pops.
    void wait_beyond(std::uint32_t seen_head, const wait_policy& policy, const std::atomic<bool>& stop);
    // Our index: entries before it are consumed.
    [[nodiscard]] std::uint32_t position() const { return head_; }
    // Wakes the consumer from another thread (after setting its stop flag).
    static void wake(ring_header* header);
    [[nodiscard]] ring_header* header() const { return header_; }

private:
    [[nodiscard]] bool looks_ready(std::uint32_t seen_head) const;

    ring_header* header_ = nullptr;
    std::uint32_t* entries_ = nullptr;
    std::uint32_t capacity_ = 0;
    std::uint32_t head_ = 0;
    std::uint32_t tail_cache_ = 0;
};

// One pause instruction (spin-wait hint).
void cpu_relax();

// The polling half of every wait in the channel: polls `ready()` per `policy` (forever for spin,
// for spin_for for spin_then_sleep, not at all for sleep). True once ready() held; false when the
// caller should go on to sleep on its futex.
template <typename Ready>
[[nodiscard]] bool spin_phase(const wait_policy& policy, Ready ready) {
    if (policy.strategy == wait_strategy::sleep) {
        return false;
    }
    const auto until = std::chrono::steady_clock::now() + policy.spin_for;
    for (std::uint32_t i = 0;; ++i) {
        if (ready()) {
            return true;
        }
        cpu_relax();
        // The clock only every 64 polls: the fast path never reads it.
        if (policy.strategy == wait_strategy::spin_then_sleep && (i & 63U) == 0 &&
            std::chrono::steady_clock::now() >= until) {
            return false;
        }
    }
}

// Futex on shared memory (not FUTEX_PRIVATE: the word is mapped by two processes).
void futex_wait_shared(std::atomic<std::uint32_t>& word, std::uint32_t expected);
void futex_wake_shared(std::atomic<std::uint32_t>& word, int count);

}  // namespace datapump::ipc::internal
