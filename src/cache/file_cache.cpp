#include "datapump/cache/file_cache.hpp"

#include "datapump/base/check.hpp"
#include "file_cache_impl.hpp"

#include <algorithm>
#include <chrono>

namespace datapump::cache {

// ---- cached_file ---------------------------------------------------------------------------

cached_file::cached_file(std::uint64_t id, std::shared_ptr<block_source> source, std::uint64_t size,
                         file_status status)
    : id_(id), source_(std::move(source)), size_(size), status_(status) {}

error cached_file::failure() const {
    return error{failure_code_.load(std::memory_order_acquire), failure_sys_.load(std::memory_order_acquire),
                 "load-and-play: the writer failed"};
}

void cached_file::announce() {
    // Release pairs with the acquire load in wait_for_data(): size/status stores are visible.
    changes_.fetch_add(1, std::memory_order_release);
    changes_.notify_all();
}

// ---- impl ------------------------------------------------------------------------------------

file_cache::impl::impl(file_cache& o)
    : owner(o), buffers(*o.buffers_), block_size(o.block_size_), mailbox(o.config_.mailbox_capacity) {}

std::uint32_t file_cache::impl::expected_bytes(std::uint64_t block, std::uint64_t size) const {
    const std::uint64_t start = block * block_size;
    if (start >= size) {
        return 0;
    }
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(block_size, size - start));
}

std::vector<result<buffer::buffer_ref>> file_cache::impl::fill(const cached_file& file,
                                                               std::span<const std::uint64_t> blocks,
                                                               fill_reason reason) {
    std::vector<result<buffer::buffer_ref>> out;
    out.reserve(blocks.size());
    std::vector<fill_ticket> tickets;
    std::vector<std::size_t> ticket_slot;
    for (const std::uint64_t block : blocks) {
        auto got = buffers.lock_or_claim(key{file.id(), block});
        if (!got) {
            out.emplace_back(std::unexpected(got.error()));
            continue;
        }
        if (auto* ref = std::get_if<buffer::buffer_ref>(&*got)) {
            out.emplace_back(std::move(*ref));
            continue;
        }
        ticket_slot.push_back(out.size());
        tickets.push_back(std::get<fill_ticket>(std::move(*got)));
        out.emplace_back(fail(errc::io_error, "cache fill: not read"));
    }
    auto read = read_into(file, std::move(tickets), reason);
    for (std::size_t i = 0; i < read.size(); ++i) {
        out[ticket_slot[i]] = std::move(read[i]);
    }
    return out;
}

std::vector<result<buffer::buffer_ref>> file_cache::impl::read_into(const cached_file& file,
                                                                    std::vector<fill_ticket> tickets,
                                                                    fill_reason reason) {
    std::vector<result<buffer::buffer_ref>> out;
    out.reserve(tickets.size());
    if (tickets.empty()) {
        return out;
    }
    std::vector<block_read> reads(tickets.size());
    for (std::size_t i = 0; i < tickets.size(); ++i) {
        reads[i].offset = tickets[i].key().block * block_size;
        reads[i].dst = tickets[i].data();
        reads[i].buffer_index = tickets[i].index();
    }
    file.source().read_blocks(reads);
    // A stable file's size is fixed for this id; a file being written grows, and its blocks
    // below the frontier are full (the writer only unpins full, written blocks).
    const std::uint64_t size = file.size();
    for (std::size_t i = 0; i < tickets.size(); ++i) {
        if (!reads[i].outcome) {
            out.emplace_back(std::unexpected(reads[i].outcome.error()));
            continue;  // the ticket's destructor unlinks and frees the buffer, waking waiters
        }
        const std::uint32_t got = *reads[i].outcome;
        const std::uint32_t want = expected_bytes(tickets[i].key().block, size);
        if (got < want) {
            out.emplace_back(fail(errc::file_changed, "cache fill: file shorter than when opened"));
            continue;
        }
        buffers.counters().add_disk_read(got);
        if (reason == fill_reason::prefetch) {
            buffers.counters().add_prefetch_read();
        }
        out.emplace_back(std::move(tickets[i]).publish(got));  // got <= the buffer: the source's contract
    }
    return out;
}

