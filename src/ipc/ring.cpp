#include "datapump/ipc/internal/ring.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace datapump::ipc::internal {

void futex_wait_shared(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
    // EAGAIN (word changed), EINTR and spurious wake-ups all return to the caller's loop.
    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, nullptr, nullptr, 0);
}

void futex_wake_shared(std::atomic<std::uint32_t>& word, int count) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

ring_producer::ring_producer(ring_header* header, std::uint32_t* entries, std::uint32_t capacity)
    : header_(header), entries_(entries), capacity_(capacity) {
    // Relaxed: set-up runs before the other side is told the segment exists (the socket
    // message that announces it orders these reads and writes).
    tail_ = header_->tail.load(std::memory_order_relaxed);
    head_cache_ = header_->head.load(std::memory_order_relaxed);
}

ring_status ring_producer::push(std::uint32_t value, bool ring_now) {
    if (tail_ - head_cache_ >= capacity_) {
        // SYNC POINT: acquire pairs with the consumer's release store of head in pop(): the
        // consumer has finished reading the entries below head before we overwrite them.
        head_cache_ = header_->head.load(std::memory_order_acquire);
        const std::uint32_t used = tail_ - head_cache_;
        if (used > capacity_) {
            return ring_status::corrupt;
        }
        if (used == capacity_) {
            return ring_status::full;
        }
    }
    // The entry is plain shared memory: the consumer reads it only after the tail store below.
    __atomic_store_n(&entries_[tail_ & (capacity_ - 1)], value, __ATOMIC_RELAXED);
    ++tail_;
    // SYNC POINT: release (part of seq_cst) pairs with the consumer's acquire load of tail: the entry
    // (and the slot it names, written before push) is visible before the index that publishes it.
    // Doorbell: the tail store and the `sleeping` load are both seq_cst, the mirror of the consumer's
    // seq_cst `sleeping` store and tail re-read in wait(): in the single total order one of the two
    // loads sees the other side's store (see the header). seq_cst operations rather than fences,
    // which TSan does not model (GCC rejects them under -fsanitize=thread with -Werror=tsan); on
    // x86-64 the store is an xchg instead of mov + mfence, no dearer.
    if (!ring_now) {
        // Quiet: publish only. The caller promises a ring() before it stops producing.
        header_->tail.store(tail_, std::memory_order_release);
        return ring_status::ok;
    }
    header_->tail.store(tail_, std::memory_order_seq_cst);
    wake_if_sleeping();
    return ring_status::ok;
}

void ring_producer::ring() {
    // Re-store our own tail seq_cst: the Dekker half that quiet pushes skipped.
    header_->tail.store(tail_, std::memory_order_seq_cst);
    wake_if_sleeping();
}

void ring_producer::wake_if_sleeping() {
    if (header_->sleeping.load(std::memory_order_seq_cst) != 0) {
        header_->bell.fetch_add(1, std::memory_order_release);
        futex_wake_shared(header_->bell, 1);
    }
}

ring_consumer::ring_consumer(ring_header* header, std::uint32_t* entries, std::uint32_t capacity)
    : header_(header), entries_(entries), capacity_(capacity) {
    head_ = header_->head.load(std::memory_order_relaxed);
    // Not the header's tail: the other side wrote it and pop() follows a cached tail unchecked. Starting
    // "empty" makes the first pop() load and validate it.
    tail_cache_ = head_;
}

pop_result ring_consumer::pop() {
    if (tail_cache_ == head_) {
        // SYNC POINT: acquire pairs with the producer's release store of tail in push().
        const std::uint32_t tail = header_->tail.load(std::memory_order_acquire);
        const std::uint32_t avail = tail - head_;
        if (avail > capacity_) {
            return {ring_status::corrupt, 0};
        }
        if (avail == 0) {
            return {ring_status::empty, 0};
        }
        // Cached only once checked: a corrupt tail left in the cache would be followed by the next pop().
        tail_cache_ = tail;
    }
    const std::uint32_t value = __atomic_load_n(&entries_[head_ & (capacity_ - 1)], __ATOMIC_RELAXED);
    ++head_;
    // SYNC POINT: release pairs with the producer's acquire load of head: our read of the entry
    // happens before the producer may overwrite it.
    header_->head.store(head_, std::memory_order_release);
    return {ring_status::ok, value};
}

bool ring_consumer::looks_ready(std::uint32_t seen_head) const {
    return header_->tail.load(std::memory_order_acquire) != seen_head;
}

void ring_consumer::wake(ring_header* header) {
    header->bell.fetch_add(1, std::memory_order_release);
    futex_wake_shared(header->bell, INT_MAX);
}

void ring_consumer::wait(const wait_policy& policy, const std::atomic<bool>& stop) {
    wait_beyond(head_, policy, stop);
}

void ring_consumer::wait_beyond(std::uint32_t seen_head, const wait_policy& policy, const std::atomic<bool>& stop) {
    // Relaxed stop: it only ends the wait; the caller re-reads state under its own rules.
    if (spin_phase(policy, [&] { return looks_ready(seen_head) || stop.load(std::memory_order_relaxed); })) {
        return;
    }
    const std::uint32_t seen = header_->bell.load(std::memory_order_acquire);
    // Doorbell: seq_cst store of `sleeping`, then seq_cst re-read of tail, paired with push()'s
    // seq_cst tail store and `sleeping` load: if we miss the tail, push() sees sleeping == 1 and
    // rings. (seq_cst includes the acquire that pop() relies on.)
    header_->sleeping.store(1, std::memory_order_seq_cst);
    if (header_->tail.load(std::memory_order_seq_cst) == seen_head && !stop.load(std::memory_order_acquire)) {
        futex_wait_shared(header_->bell, seen);
    }
    header_->sleeping.store(0, std::memory_order_relaxed);
}

}  // namespace datapump::ipc::internal
