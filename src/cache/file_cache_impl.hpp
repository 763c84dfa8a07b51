// Internal to src/cache: the parts of file_cache that readers and writers share.
#pragma once

#include "datapump/cache/file_cache.hpp"
#include "datapump/cache/internal/prefetch_mailbox.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace datapump::cache {

struct file_cache::impl {
    explicit impl(file_cache& owner);

    // Slow path for a run of blocks of one file: each either pinned from the cache (waiting
    // for another filler if needed) or read from the source in one batch. May block.
    enum class fill_reason { demand, prefetch };
    // Reads tickets' blocks in one batch and publishes them; results in ticket order.
    [[nodiscard]] std::vector<result<buffer::buffer_ref>> read_into(const cached_file& file,
                                                                    std::vector<fill_ticket> tickets,
                                                                    fill_reason reason);
    [[nodiscard]] std::vector<result<buffer::buffer_ref>> fill(const cached_file& file,
                                                               std::span<const std::uint64_t> blocks,
                                                               fill_reason reason);
    // Bytes block `block` must hold for a reader who sees `size` as the end of file.
    [[nodiscard]] std::uint32_t expected_bytes(std::uint64_t block, std::uint64_t size) const;
    // The fast pass over the blocks of [offset, end): pins what is cached and complete, and lists
    // the blocks left for the slow path. Never blocks.
    struct fast_pass_result {
        std::vector<buffer::buffer_ref> refs;  // index 0 = first block; empty where missing
        std::vector<std::uint64_t> missing;
    };
    [[nodiscard]] fast_pass_result fast_pass(const cached_file& file, std::uint64_t offset, std::uint64_t end,
                                             std::uint64_t size);
    // Completes a fast pass on the slow path: reads (or waits for) the missing blocks, then
    // makes the loans. May block. Errors: the first failed block's.
    [[nodiscard]] result<std::vector<read_loan>> complete(const cached_file& file, std::uint64_t offset,
                                                          std::uint64_t end, fast_pass_result pass);
    // Loans for [offset, end) from per-block buffers (index 0 = first block of the range).
    [[nodiscard]] result<std::vector<read_loan>> make_loans(std::uint64_t offset, std::uint64_t end,
                                                            std::vector<buffer::buffer_ref> refs);
    // Waits while `offset` is at the frontier of a file being written. Returns the end of file
    // the read may use, or the writer's error.
    [[nodiscard]] result<std::uint64_t> wait_for_data(const cached_file& file, std::uint64_t offset);

    void prefetch_loop(prefetch_mailbox::consumer consumer);
    void handle_note(const prefetch_note& note);
    void worker_loop();
    enum class job_kind : std::uint8_t { demand, prefetch };
    // Runs `job` on a worker; demand jobs before any prefetch job.
    void post_job(std::move_only_function<void()> job, job_kind kind = job_kind::demand);
    // Claims and reads the blocks of a will-need note that are neither cached nor being read.
    void read_ahead(const cached_file& file, std::uint64_t first_block, std::uint32_t count);
    // Posts a prefetch note, counting it as posted or dropped.
    bool post(const prefetch_note& note) noexcept;

    file_cache& owner;
    buffer_cache& buffers;
    const std::size_t block_size;

    // Open files by id, for the prefetch thread (notes carry ids, not pointers).
    std::mutex files_mutex;
    std::unordered_map<std::uint64_t, std::weak_ptr<cached_file>> files;  // guarded by files_mutex
    std::atomic<std::uint64_t> next_file_id{1};  // relaxed: only uniqueness matters

    prefetch_mailbox mailbox;
    std::atomic<std::uint64_t> notes_posted{0};   // relaxed counters for quiesce()
    std::atomic<std::uint64_t> notes_handled{0};
    std::thread prefetcher;

    std::mutex jobs_mutex;
    std::condition_variable jobs_cv;
    std::deque<std::move_only_function<void()>> jobs;           // demand; guarded by jobs_mutex
    std::deque<std::move_only_function<void()>> prefetch_jobs;  // guarded by jobs_mutex
    std::size_t jobs_running = 0;            // guarded by jobs_mutex
    bool stopping = false;                   // guarded by jobs_mutex
    std::vector<std::thread> workers;
};

}  // namespace datapump::cache