file_cache::impl::fast_pass_result file_cache::impl::fast_pass(const cached_file& file, std::uint64_t offset,
                                                              std::uint64_t end, std::uint64_t size) {
    const std::uint64_t first = offset / block_size;
    const std::uint64_t last = (end - 1) / block_size;
    fast_pass_result out;
    out.refs.resize(last - first + 1);
    for (std::uint64_t b = first; b <= last; ++b) {
        auto hit = buffers.try_lock(key{file.id(), b});
        if (hit && hit->valid() >= expected_bytes(b, size)) {
            out.refs[b - first] = std::move(*hit);
        } else {
            out.missing.push_back(b);
        }
    }
    return out;
}

result<std::vector<read_loan>> file_cache::impl::complete(const cached_file& file, std::uint64_t offset,
                                                          std::uint64_t end, fast_pass_result pass) {
    if (!pass.missing.empty()) {
        const std::uint64_t first = offset / block_size;
        auto filled = fill(file, pass.missing, fill_reason::demand);
        for (std::size_t i = 0; i < pass.missing.size(); ++i) {
            if (!filled[i]) {
                return std::unexpected(filled[i].error());
            }
            pass.refs[pass.missing[i] - first] = std::move(*filled[i]);
        }
    }
    return make_loans(offset, end, std::move(pass.refs));
}

result<std::vector<read_loan>> file_cache::impl::make_loans(std::uint64_t offset, std::uint64_t end,
                                                            std::vector<buffer::buffer_ref> refs) {
    std::vector<read_loan> loans;
    loans.reserve(refs.size());
    const std::uint64_t first_block = offset / block_size;
    for (std::size_t i = 0; i < refs.size(); ++i) {
        const std::uint64_t block_start = (first_block + i) * block_size;
        const std::uint64_t from = std::max(offset, block_start);
        const std::uint64_t to = std::min(end, block_start + block_size);
        const auto begin = static_cast<std::uint32_t>(from - block_start);
        const auto length = static_cast<std::uint32_t>(to - from);
        if (refs[i].valid() < begin + length) {
            return fail(errc::file_changed, "cache loan: cached block shorter than the file");
        }
        loans.emplace_back(std::move(refs[i]), begin, length, from, &buffers.counters());
    }
    return loans;
}

result<std::uint64_t> file_cache::impl::wait_for_data(const cached_file& file, std::uint64_t offset) {
    for (;;) {
        // Acquire pairs with announce()'s release: read the sequence before the state it guards.
        const std::uint32_t seen = file.change_seq();
        const std::uint64_t size = file.size();
        const file_status status = file.status();
        if (offset < size || status == file_status::stable || status == file_status::complete) {
            return size;
        }
        if (status == file_status::failed) {
            return std::unexpected(file.failure());
        }
        buffers.counters().add_wait();
        file.wait_for_change(seen);
    }
}

void file_cache::impl::prefetch_loop(prefetch_mailbox::consumer consumer) {
    for (;;) {
        for (;;) {
            auto note = consumer.try_pop();
            if (!note.has_value()) {
                break;
            }
            handle_note(*note);
            notes_handled.fetch_add(1, std::memory_order_release);
        }
        if (!consumer.wait()) {
            return;
        }
    }
}

void file_cache::impl::handle_note(const prefetch_note& note) {
    std::shared_ptr<cached_file> file;
    {
        const std::lock_guard lock(files_mutex);
        if (auto it = files.find(note.file); it != files.end()) {
            file = it->second.lock();
        }
    }
    if (!file) {
        return;  // closed since the note was posted
    }
    if (note.kind == note_kind::done_with) {
        for (std::uint64_t b = note.first_block; b < note.first_block + note.count; ++b) {
            buffers.release_hint(key{file->id(), b});
        }
        return;
    }
    if (!owner.config_.prefetch_on_workers) {
        read_ahead(*file, note.first_block, note.count);
        return;
    }
    // On a worker, after any demand read. The blocks are claimed there, not here: a claimed block
    // waiting in the queue would make a demand read of it wait behind the queue (a deadlock once
    // every worker waits so).
    post_job([this, file = std::move(file), first = note.first_block, count = note.count] {
        read_ahead(*file, first, count);
    }, job_kind::prefetch);
}

