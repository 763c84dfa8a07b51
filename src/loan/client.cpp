// The loan client: the arena mapping, the lease table, the per-buffer private/shared state and the
// reclaim handler. See loan/client.hpp for the rule this file implements.
#include "datapump/loan/client.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/base/unique_fd.hpp"
#include "datapump/ipc/client.hpp"
#include "protocol.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack it
#endif

namespace datapump::loan {

namespace proto = protocol;

namespace {

template <class T>
std::span<const std::byte> bytes_of(const T& value) {
    return std::as_bytes(std::span(&value, 1));
}

// Makes [p, p + len) private to this process: a write fault on each page of the MAP_PRIVATE
// mapping copies the arena's page. The pages are read-only again afterwards. False (errno kept
// for the log) when the copy could not be made: the caller must then not acknowledge.
bool copy_pages(std::byte* p, std::size_t len) {
    if (::mprotect(p, len, PROT_READ | PROT_WRITE) != 0) {
        return false;
    }
    bool copied = ::madvise(p, len, MADV_POPULATE_WRITE) == 0;
    if (!copied && errno == EINVAL) {
        // A kernel without MADV_POPULATE_WRITE: write each page's first byte back to itself. The
        // bytes cannot change meanwhile (the server still pins them), so this copies them as is.
        const long page = ::sysconf(_SC_PAGESIZE);
        for (std::size_t at = 0; at < len; at += static_cast<std::size_t>(page)) {
            volatile std::byte* b = p + at;
            *b = *b;
        }
        copied = true;
    }
    const int saved = errno;
    const bool back = ::mprotect(p, len, PROT_READ) == 0;
    errno = saved;
    return copied && back;
}

}  // namespace

struct lease::record {
    struct side_mapping {
        std::uint32_t buffer;
        std::byte* addr;
    };
    std::uint64_t id = 0;  // 0: an empty lease, nothing on the server
    std::uint64_t file_offset = 0;
    std::uint64_t size = 0;
    std::vector<std::span<const std::byte>> pieces;  // written before the lease is handed out
    // Guarded by client::impl::mu_:
    std::vector<std::uint32_t> main_buffers;  // distinct buffers read through the main mapping
    std::vector<side_mapping> sides;          // pieces on buffers that were private at borrow time
    // Written under impl::mu_ (release), read by reclaimed() from any thread (acquire).
    std::atomic<bool> reclaimed{false};
};

class client::impl {
public:
    explicit impl(client_options options) : options_(options) {}

    ~impl() {
        close();
        ipc_.reset();
        if (base_ != nullptr) {
            ::munmap(base_, arena_bytes_);
        }
    }

    // --- set-up --------------------------------------------------------------------------------------

    result<void> connect(std::string_view endpoint) {
        if (options_.max_extents == 0 || options_.max_extents > 4096) {
            return fail(errc::invalid_argument, "loan connect: max_extents must be 1..4096");
        }
        ipc::client_options io;
        io.in_process = false;  // the arena must arrive as a descriptor and be mapped
        io.slots = 16;
        io.input_capacity = sizeof(proto::open_request) + proto::max_path;
        io.output_capacity = static_cast<std::uint32_t>(reply_capacity());
        io.on_notify = [this](std::uint32_t code, std::span<const std::byte> payload) { on_note(code, payload); };
        auto ch = ipc::client::init(endpoint, std::move(io));
        if (!ch) {
            return std::unexpected(ch.error());
        }
        ipc_ = std::move(*ch);
        // SYNC POINT: release pairs with on_note's acquire load (the socket thread may already run).
        channel_.store(ipc_.get(), std::memory_order_release);
        return map_arena();
    }

