// File: datapump/cache/internal/prefetch_mailbox.hpp  (visible for tests, not promised)
//
// The prefetch mailbox (seed 000): posters on any thread, including an I/O completion path,
// leave "will need" and "done with" notes for the one prefetch thread. A bounded ring of cells,
// each with a sequence number (Vyukov's bounded queue, here with a single consumer):
//
//   cells [ seq | note ][ seq | note ] ...    capacity a power of two
//   tail_ (posters, CAS)   on its own cache line
//   head_ (consumer only)  on its own cache line
//
// A cell whose seq equals the ticket `pos` is free for the poster that wins `pos`; the poster
// writes the note, then stores seq = pos + 1 (release) to hand it to the consumer; the consumer
// reads it and stores seq = pos + capacity (release) to hand the cell back for the next lap.
//
// Doorbell: the consumer sleeps on a futex word when the ring is empty; a poster rings it only
// when the consumer says it sleeps (so a busy consumer costs posters no system call).
//
// Roles by type: any thread calls try_post(); exactly one consumer handle exists (take_consumer
// succeeds once) and only its holder pops or sleeps.
#pragma once

#include "datapump/base/cacheline.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace datapump::cache {

enum class note_kind : std::uint32_t { will_need, done_with };

struct prefetch_note {
    note_kind kind = note_kind::will_need;
    std::uint32_t count = 0;
    std::uint64_t file = 0;
    std::uint64_t first_block = 0;
};
static_assert(std::is_trivially_copyable_v<prefetch_note>);

class prefetch_mailbox {
public:
    class consumer;

    // capacity: rounded up to a power of two, at least 2.
    explicit prefetch_mailbox(std::uint32_t capacity);

    // Any thread. Never blocks; false when full. At most one futex wake.
    bool try_post(const prefetch_note& note) noexcept;

    // The consumer handle; empty after the first call.
    [[nodiscard]] std::optional<consumer> take_consumer();

    // Wakes the consumer for good: its wait() returns false from now on.
    void shut_down();

    class consumer {
    public:
        consumer(consumer&& other) noexcept : box_(std::exchange(other.box_, nullptr)) {}
        consumer(const consumer&) = delete;
        consumer& operator=(const consumer&) = delete;
        consumer& operator=(consumer&&) = delete;
        ~consumer() = default;

        [[nodiscard]] std::optional<prefetch_note> try_pop();
        // Sleeps until a note may be there or shut_down() was called (then returns false).
        bool wait();

    private:
        friend class prefetch_mailbox;
        explicit consumer(prefetch_mailbox* box) : box_(box) {}
        prefetch_mailbox* box_;
    };

private:
    struct cell {
        std::atomic<std::uint64_t> seq;
        prefetch_note note;
    };

    std::uint64_t mask_;
    std::unique_ptr<cell[]> cells_;
    alignas(cacheline_size) std::atomic<std::uint64_t> tail_{0};
    alignas(cacheline_size) std::uint64_t head_ = 0;  // consumer only
    alignas(cacheline_size) std::atomic<std::uint32_t> doorbell_{0};
    std::atomic<bool> sleeping_{false};
    std::atomic<bool> stopped_{false};
    std::atomic<bool> consumer_taken_{false};
};

}  // namespace datapump::cache
