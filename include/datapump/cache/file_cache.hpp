// File: datapump/cache/file_cache.hpp
//
// The shared file cache: one copy of each block in memory, lent out to every reader.
//
//   file_cache  owns the buffer_cache, the table of open files, the prefetch thread and its
//               mailbox, and the fallback workers.
//   cached_file one open file as the cache knows it: an id (never reused for other bytes), a
//               block_source, the end of file readers see, and its status (stable, or written by
//               a load-and-play writer: writing, complete, failed).
//   reader      a sequential cursor over one file with its own read-ahead plan and access
//               pattern (play, pause, seek, speed): what a stream uses.
//   writer      fills a new file through write loans; readers follow it (load-and-play).
//
// Paths through a read (seed 000):
//   fast     try_loan(): hash lookup + CAS pin, per block. Never blocks; would_block on a miss.
//   slow     loan_read(): the caller's thread may block; misses are read by the caller, or
//            waited for when another thread is already reading the block.
//   fallback loan_read_async(): runs the fast path inline and hands what it left undone to a
//            fallback worker, which completes the request (only the missing blocks are read).
//   prefetch post_will_need() / post_done_with() put notes in a lock-free mailbox (many
//            posters, one prefetch thread). readers post them as they go.
//
// Thread-safety: every member may be called from any thread. try_loan() and post_*() are safe
// on an I/O completion path (no blocking, no allocation, no system call — post_*() may make one
// futex wake when the prefetch thread sleeps; see prefetch_mailbox.hpp).
#pragma once

#include "datapump/base/export.hpp"
#include "datapump/cache/block_io.hpp"
#include "datapump/cache/buffer_cache.hpp"
#include "datapump/cache/loans.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

DATAPUMP_API_BEGIN

namespace datapump::cache {

enum class file_status : std::uint32_t { stable, writing, complete, failed };

class cached_file {
public:
    [[nodiscard]] std::uint64_t id() const { return id_; }
    // End of file for readers: the file's size, or the bytes committed so far while written.
    // Acquire: pairs with the writer's release, so every byte below it is readable.
    [[nodiscard]] std::uint64_t size() const { return size_.load(std::memory_order_acquire); }
    [[nodiscard]] file_status status() const { return status_.load(std::memory_order_acquire); }
    [[nodiscard]] block_source& source() const { return *source_; }
    // The writer's error once status() is failed.
    [[nodiscard]] error failure() const;
    // A counter bumped (release) after every change of size or status, and a futex wait on it:
    // read the counter, check size/status, then wait while the counter still has that value.
    [[nodiscard]] std::uint32_t change_seq() const { return changes_.load(std::memory_order_acquire); }
    void wait_for_change(std::uint32_t seen) const { changes_.wait(seen, std::memory_order_acquire); }

    cached_file(std::uint64_t id, std::shared_ptr<block_source> source, std::uint64_t size, file_status status);

private:
    friend class file_cache;
    friend class writer;
    // Bumps the change sequence and wakes every thread waiting at the frontier.
    void announce();

    const std::uint64_t id_;
    std::shared_ptr<block_source> source_;
    std::atomic<std::uint64_t> size_;
    std::atomic<file_status> status_;
    std::atomic<std::uint32_t> changes_{0};  // futex word for readers waiting at the frontier
    std::atomic<errc> failure_code_{errc::writer_failed};
    std::atomic<int> failure_sys_{0};
};

struct file_cache_config {
    cache_config buffers;
    std::uint32_t readahead_blocks = 8;    // how far a reader's prefetch runs ahead
    std::uint32_t prefetch_batch = 8;      // blocks the prefetcher reads at once (in flight)
    std::uint32_t mailbox_capacity = 1024; // notes; power of two
    std::uint32_t fallback_workers = 1;
    // Prefetch batches are read by the fallback workers (after any demand read) instead of the
    // prefetch thread, so several streams' read-ahead is in flight at once.
    bool prefetch_on_workers = false;
};

enum class play_mode : std::uint8_t { play, pause };

struct access_pattern {
    play_mode mode = play_mode::play;
    std::uint32_t speed = 1;  // 1 = every block; k > 1 = fast-forward, every k-th block
};

class file_cache;

class reader {
public:
    reader(file_cache& cache, std::shared_ptr<cached_file> file);
    reader(reader&&) noexcept = default;
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;
    ~reader();