    result<void> map_arena() {
        const proto::map_request req{proto::magic, proto::version};
        proto::map_reply rep{};
        auto out = std::as_writable_bytes(std::span(&rep, 1));
        auto r = ipc_->execute(static_cast<std::uint32_t>(proto::command::map), bytes_of(req), out);
        if (!r) {
            return std::unexpected(r.error());
        }
        if (r->status != 0) {
            return std::unexpected(proto::error_of(r->status, "loan connect: the server refused to map its arena"));
        }
        const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        if (r->output_len != sizeof(rep) || !r->fds.empty() || rep.magic != proto::magic) {
            return fail(errc::protocol_error, "loan connect: malformed map reply");
        }
        if (rep.version != proto::version) {
            return fail(errc::unsupported, "loan connect: the server speaks another protocol version");
        }
        if (rep.buffer_size == 0 || rep.buffer_size % page != 0 || rep.buffer_count == 0 ||
            rep.buffer_size > (std::uint64_t{1} << 40) / rep.buffer_count ||
            rep.arena_bytes != rep.buffer_size * rep.buffer_count) {
            return fail(errc::protocol_error, "loan connect: impossible arena geometry");
        }
        // Only an address range: each buffer's memfd is mapped into its slot when a borrow first
        // brings it (the rest stays inaccessible).
        void* base = ::mmap(nullptr, rep.arena_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) {
            return fail_errno("loan connect: reserving the arena's address range");
        }
        base_ = static_cast<std::byte*>(base);
        arena_bytes_ = rep.arena_bytes;
        buffer_size_ = rep.buffer_size;
        buffer_count_ = rep.buffer_count;
        users_.assign(buffer_count_, 0);
        private_.assign(buffer_count_, 0);
        current_.assign(buffer_count_, 0);
        buffer_fds_.resize(buffer_count_);
        return {};
    }

    std::size_t reply_capacity() const {
        return sizeof(proto::borrow_reply) + std::size_t{options_.max_extents} * sizeof(proto::extent);
    }

    // --- commands ------------------------------------------------------------------------------------

    result<std::pair<std::uint64_t, std::uint64_t>> open(std::string_view path) {
        if (path.empty() || path.size() > proto::max_path) {
            return fail(errc::invalid_argument, "loan open: the path must be 1..4096 bytes");
        }
        call_guard guard(*this);
        if (!guard) {
            return fail(errc::closed, "loan open: the client is closed");
        }
        std::vector<std::byte> in(sizeof(proto::open_request) + path.size());
        const proto::open_request req{static_cast<std::uint32_t>(path.size()), 0};
        std::memcpy(in.data(), &req, sizeof(req));
        std::memcpy(in.data() + sizeof(req), path.data(), path.size());
        proto::open_reply rep{};
        auto r = ipc_->execute(static_cast<std::uint32_t>(proto::command::open), in,
                               std::as_writable_bytes(std::span(&rep, 1)));
        if (!r) {
            return std::unexpected(r.error());
        }
        if (r->status != 0) {
            return std::unexpected(proto::error_of(r->status, "loan open: the server refused"));
        }
        if (r->output_len != sizeof(rep) || rep.handle == 0) {
            return fail(errc::protocol_error, "loan open: malformed reply");
        }
        return std::pair{rep.handle, rep.size};
    }

    result<void> close_file(std::uint64_t handle) {
        call_guard guard(*this);
        if (!guard) {
            return {};  // closing the client closed every handle
        }
        const proto::close_request req{handle};
        auto r = ipc_->execute(static_cast<std::uint32_t>(proto::command::close), bytes_of(req), {});
        if (!r) {
            return std::unexpected(r.error());
        }
        if (r->status != 0) {
            return std::unexpected(proto::error_of(r->status, "loan close: the server refused"));
        }
        return {};
    }

    result<put_result> put(std::string_view path, int fd, std::uint64_t length, put_options options) {
        if (path.empty() || path.size() > proto::max_path) {
            return fail(errc::invalid_argument, "loan put: the path must be 1..4096 bytes");
        }
        call_guard guard(*this);
        if (!guard) {
            return fail(errc::closed, "loan put: the client is closed");
        }
        std::vector<std::byte> in(sizeof(proto::put_request) + path.size());
        const proto::put_request req{length, static_cast<std::uint32_t>(path.size()),
                                     options.replace ? proto::put_replace : 0U};
        std::memcpy(in.data(), &req, sizeof(req));
        std::memcpy(in.data() + sizeof(req), path.data(), path.size());
        proto::put_reply rep{};
        // On a worker: the server blocks for the whole put, which must not stall this client's
        // channel thread (its other commands) on the server.
        auto r = ipc_->execute(static_cast<std::uint32_t>(proto::command::put), in,
                               std::as_writable_bytes(std::span(&rep, 1)), {},
                               {.on_worker = true, .fds = std::span(&fd, 1)});
        if (!r) {
            return std::unexpected(r.error());
        }
        if (r->status != 0) {
            return std::unexpected(proto::error_of(r->status, "loan put: the server refused or the put failed"));
        }
        if (r->output_len != sizeof(rep) || rep.bytes != length || rep.created > 1) {
            return fail(errc::protocol_error, "loan put: malformed reply");
        }
        return put_result{rep.bytes, rep.created == 1};
    }

