#include "pool.hpp"

#include "datapump/base/internal/log.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace datapump::rt::detail {

namespace {

std::size_t page_size() {
    static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

}  // namespace

loan_record::~loan_record() {
    if (!owner) {
        return;
    }
    // No reclaim can be running on this record: reclaim works on a record it holds a reference to
    // (weak_ptr::lock), and this destructor runs only when none is left.
    if (reclaimed.load(std::memory_order_acquire)) {
        ::munmap(address, owner->slot_size());
    } else {
        owner->loan_ended(slot);
    }
}

result<std::shared_ptr<pool>> pool::create(const pool_options& options) {
    if (options.buffer_size == 0 || options.count == 0) {
        return fail(errc::invalid_argument, "rt pool: buffer size and count must be above 0");
    }
    std::size_t page = page_size();
    std::size_t slot_size = (options.buffer_size + page - 1) / page * page;
    if (options.count > (std::size_t{1} << 40) / slot_size) {
        return fail(errc::invalid_argument, "rt pool: too large");
    }
    std::shared_ptr<pool> p(new pool());
    p->buffer_size_ = options.buffer_size;
    p->slot_size_ = slot_size;
    p->count_ = options.count;
    p->lock_memory_ = options.lock_memory;
    p->memfd_ = ::memfd_create("datapump-rt-pool", MFD_CLOEXEC);
    if (p->memfd_ < 0) {
        return fail(errc::no_buffers, "rt pool: memfd_create", errno);
    }
    std::size_t total = slot_size * options.count;
    if (::ftruncate(p->memfd_, static_cast<off_t>(total)) != 0) {
        return fail(errc::no_buffers, "rt pool: ftruncate", errno);
    }
    void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->memfd_, 0);
    if (base == MAP_FAILED) {
        return fail(errc::no_buffers, "rt pool: mmap", errno);
    }
    p->base_ = static_cast<std::byte*>(base);
    // Pre-fault for writing too (MAP_POPULATE on a shared mapping may map the pages read-only
    // until the first write): the first buffer of a stream must not pay for a fault.
    for (std::size_t off = 0; off < total; off += page) {
        p->base_[off] = std::byte{0};
    }
    if (options.lock_memory) {
        p->locked_ = ::mlock(base, total) == 0;
    }
    p->slots_.resize(options.count);
    p->free_.reserve(options.count);
    for (std::size_t i = 0; i < options.count; ++i) {
        p->slots_[i].address = p->base_ + i * slot_size;
        p->free_.push_back(static_cast<unsigned>(options.count - 1 - i));  // pops slot 0 first
    }
    return p;
}

pool::~pool() {
    // Every loan record holds the pool, so no buffer is held now: each slot's current mapping is
    // the pool's own (in the first mapping, or a replacement after a reclaim).
    for (slot& s : slots_) {
        if (s.address != nullptr) {
            ::munmap(s.address, slot_size_);
        }
    }
    if (memfd_ >= 0) {
        ::close(memfd_);
    }
}

result<std::shared_ptr<pool>> pool::adopt(int memfd, std::size_t buffer_size, std::size_t slot_size,
                                          std::size_t count, bool lock_memory,
                                          std::function<void(unsigned)> give_back) {
    std::size_t page = page_size();
    if (memfd < 0 || buffer_size == 0 || count == 0 || slot_size < buffer_size || slot_size % page != 0 ||
        count > (std::size_t{1} << 40) / slot_size) {
        return fail(errc::invalid_argument, "rt pool: the peer's pool figures do not fit together");
    }
    struct stat st{};
    if (::fstat(memfd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) < slot_size * count) {
        return fail(errc::invalid_argument, "rt pool: the peer's memfd is smaller than its pool");
    }
    std::shared_ptr<pool> p(new pool());
    p->buffer_size_ = buffer_size;
    p->slot_size_ = slot_size;
    p->count_ = count;
    p->lock_memory_ = lock_memory;
    p->give_back_ = std::move(give_back);
    p->memfd_ = ::fcntl(memfd, F_DUPFD_CLOEXEC, 0);
    if (p->memfd_ < 0) {
        return fail(errc::no_buffers, "rt pool: dup", errno);
    }
    std::size_t total = slot_size * count;
    void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->memfd_, 0);
    if (base == MAP_FAILED) {
        return fail(errc::no_buffers, "rt pool: mmap of the peer's pool", errno);
    }
    p->base_ = static_cast<std::byte*>(base);
    if (lock_memory) {
        p->locked_ = ::mlock(base, total) == 0;
    }
    p->slots_.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        p->slots_[i].address = p->base_ + i * slot_size;
    }
    return p;
}

std::optional<pool::slot_ref> pool::take(unsigned index) {
    std::lock_guard lock(mutex_);
    if (index >= slots_.size()) {
        return std::nullopt;
    }
    slot& s = slots_[index];
    if (s.in_pipeline || s.loans != 0) {
        return std::nullopt;
    }
    s.in_pipeline = true;
    return slot_ref{index, s.address};
}