void file_cache::impl::read_ahead(const cached_file& file, std::uint64_t first_block, std::uint32_t count) {
    const std::uint64_t size = file.size();
    std::vector<fill_ticket> batch;
    const std::uint32_t batch_size = std::max<std::uint32_t>(1, owner.config_.prefetch_batch);
    for (std::uint64_t b = first_block; b < first_block + count; ++b) {
        if (b * block_size >= size) {
            break;  // past the end (or the writer's frontier): nothing to read yet
        }
        // Skip what is cached or already being read by someone else: read-ahead never waits
        // behind a reader, it goes past it.
        auto claimed = buffers.claim_if_absent(key{file.id(), b});
        if (!claimed) {
            break;  // every buffer pinned: read-ahead is a hint, give up on this note
        }
        auto& ticket = *claimed;
        if (!ticket.has_value()) {
            continue;
        }
        batch.push_back(std::move(*ticket));
        if (batch.size() == batch_size) {
            (void)read_into(file, std::move(batch), fill_reason::prefetch);  // pins dropped: stay cached
            batch.clear();
        }
    }
    if (!batch.empty()) {
        (void)read_into(file, std::move(batch), fill_reason::prefetch);
    }
}

void file_cache::impl::worker_loop() {
    std::unique_lock lock(jobs_mutex);
    for (;;) {
        jobs_cv.wait(lock, [&] { return stopping || !jobs.empty() || !prefetch_jobs.empty(); });
        // A reader waits on a demand read; read-ahead can wait behind it.
        auto& queue = jobs.empty() ? prefetch_jobs : jobs;
        if (queue.empty()) {
            return;  // stopping, and nothing left to finish
        }
        auto job = std::move(queue.front());
        queue.pop_front();
        ++jobs_running;
        lock.unlock();
        job();
        lock.lock();
        --jobs_running;
        jobs_cv.notify_all();
    }
}

void file_cache::impl::post_job(std::move_only_function<void()> job, job_kind kind) {
    {
        const std::lock_guard lock(jobs_mutex);
        (kind == job_kind::demand ? jobs : prefetch_jobs).push_back(std::move(job));
    }
    jobs_cv.notify_all();
}

// ---- file_cache ------------------------------------------------------------------------------

result<std::unique_ptr<file_cache>> file_cache::create(const file_cache_config& config) {
    if (config.buffers.buffer_count < 2) {
        return fail(errc::invalid_argument, "file cache: needs at least two buffers");
    }
    auto buffers = buffer_cache::create(config.buffers);
    if (!buffers) {
        return std::unexpected(buffers.error());
    }
    return std::unique_ptr<file_cache>(new file_cache(config, std::move(*buffers)));
}

file_cache::file_cache(const file_cache_config& config, std::unique_ptr<buffer_cache> buffers)
    : config_(config), buffers_(std::move(buffers)), block_size_(buffers_->block_size()) {
    impl_ = std::make_unique<impl>(*this);
    auto consumer = impl_->mailbox.take_consumer();
    DP_CHECK(consumer.has_value());
    impl_->prefetcher = std::thread([this, c = std::move(*consumer)]() mutable { impl_->prefetch_loop(std::move(c)); });
    const std::uint32_t n = std::max<std::uint32_t>(1, config_.fallback_workers);
    for (std::uint32_t i = 0; i < n; ++i) {
        impl_->workers.emplace_back([this] { impl_->worker_loop(); });
    }
}

file_cache::~file_cache() {
    impl_->mailbox.shut_down();
    impl_->prefetcher.join();
    {
        const std::lock_guard lock(impl_->jobs_mutex);
        impl_->stopping = true;
    }
    impl_->jobs_cv.notify_all();
    for (auto& w : impl_->workers) {
        w.join();
    }
}

std::uint64_t file_cache::impl_next_id() { return impl_->next_file_id.fetch_add(1, std::memory_order_relaxed); }

void file_cache::register_file(const std::shared_ptr<cached_file>& file) {
    const std::lock_guard lock(impl_->files_mutex);
    std::erase_if(impl_->files, [](const auto& entry) { return entry.second.expired(); });
    impl_->files.insert_or_assign(file->id(), file);
}

std::shared_ptr<cached_file> file_cache::open(std::shared_ptr<block_source> source, std::uint64_t size) {
    auto file = std::make_shared<cached_file>(impl_next_id(), std::move(source), size, file_status::stable);
    register_file(file);
    return file;
}

std::shared_ptr<cached_file> file_cache::reopen(std::uint64_t id, std::shared_ptr<block_source> source,
                                                std::uint64_t size) {
    // Ids start at 1; the counter holds the next one to give.
    const bool given = id != 0 && id < impl_->next_file_id.load(std::memory_order_relaxed);
    auto file =
        std::make_shared<cached_file>(given ? id : impl_next_id(), std::move(source), size, file_status::stable);
    register_file(file);
    return file;
}