    result<std::shared_ptr<lease::record>> borrow(std::uint64_t handle, std::uint64_t offset, std::uint64_t length) {
        call_guard guard(*this);
        if (!guard) {
            return fail(errc::closed, "loan borrow: the client is closed");
        }
        // One borrow of this client at a time, reply placed before the next is sent: the server
        // sends a buffer's memfd with the first reply that lends it and not again, so a later reply
        // must never be placed before the one carrying the memfd it relies on.
        std::lock_guard serial(borrow_mu_);
        {
            std::lock_guard lock(mu_);
            ++borrows_in_flight_;
        }
        const proto::borrow_request req{handle, offset, length};
        std::vector<std::byte> out(reply_capacity());
        auto r = ipc_->execute(static_cast<std::uint32_t>(proto::command::borrow), bytes_of(req), out);
        result<parsed_borrow> made = fail(errc::protocol_error, "loan borrow: no reply");
        std::uint64_t bad_lease = 0;
        if (!r) {
            made = std::unexpected(r.error());
        } else if (r->status != 0) {
            made = std::unexpected(proto::error_of(r->status, "loan borrow: the server refused"));
        } else {
            made = parse_borrow(req, std::span(out).first(r->output_len), r->fds, bad_lease);
        }
        std::vector<std::uint64_t> acks;
        {
            std::lock_guard lock(mu_);
            --borrows_in_flight_;
            if (made && made->rec->id != 0) {
                lease::record& rec = *made->rec;
                if (auto placed = place_locked(rec, made->extents, made->fds); !placed) {
                    bad_lease = rec.id;
                    made = std::unexpected(placed.error());
                } else {
                    leases_.emplace(rec.id, made->rec);
                    borrows_.fetch_add(1, std::memory_order_relaxed);
                    // A RECLAIM that overtook our reply (the server's deadline passed before we
                    // got here) waited for the lease to exist.
                    if (early_reclaims_.erase(rec.id) == 1 && reclaim_locked(rec)) {
                        acks.push_back(rec.id);
                    }
                }
            }
            if (borrows_in_flight_ == 0) {
                // No borrow is in flight: what is left names no lease of ours (given back
                // meanwhile, or never delivered). Acknowledge so the server stops waiting.
                acks.insert(acks.end(), early_reclaims_.begin(), early_reclaims_.end());
                early_reclaims_.clear();
            }
        }
        for (const std::uint64_t id : acks) {
            acknowledge(id);
        }
        if (bad_lease != 0) {
            (void)send_give_back(bad_lease);
        }
        if (!made) {
            return std::unexpected(made.error());
        }
        return std::move(made->rec);
    }

    // A borrow reply, checked: the lease record (pieces not pointed yet) and its extents.
    struct parsed_borrow {
        std::shared_ptr<lease::record> rec;
        std::vector<proto::extent> extents;
        std::vector<unique_fd> fds;  // buffer memfds the reply brought (extent::fd - 1)
    };