void pool::freed(unsigned index) {
    if (give_back_) {
        give_back_(index);
        return;
    }
    free_.push_back(index);
    if (on_free_) {
        on_free_();
    }
}

void pool::set_on_free(std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    on_free_ = std::move(fn);
}

std::optional<pool::slot_ref> pool::acquire() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) {
        return std::nullopt;
    }
    unsigned index = free_.back();
    free_.pop_back();
    slot& s = slots_[index];
    s.in_pipeline = true;
    return slot_ref{index, s.address};
}

void pool::finish(unsigned index) {
    std::lock_guard lock(mutex_);
    slot& s = slots_[index];
    s.in_pipeline = false;
    if (s.loans == 0) {
        freed(index);
    }
}

std::shared_ptr<loan_record> pool::keep(unsigned index, std::size_t length, std::uint64_t sequence,
                                        time_point deadline) {
    std::lock_guard lock(mutex_);
    slot& s = slots_[index];
    if (auto existing = s.loan.lock()) {
        return existing;
    }
    auto record = std::make_shared<loan_record>();
    record->owner = shared_from_this();
    record->slot = index;
    record->address = s.address;
    record->length = std::min(length, buffer_size_);
    record->sequence = sequence;
    record->deadline = deadline;
    s.loan = record;
    s.deadline = deadline;
    ++s.loans;
    return record;
}

void pool::loan_ended(unsigned index) {
    std::lock_guard lock(mutex_);
    slot& s = slots_[index];
    // The weak_ptr is expired now (this runs from the record's destructor).
    if (--s.loans == 0 && !s.in_pipeline) {
        freed(index);
    }
}

time_point pool::next_loan_deadline() {
    std::lock_guard lock(mutex_);
    time_point next = time_point::max();
    for (const slot& s : slots_) {
        if (!s.in_pipeline && !s.loan.expired()) {
            next = std::min(next, s.deadline);
        }
    }
    return next;
}

unsigned pool::reclaim_overdue(time_point now) {
    // Records are dropped after the mutex is released: a record whose holder let go meanwhile
    // may be the last reference, and its destructor takes the mutex when it was not reclaimed.
    std::vector<std::shared_ptr<loan_record>> records;
    unsigned done = 0;
    {
        std::lock_guard lock(mutex_);
        for (unsigned i = 0; i < slots_.size(); ++i) {
            slot& s = slots_[i];
            if (s.in_pipeline || s.deadline > now) {
                continue;
            }
            std::shared_ptr<loan_record> record = s.loan.lock();
            if (!record) {
                continue;
            }
            if (reclaim(i, *record)) {
                ++done;
            }
            records.push_back(std::move(record));
        }
    }
    return done;
}

bool pool::reclaim(unsigned index, loan_record& record) {
    slot& s = slots_[index];
    void* copy = ::mmap(nullptr, slot_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED) {
        spdlog::warn("rt: reclaim of a held buffer deferred: mmap: {}", errno_text(errno));
        return false;
    }
    std::memcpy(copy, s.address, slot_size_);
    ::mprotect(copy, slot_size_, PROT_READ);
    // The pool's own mapping of this slot, at a new address, before the old one goes.
    auto offset = static_cast<off_t>(static_cast<std::size_t>(index) * slot_size_);
    void* fresh = ::mmap(nullptr, slot_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd_, offset);
    if (fresh == MAP_FAILED) {
        ::munmap(copy, slot_size_);
        spdlog::warn("rt: reclaim of a held buffer deferred: mmap: {}", errno_text(errno));
        return false;
    }
    // The holder's address now shows the copy (same bytes): the move replaces the page tables
    // under the mmap lock, so a reader on another thread sees either the old or the new pages.
    void* moved = ::mremap(copy, slot_size_, slot_size_, MREMAP_MAYMOVE | MREMAP_FIXED, s.address);
    if (moved == MAP_FAILED) {
        int err = errno;
        ::munmap(copy, slot_size_);
        ::munmap(fresh, slot_size_);
        spdlog::warn("rt: reclaim of a held buffer deferred: mremap: {}", errno_text(err));
        return false;
    }
    if (lock_memory_ && locked_) {
        ::mlock(fresh, slot_size_);
    }
    record.reclaimed.store(true, std::memory_order_release);  // pairs with the acquire in readers
    s.address = static_cast<std::byte*>(fresh);
    s.loan.reset();
    if (--s.loans == 0) {  // else an earlier record of this slot is being dropped: it frees it
        freed(index);
    }
    return true;
}

std::size_t pool::free_count() {
    std::lock_guard lock(mutex_);
    return free_.size();
}

}  // namespace datapump::rt::detail