    // Loans up to `max_bytes` from the current position and advances past them. Empty at end of
    // file. May block (misses, a load-and-play frontier). While paused, returns would_block.
    [[nodiscard]] result<std::vector<read_loan>> next(std::size_t max_bytes);

    [[nodiscard]] std::uint64_t position() const { return position_; }
    // Re-primes read-ahead at the new position. Errors: out_of_range past the end of a stable file.
    [[nodiscard]] result<void> seek(std::uint64_t offset);
    // Pause releases read-ahead (done-with notes); play re-primes; speed k reads every k-th block.
    void set_pattern(access_pattern pattern);
    [[nodiscard]] access_pattern pattern() const { return pattern_; }
    [[nodiscard]] const cached_file& file() const { return *file_; }

private:
    void plan_readahead();
    void release_readahead();

    file_cache* cache_;
    std::shared_ptr<cached_file> file_;
    std::uint64_t position_ = 0;
    std::uint64_t planned_until_ = 0;  // first block not yet posted as will-need
    access_pattern pattern_{};
};

class writer {
public:
    writer(const writer&) = delete;
    writer& operator=(const writer&) = delete;
    ~writer();  // an unfinished writer fails its file: readers at the frontier get writer_failed

    // Empty space after the last committed byte, at most `max_bytes` and never crossing a block
    // boundary. Errors: closed after finish/fail, no_buffers.
    [[nodiscard]] result<write_loan> loan_write(std::size_t max_bytes);
    // Writes the last partial block, calls the sink's finish (durability), marks the file
    // complete and wakes readers. Not in ingest mode (see complete()).
    [[nodiscard]] result<void> finish();
    // Marks the file failed with `why`; readers at the frontier wake with it.
    void fail(error why);

    // Ingest mode (file_cache::create_ingest_writer): the caller writes the blocks to storage
    // itself, several at once. A block that a commit fills is sealed instead of written: take it
    // with take_sealed() before the next loan_write. It stays pinned (so readers find it in the
    // arena) until the caller drops the reference, after its write completed.
    struct sealed_block {
        buffer::buffer_ref ref;   // the whole arena buffer, pinned
        std::uint64_t offset = 0; // file offset of the buffer's first byte (a multiple of the block size)
    };
    [[nodiscard]] std::optional<sealed_block> take_sealed();
    // The partly filled block at the frontier (none when the frontier is on a block boundary or
    // nothing was loaned there). Loan nothing more after it.
    [[nodiscard]] std::optional<sealed_block> take_tail();
    // The buffer a loan_write() just gave space in, as a whole (for reads into the part of it
    // before or after the loan: read-modify-write of unaligned heads and tails).
    [[nodiscard]] std::span<std::byte> current_buffer() const;
    [[nodiscard]] std::uint32_t current_index() const { return current_.index(); }
    // The caller made every byte durable: the file is complete; readers at the frontier wake.
    void complete();

    [[nodiscard]] const std::shared_ptr<cached_file>& file() const { return file_; }
    [[nodiscard]] std::uint64_t committed() const { return file_->size(); }

private:
    friend class file_cache;
    friend class write_loan;
    writer(file_cache& cache, std::shared_ptr<cached_file> file, std::shared_ptr<block_sink> sink);
    [[nodiscard]] result<void> commit(std::size_t n);
    [[nodiscard]] result<void> flush_current();

    file_cache* cache_;
    std::shared_ptr<cached_file> file_;
    std::shared_ptr<block_sink> sink_;  // null: ingest mode
    buffer::buffer_ref current_;  // the block being appended to, pinned while we write it
    std::optional<sealed_block> sealed_;  // ingest mode: a full block not yet taken
    bool loan_out_ = false;
    bool done_ = false;
};

class file_cache {
public:
    [[nodiscard]] static result<std::unique_ptr<file_cache>> create(const file_cache_config& config);
    file_cache(const file_cache&) = delete;
    file_cache& operator=(const file_cache&) = delete;
    ~file_cache();  // stops the prefetch thread and workers; every loan must be back