    // Checks everything the server wrote. `bad_lease` names a lease to give back when the reply is
    // malformed but carried one.
    result<parsed_borrow> parse_borrow(const proto::borrow_request& req, std::span<const std::byte> out,
                                       std::vector<unique_fd>& fds, std::uint64_t& bad_lease) const {
        proto::borrow_reply rep{};
        if (out.size() < sizeof(rep)) {
            return fail(errc::protocol_error, "loan borrow: reply too short");
        }
        std::memcpy(&rep, out.data(), sizeof(rep));
        bad_lease = rep.lease;
        const auto malformed = [] { return fail(errc::protocol_error, "loan borrow: malformed reply"); };
        if (rep.extent_count > options_.max_extents ||
            out.size() != sizeof(rep) + std::size_t{rep.extent_count} * sizeof(proto::extent) ||
            rep.file_offset != req.offset || rep.size > req.length || (rep.extent_count == 0) != (rep.size == 0) ||
            (rep.lease == 0) != (rep.size == 0)) {
            return malformed();
        }
        parsed_borrow p;
        p.rec = std::make_shared<lease::record>();
        p.rec->id = rep.lease;
        p.rec->file_offset = rep.file_offset;
        p.rec->size = rep.size;
        p.extents.resize(rep.extent_count);
        std::uint64_t next = rep.file_offset;
        for (std::uint32_t i = 0; i < rep.extent_count; ++i) {
            proto::extent& e = p.extents[i];
            std::memcpy(&e, out.data() + sizeof(rep) + std::size_t{i} * sizeof(e), sizeof(e));
            if (e.length == 0 || e.file_offset != next || e.arena_offset >= arena_bytes_ ||
                e.arena_offset % buffer_size_ + e.length > buffer_size_ || e.fd > fds.size()) {
                return malformed();
            }
            next += e.length;
        }
        if (next - rep.file_offset != rep.size) {
            return malformed();
        }
        for (const auto& fd : fds) {
            struct stat st {};
            if (::fstat(fd.get(), &st) != 0 || st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < buffer_size_) {
                return fail(errc::protocol_error, "loan borrow: a buffer descriptor is smaller than a buffer");
            }
        }
        p.fds = std::move(fds);
        bad_lease = 0;
        return p;
    }

    // Builds the pieces: each in the main mapping, or in a side mapping when its buffer is private
    // to us now (see the header's rule). Under mu_.
    result<void> place_locked(lease::record& rec, std::span<const proto::extent> extents,
                              std::vector<unique_fd>& fds) {
        // The buffers' new memfds first: the server sends one when the buffer was refilled since
        // we last got it (or we never had it). A main-mapping slot still showing the old one is
        // remapped below, when a piece needs it and no lease uses the slot.
        for (const auto& e : extents) {
            const auto buffer = static_cast<std::uint32_t>(e.arena_offset / buffer_size_);
            if (e.fd != 0) {
                if (!fds[e.fd - 1]) {
                    return fail(errc::protocol_error, "loan borrow: one buffer descriptor named twice");
                }
                buffer_fds_[buffer] = std::move(fds[e.fd - 1]);
                current_[buffer] = 0;
            } else if (!buffer_fds_[buffer]) {
                return fail(errc::protocol_error, "loan borrow: a piece on a buffer whose memfd we never received");
            }
        }
        rec.pieces.reserve(extents.size());
        for (const auto& e : extents) {
            const auto buffer = static_cast<std::uint32_t>(e.arena_offset / buffer_size_);
            const std::size_t in_buffer = e.arena_offset % buffer_size_;
            if (private_[buffer] == 0 && current_[buffer] == 0) {
                // A live lease on this slot would pin the buffer on the server, which then could
                // not have been refilled: a server saying otherwise is broken.
                if (users_[buffer] != 0) {
                    release_locked(rec);
                    return fail(errc::protocol_error, "loan borrow: a new memfd for a buffer a live lease uses");
                }
                void* m = ::mmap(base_ + std::size_t{buffer} * buffer_size_, buffer_size_, PROT_READ,
                                 MAP_PRIVATE | MAP_FIXED, buffer_fds_[buffer].get(), 0);
                if (m == MAP_FAILED) {
                    const int saved = errno;
                    release_locked(rec);
                    return fail_errno("loan borrow: mapping a buffer's memfd", saved);
                }
                current_[buffer] = 1;
            }
            if (private_[buffer] == 0) {
                if (std::find(rec.main_buffers.begin(), rec.main_buffers.end(), buffer) == rec.main_buffers.end()) {
                    rec.main_buffers.push_back(buffer);
                    ++users_[buffer];
                }
                rec.pieces.emplace_back(base_ + e.arena_offset, e.length);
                continue;
            }
            std::byte* side = nullptr;
            for (const auto& s : rec.sides) {
                if (s.buffer == buffer) {
                    side = s.addr;
                }
            }
            if (side == nullptr) {
                void* m = ::mmap(nullptr, buffer_size_, PROT_READ, MAP_PRIVATE, buffer_fds_[buffer].get(), 0);
                if (m == MAP_FAILED) {
                    const int saved = errno;
                    release_locked(rec);
                    return fail_errno("loan borrow: mapping a buffer that is private here", saved);
                }
                side = static_cast<std::byte*>(m);
                rec.sides.push_back({buffer, side});
                side_mappings_.fetch_add(1, std::memory_order_relaxed);
            }
            rec.pieces.emplace_back(side + in_buffer, e.length);
        }
        return {};
    }