void file_cache::close(const cached_file& file) {
    const std::lock_guard lock(impl_->files_mutex);
    const auto it = impl_->files.find(file.id());
    if (it == impl_->files.end()) {
        return;
    }
    // The entry may already be a reopen's (the closing file is alive, so its own entry is too).
    const auto current = it->second.lock();
    if (current == nullptr || current.get() == &file) {
        impl_->files.erase(it);
    }
}

result<read_loan> file_cache::try_loan(const cached_file& file, std::uint64_t block) noexcept {
    const std::uint64_t size = file.size();
    const std::uint32_t want = impl_->expected_bytes(block, size);
    if (want == 0) {
        return fail(errc::out_of_range, "cache loan: block past the end of the file");
    }
    auto ref = buffers_->try_lock(key{file.id(), block});
    if (!ref) {
        return std::unexpected(ref.error());
    }
    if (ref->valid() < want) {
        return fail(errc::would_block, "cache loan: block not complete yet");
    }
    return read_loan(std::move(*ref), 0, want, block * block_size_, &counters());
}

result<std::vector<read_loan>> file_cache::loan_read(const cached_file& file, std::uint64_t offset,
                                                     std::uint64_t length) {
    auto eof = impl_->wait_for_data(file, offset);
    if (!eof) {
        return std::unexpected(eof.error());
    }
    if (offset > *eof) {
        return fail(errc::out_of_range, "cache loan: offset past the end of the file");
    }
    const std::uint64_t end = offset + std::min(length, *eof - offset);
    if (end == offset) {
        return std::vector<read_loan>{};
    }
    auto pass = impl_->fast_pass(file, offset, end, *eof);
    if (!pass.missing.empty()) {
        counters().add_fallback();
    }
    return impl_->complete(file, offset, end, std::move(pass));
}

void file_cache::loan_read_async(std::shared_ptr<cached_file> file, std::uint64_t offset, std::uint64_t length,
                                 loan_completion done) {
    // Fast path inline: only when the whole range is below the end of file and cached.
    const std::uint64_t size = file->size();
    if (offset < size) {
        const std::uint64_t end = offset + std::min(length, size - offset);
        auto pass = impl_->fast_pass(*file, offset, end, size);
        if (pass.missing.empty()) {
            done(impl_->make_loans(offset, end, std::move(pass.refs)));
            return;
        }
        // Fallback: the worker reads only what the fast path left undone (seed 000's kproc
        // retry, with the state of the first attempt recorded in `pass`).
        counters().add_fallback();
        impl_->post_job([this, file = std::move(file), offset, end, pass = std::move(pass),
                         done = std::move(done)]() mutable {
            done(impl_->complete(*file, offset, end, std::move(pass)));
        });
        return;
    }
    // At or past the end: a stable file answers now; a file being written waits on a worker.
    if (file->status() != file_status::writing) {
        done(loan_read(*file, offset, length));
        return;
    }
    counters().add_fallback();
    impl_->post_job([this, file = std::move(file), offset, length, done = std::move(done)]() mutable {
        done(loan_read(*file, offset, length));
    });
}

bool file_cache::impl::post(const prefetch_note& note) noexcept {
    if (!mailbox.try_post(note)) {
        buffers.counters().add_prefetch_dropped();
        return false;
    }
    notes_posted.fetch_add(1, std::memory_order_relaxed);
    buffers.counters().add_prefetch_posted();
    return true;
}

bool file_cache::post_will_need(const cached_file& file, std::uint64_t first_block, std::uint32_t count) noexcept {
    return impl_->post({note_kind::will_need, count, file.id(), first_block});
}

bool file_cache::post_done_with(const cached_file& file, std::uint64_t first_block, std::uint32_t count) noexcept {
    return impl_->post({note_kind::done_with, count, file.id(), first_block});
}

void file_cache::quiesce() {
    const std::uint64_t target = impl_->notes_posted.load(std::memory_order_relaxed);
    // Polling: quiesce is for tests and shutdown, never for the data path.
    while (impl_->notes_handled.load(std::memory_order_acquire) < target) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::unique_lock lock(impl_->jobs_mutex);
    impl_->jobs_cv.wait(lock, [&] {
        return impl_->jobs.empty() && impl_->prefetch_jobs.empty() && impl_->jobs_running == 0;
    });
}

}  // namespace datapump::cache
