// File: src/http/server/uploads.hpp
//
// The server's side of ingest (docs/ingest.md, docs/daemon.md "Uploads"): the table of PUTs in
// progress that GETs follow (load-and-play), and the count of uploads admitted against the
// global and per-address caps (upload_slot). The publisher thread that makes a finished upload
// durable and gives it its name is ingest::publisher.
//
//   connection (PUT) ──job──> temp file ──on_done──> ingest::publisher: durable, renamed
//        │ registers                                      └──posts the answer back to the loop
//        v
//   upload_table[path] ──upload_entry──> view (the load-and-play cached_file), Content-Length
//        ^ find                      └──> followers waiting at the frontier (rung on progress/end)
//   connection (GET of that path)
//
// Thread-safety: upload_table and upload_entry lock their own mutex; any thread.
#pragma once

#include "datapump/base/error.hpp"
#include "datapump/cache/file_cache.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace datapump::http {

struct loop_doorbell;
struct loop_context;

// One PUT in progress, shared by its uploader and the GETs following it.
class upload_entry {
public:
    upload_entry(std::string path, std::shared_ptr<cache::cached_file> view, std::optional<std::uint64_t> length)
        : path_(std::move(path)), view_(std::move(view)), length_(length) {}

    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] const std::shared_ptr<cache::cached_file>& view() const { return view_; }
    // The upload's Content-Length (nullopt for a chunked upload).
    [[nodiscard]] std::optional<std::uint64_t> length() const { return length_; }

    // A follower at the frontier asks to be kicked once: rung by the next notify(). Register
    // first, then look at the view again (so a notify between the two is never missed).
    void wait(std::shared_ptr<loop_doorbell> bell, loop_context* ctx, std::uint64_t connection_id);
    // Kicks every waiting follower on its loop (the frontier moved, or the upload ended).
    void notify();

private:
    struct follower {
        std::shared_ptr<loop_doorbell> bell;
        loop_context* ctx = nullptr;
        std::uint64_t connection = 0;
    };
    const std::string path_;
    const std::shared_ptr<cache::cached_file> view_;
    const std::optional<std::uint64_t> length_;
    std::mutex mutex_;
    std::vector<follower> waiting_;  // guarded by mutex_
};

class upload_table;

// One upload admitted against the caps (upload_table::admit): counted until it is dropped.
// Move-only; the table must outlive it.
class upload_slot {
public:
    upload_slot() = default;
    upload_slot(upload_slot&& other) noexcept
        : table_(std::exchange(other.table_, nullptr)), address_(std::move(other.address_)) {}
    upload_slot& operator=(upload_slot&& other) noexcept;
    upload_slot(const upload_slot&) = delete;
    upload_slot& operator=(const upload_slot&) = delete;
    ~upload_slot() { release(); }

    [[nodiscard]] bool empty() const { return table_ == nullptr; }
    void release();

private:
    friend class upload_table;
    upload_slot(upload_table* table, std::string address) : table_(table), address_(std::move(address)) {}
    upload_table* table_ = nullptr;
    std::string address_;
};

class upload_table {
public:
    // Admits one more upload from client `address` (an IP, no port): at most `max_total` at once
    // and `max_per_address` from one address (0: no cap). Errors: busy, saying which cap is full.
    // Uploads hold arena buffers while they run: the caps keep a crowd of slow ones from holding
    // all of them (docs/daemon.md "Uploads").
    [[nodiscard]] result<upload_slot> admit(const std::string& address, unsigned max_total, unsigned max_per_address);
    // Uploads admitted and not yet released.
    [[nodiscard]] std::size_t admitted() const;

    // Registers an upload to entry->path(). False when one to that path is already running.
    [[nodiscard]] bool add(const std::shared_ptr<upload_entry>& entry);
    // Unregisters `entry` (only that one: a newer upload to the path stays).
    void remove(const upload_entry& entry);
    [[nodiscard]] std::shared_ptr<upload_entry> find(const std::string& path) const;
    [[nodiscard]] std::size_t size() const;

private:
    friend class upload_slot;
    void release(const std::string& address);

    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<upload_entry>> uploads_;  // guarded by mutex_
    std::size_t admitted_ = 0;                                  // guarded by mutex_
    std::unordered_map<std::string, unsigned> per_address_;     // guarded by mutex_; no zero counts
};

// Constant-time check of an `Authorization: Bearer TOKEN` header value against `token`.
[[nodiscard]] bool bearer_matches(const std::string* authorization, const std::string& token);

}  // namespace datapump::http