    // Makes every page of `rec` private (see the header). Under mu_. False when a copy failed.
    bool reclaim_locked(lease::record& rec) {
        if (rec.reclaimed.load(std::memory_order_relaxed)) {
            return true;
        }
        for (const std::uint32_t b : rec.main_buffers) {
            if (private_[b] != 0) {
                continue;
            }
            std::byte* at = base_ + std::size_t{b} * buffer_size_;
            if (!options_.skip_private_copy_for_tests && !copy_pages(at, buffer_size_)) {
                spdlog::error("loan client: copying buffer {} failed ({}); not acknowledging lease {}", b,
                              errno_text(errno), rec.id);
                return false;
            }
            private_[b] = 1;
            ++private_count_;
        }
        for (const auto& s : rec.sides) {
            if (!options_.skip_private_copy_for_tests && !copy_pages(s.addr, buffer_size_)) {
                spdlog::error("loan client: copying a side mapping failed ({}); not acknowledging lease {}",
                              errno_text(errno), rec.id);
                return false;
            }
        }
        // Release: pairs with reclaimed()'s acquire (a flag for the application, no data behind it).
        rec.reclaimed.store(true, std::memory_order_release);
        return true;
    }

    // Drops what `rec` holds locally: its count on main buffers (a private buffer no lease uses
    // any more becomes shared again) and its side mappings. Under mu_. Idempotent.
    void release_locked(lease::record& rec) {
        for (const std::uint32_t b : rec.main_buffers) {
            if (--users_[b] == 0 && private_[b] != 0) {
                if (::madvise(base_ + std::size_t{b} * buffer_size_, buffer_size_, MADV_DONTNEED) == 0) {
                    private_[b] = 0;
                    --private_count_;
                } else {
                    // Still private: later borrows keep using side mappings for it.
                    spdlog::warn("loan client: dropping the copy of buffer {} failed: {}", b, errno_text(errno));
                }
            }
        }
        rec.main_buffers.clear();
        for (const auto& s : rec.sides) {
            ::munmap(s.addr, buffer_size_);
        }
        rec.sides.clear();
        leases_.erase(rec.id);
    }

    result<void> give_back(lease::record& rec) {
        if (rec.id == 0) {
            return {};
        }
        {
            std::lock_guard lock(mu_);
            release_locked(rec);
        }
        call_guard guard(*this);
        if (!guard) {
            return {};  // closing the client gave every lease back
        }
        return send_give_back(rec.id);
    }

    result<void> send_give_back(std::uint64_t id) {
        const proto::give_back_request req{id};
        auto r = ipc_->execute(static_cast<std::uint32_t>(proto::command::give_back), bytes_of(req), {});
        if (!r) {
            return std::unexpected(r.error());
        }
        if (r->status != 0) {
            return std::unexpected(proto::error_of(r->status, "loan give back: the server refused"));
        }
        return {};
    }

    // --- reclaim (the ipc socket thread) ---------------------------------------------------------

