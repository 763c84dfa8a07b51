#include "datapump/cache/internal/prefetch_mailbox.hpp"

#include <bit>

namespace datapump::cache {

prefetch_mailbox::prefetch_mailbox(std::uint32_t capacity)
    : mask_(std::bit_ceil(std::uint64_t{capacity < 2 ? 2U : capacity}) - 1),
      cells_(std::make_unique<cell[]>(mask_ + 1)) {
    for (std::uint64_t i = 0; i <= mask_; ++i) {
        cells_[i].seq.store(i, std::memory_order_relaxed);
    }
}

bool prefetch_mailbox::try_post(const prefetch_note& note) noexcept {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    cell* c = nullptr;
    for (;;) {
        c = &cells_[pos & mask_];
        // SYNC POINT: acquire pairs with the consumer's release of the cell (seq = pos + cap):
        // the consumer has finished reading the previous lap's note before we overwrite it.
        const std::uint64_t seq = c->seq.load(std::memory_order_acquire);
        const auto diff = static_cast<std::int64_t>(seq - pos);
        if (diff == 0) {
            // Relaxed CAS: winning `pos` only reserves the cell; the note is published by the
            // release store of seq below.
            if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                break;
            }
        } else if (diff < 0) {
            return false;  // full: the cell still holds an unread note from the previous lap
        } else {
            pos = tail_.load(std::memory_order_relaxed);
        }
    }
    c->note = note;
    // SYNC POINT: pairs with the consumer's acquire load of seq in try_pop() (seq_cst includes
    // release). seq_cst also for the Dekker handshake with consumer::wait(): our seq store and
    // sleeping_ load, its sleeping_ store and seq load, are all in one total order, so either it
    // sees our note or we see it sleeping. (Written without fences, which TSan cannot check.)
    c->seq.store(pos + 1, std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_seq_cst)) {
        doorbell_.fetch_add(1, std::memory_order_relaxed);
        doorbell_.notify_one();
    }
    return true;
}

std::optional<prefetch_mailbox::consumer> prefetch_mailbox::take_consumer() {
    if (consumer_taken_.exchange(true, std::memory_order_relaxed)) {
        return std::nullopt;
    }
    return consumer(this);
}

void prefetch_mailbox::shut_down() {
    stopped_.store(true, std::memory_order_seq_cst);
    doorbell_.fetch_add(1, std::memory_order_seq_cst);
    doorbell_.notify_all();
}

std::optional<prefetch_note> prefetch_mailbox::consumer::try_pop() {
    auto& box = *box_;
    const std::uint64_t pos = box.head_;
    cell& c = box.cells_[pos & box.mask_];
    // SYNC POINT: acquire pairs with the poster's release of seq = pos + 1: the note is written.
    if (c.seq.load(std::memory_order_acquire) != pos + 1) {
        return std::nullopt;
    }
    prefetch_note note = c.note;
    // Release pairs with try_post()'s acquire: we are done reading before the cell is reused.
    c.seq.store(pos + box.mask_ + 1, std::memory_order_release);
    box.head_ = pos + 1;
    return note;
}

bool prefetch_mailbox::consumer::wait() {
    auto& box = *box_;
    const std::uint32_t bell = box.doorbell_.load(std::memory_order_relaxed);
    // seq_cst store then seq_cst load: the other half of try_post()'s handshake.
    box.sleeping_.store(true, std::memory_order_seq_cst);
    const bool ready = box.cells_[box.head_ & box.mask_].seq.load(std::memory_order_seq_cst) == box.head_ + 1;
    if (!ready && !box.stopped_.load(std::memory_order_relaxed)) {
        box.doorbell_.wait(bell, std::memory_order_relaxed);
    }
    box.sleeping_.store(false, std::memory_order_relaxed);
    return !box.stopped_.load(std::memory_order_acquire);
}

}  // namespace datapump::cache