    [[nodiscard]] buffer_cache& buffers() { return *buffers_; }
    [[nodiscard]] std::size_t block_size() const { return block_size_; }
    [[nodiscard]] class counters& counters() { return buffers_->counters(); }
    [[nodiscard]] const file_cache_config& config() const { return config_; }

    // A stable file of `size` bytes read through `source`. Each call gets a new id: reopen a
    // file that changed and old blocks of it are never served again (they age out).
    [[nodiscard]] std::shared_ptr<cached_file> open(std::shared_ptr<block_source> source, std::uint64_t size);
    // The same file again, under the id an earlier open() of it gave: blocks still cached from
    // then are served again instead of read. The caller vouches that the bytes did not change and
    // that no cached_file with this id is alive (fs keys it by device, inode, size and mtime). An
    // id this cache never gave gets a new one.
    [[nodiscard]] std::shared_ptr<cached_file> reopen(std::uint64_t id, std::shared_ptr<block_source> source,
                                                      std::uint64_t size);
    // A new, empty load-and-play file: readers read it through `source` (what was written to the
    // sink) and the writer's pinned current block.
    [[nodiscard]] std::unique_ptr<writer> create_writer(std::shared_ptr<block_source> source,
                                                        std::shared_ptr<block_sink> sink);
    // A writer in ingest mode (see writer): the caller writes full blocks itself. `start` is the
    // file offset of the first byte to come. `readable`: a load-and-play file readers may follow
    // (start must be 0); otherwise a private one nobody reads (its blocks are keyed by an id no
    // reader has, and age out after their writes).
    [[nodiscard]] std::unique_ptr<writer> create_ingest_writer(std::shared_ptr<block_source> source,
                                                               std::uint64_t start, bool readable);
    // Drops the file from the prefetcher's table (its loans stay valid). A reopen of the id that
    // came in between keeps its place.
    void close(const cached_file& file);

    // Fast path for one block. Errors: would_block (not cached or busy), out_of_range (past EOF).
    [[nodiscard]] result<read_loan> try_loan(const cached_file& file, std::uint64_t block) noexcept;

    // Loans covering [offset, offset + length) clipped at end of file. Blocks the caller on
    // misses and, for a file being written, at the frontier until at least one byte is there.
    // Empty at end of file. Errors: out_of_range (offset past the end of a stable file),
    // writer_failed, io_error / file_changed (storage), no_buffers.
    [[nodiscard]] result<std::vector<read_loan>> loan_read(const cached_file& file, std::uint64_t offset,
                                                           std::uint64_t length);

    // The same, completed asynchronously: the fast path runs inline, and if it leaves blocks
    // undone a fallback worker reads just those and calls `done` (from that worker). When every
    // block hits, `done` runs inline before this returns. Never blocks the caller.
    using loan_completion = std::function<void(result<std::vector<read_loan>>)>;
    void loan_read_async(std::shared_ptr<cached_file> file, std::uint64_t offset, std::uint64_t length,
                         loan_completion done);

    // Prefetch notes. Return false (and count a drop) when the mailbox is full.
    bool post_will_need(const cached_file& file, std::uint64_t first_block, std::uint32_t count) noexcept;
    bool post_done_with(const cached_file& file, std::uint64_t first_block, std::uint32_t count) noexcept;

    // Blocks until every note posted before the call has been handled and the fallback queue is
    // empty. For tests and orderly shutdown.
    void quiesce();

private:
    struct DATAPUMP_INTERNAL impl;
    friend class reader;
    friend class writer;
    friend class write_loan;
    explicit file_cache(const file_cache_config& config, std::unique_ptr<buffer_cache> buffers);
    [[nodiscard]] std::uint64_t impl_next_id();
    void register_file(const std::shared_ptr<cached_file>& file);

    file_cache_config config_;
    std::unique_ptr<buffer_cache> buffers_;
    std::size_t block_size_;
    std::unique_ptr<impl> impl_;
};

}  // namespace datapump::cache
DATAPUMP_API_END