    void on_note(std::uint32_t code, std::span<const std::byte> payload) {
        proto::reclaim_note note{};
        if (code != static_cast<std::uint32_t>(proto::note::reclaim) || payload.size() < sizeof(note)) {
            spdlog::warn("loan client: unknown note {} from the server", code);
            return;
        }
        std::memcpy(&note, payload.data(), sizeof(note));
        if (payload.size() != sizeof(note) + std::size_t{note.extent_count} * sizeof(proto::extent)) {
            spdlog::warn("loan client: malformed reclaim note from the server");
            return;
        }
        reclaims_seen_.fetch_add(1, std::memory_order_relaxed);
        // The extents in the note are the server's view; we copy what our own record of the lease
        // says we read, which is what must keep its bytes.
        bool ack = false;
        {
            std::lock_guard lock(mu_);
            auto it = leases_.find(note.lease);
            if (it != leases_.end()) {
                ack = reclaim_locked(*it->second);
            } else if (borrows_in_flight_ > 0) {
                early_reclaims_.insert(note.lease);  // maybe the reply of a borrow not yet placed
                early_reclaims_seen_.fetch_add(1, std::memory_order_relaxed);
            } else {
                ack = true;  // given back meanwhile: nothing of ours to copy
            }
        }
        if (ack) {
            acknowledge(note.lease);
        }
    }

    void acknowledge(std::uint64_t id) {
        // SYNC POINT: acquire pairs with connect()'s release store of the channel.
        ipc::client* ch = channel_.load(std::memory_order_acquire);
        if (ch == nullptr) {
            return;
        }
        const proto::reclaimed_note n{id};
        if (auto sent = ch->notify(static_cast<std::uint32_t>(proto::note::reclaimed), bytes_of(n)); !sent) {
            spdlog::debug("loan client: acknowledging reclaim of lease {} failed: {}", id, describe(sent.error()));
        }
    }

    // --- closing -------------------------------------------------------------------------------------

    // Refuses new server calls, waits for those running, makes every live lease private and gives
    // it back, then closes the channel. Idempotent.
    void close() {
        {
            std::unique_lock lock(mu_);
            if (closing_ || !ipc_) {
                return;
            }
            closing_ = true;
            calls_done_.wait(lock, [this] { return calls_ == 0; });
        }
        std::vector<std::uint64_t> live;
        {
            std::lock_guard lock(mu_);
            for (auto& [id, rec] : leases_) {
                const bool was = rec->reclaimed.load(std::memory_order_relaxed);
                if (!reclaim_locked(*rec)) {
                    continue;  // not copied: keep the server's pin (never acknowledged)
                }
                if (!was) {
                    live.push_back(id);
                }
            }
        }
        for (const std::uint64_t id : live) {
            (void)send_give_back(id);
        }
        ipc_->deinit();
    }

    // Admission for server calls: none start once close() has begun, and close() waits for those
    // running.
    class call_guard {
    public:
        explicit call_guard(impl& i) : impl_(i) {
            std::lock_guard lock(impl_.mu_);
            ok_ = !impl_.closing_;
            if (ok_) {
                ++impl_.calls_;
            }
        }
        call_guard(const call_guard&) = delete;
        call_guard& operator=(const call_guard&) = delete;
        ~call_guard() {
            if (!ok_) {
                return;
            }
            {
                std::lock_guard lock(impl_.mu_);
                --impl_.calls_;
            }
            impl_.calls_done_.notify_all();
        }
        explicit operator bool() const { return ok_; }

    private:
        impl& impl_;
        bool ok_ = false;
    };

    client_stats stats() const {
        client_stats s;
        {
            std::lock_guard lock(mu_);
            s.leases_now = leases_.size();
            s.private_buffers = private_count_;
        }
        s.borrows = borrows_.load(std::memory_order_relaxed);
        s.reclaims_seen = reclaims_seen_.load(std::memory_order_relaxed);
        s.side_mappings = side_mappings_.load(std::memory_order_relaxed);
        s.early_reclaims = early_reclaims_seen_.load(std::memory_order_relaxed);
        return s;
    }

    bool server_gone() const { return ipc_ == nullptr || ipc_->peer_gone(); }

private:
    client_options options_;
    std::unique_ptr<ipc::client> ipc_;            // set by connect(), before any other use
    std::atomic<ipc::client*> channel_{nullptr};  // the same, for the socket thread
    std::byte* base_ = nullptr;                   // the main mapping: a reserved range, each buffer's
                                                  // slot mapped read-only MAP_PRIVATE from its memfd
    std::size_t arena_bytes_ = 0;
    std::size_t buffer_size_ = 0;
    std::uint32_t buffer_count_ = 0;

    std::mutex borrow_mu_;                        // held across a whole borrow (see borrow())
    mutable std::mutex mu_;
    std::condition_variable calls_done_;
    std::unordered_map<std::uint64_t, std::shared_ptr<lease::record>> leases_;  // guarded by mu_
    std::vector<std::uint32_t> users_;       // guarded by mu_: live leases using buffer i (main mapping)
    std::vector<std::uint8_t> private_;      // guarded by mu_: buffer i of the main mapping is a copy
    // guarded by mu_: buffer i's memfd as last received (kept for remaps and side mappings), and
    // whether slot i of the main mapping shows it (0: never mapped, or an older memfd of it).
    std::vector<unique_fd> buffer_fds_;
    std::vector<std::uint8_t> current_;
    std::uint64_t private_count_ = 0;        // guarded by mu_
    std::uint32_t borrows_in_flight_ = 0;    // guarded by mu_
    std::unordered_set<std::uint64_t> early_reclaims_;  // guarded by mu_
    std::uint32_t calls_ = 0;                // guarded by mu_
    bool closing_ = false;                   // guarded by mu_

    // Statistics: relaxed, independent counters.
    std::atomic<std::uint64_t> borrows_{0};
    std::atomic<std::uint64_t> reclaims_seen_{0};
    std::atomic<std::uint64_t> side_mappings_{0};
    std::atomic<std::uint64_t> early_reclaims_seen_{0};
};

// --- client ------------------------------------------------------------------------------------------

result<std::unique_ptr<client>> client::connect(std::string_view endpoint, client_options options) {
    auto i = std::make_shared<impl>(options);
    if (auto ok = i->connect(endpoint); !ok) {
        return std::unexpected(ok.error());
    }
    return std::unique_ptr<client>(new client(std::move(i)));
}

client::client(std::shared_ptr<impl> i) : impl_(std::move(i)) {}

client::~client() { impl_->close(); }

result<file> client::open(std::string_view path) {
    auto r = impl_->open(path);
    if (!r) {
        return std::unexpected(r.error());
    }
    return file(impl_, r->first, r->second);
}

result<lease> client::borrow(const file& f, std::uint64_t offset, std::uint64_t length) {
    auto r = impl_->borrow(f.handle(), offset, length);
    if (!r) {
        return std::unexpected(r.error());
    }
    return lease(impl_, std::move(*r));
}

result<put_result> client::put(std::string_view path, int fd, std::uint64_t length, put_options options) {
    return impl_->put(path, fd, length, options);
}

client_stats client::stats() const { return impl_->stats(); }
bool client::server_gone() const { return impl_->server_gone(); }

// --- file --------------------------------------------------------------------------------------------

file::file(file&& other) noexcept
    : impl_(std::move(other.impl_)), handle_(std::exchange(other.handle_, 0)), size_(std::exchange(other.size_, 0)) {}

file& file::operator=(file&& other) noexcept {
    if (this != &other) {
        (void)close();
        impl_ = std::move(other.impl_);
        handle_ = std::exchange(other.handle_, 0);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

file::~file() { (void)close(); }

result<void> file::close() {
    if (impl_ == nullptr) {
        return {};
    }
    auto r = impl_->close_file(handle_);
    if (r) {
        impl_.reset();
    }
    return r;
}

// --- lease -------------------------------------------------------------------------------------------

lease::lease(lease&& other) noexcept = default;

lease& lease::operator=(lease&& other) noexcept {
    if (this != &other) {
        (void)give_back();
        impl_ = std::move(other.impl_);
        rec_ = std::move(other.rec_);
    }
    return *this;
}

lease::~lease() { (void)give_back(); }

std::uint64_t lease::id() const { return rec_ ? rec_->id : 0; }
std::uint64_t lease::file_offset() const { return rec_ ? rec_->file_offset : 0; }
std::uint64_t lease::size() const { return rec_ ? rec_->size : 0; }

std::span<const std::span<const std::byte>> lease::pieces() const {
    if (!rec_) {
        return {};
    }
    return rec_->pieces;
}

bool lease::reclaimed() const { return rec_ && rec_->reclaimed.load(std::memory_order_acquire); }

result<void> lease::give_back() {
    if (!rec_) {
        return {};
    }
    auto i = std::move(impl_);
    auto rec = std::move(rec_);
    return i->give_back(*rec);
}

}  // namespace datapump::loan
