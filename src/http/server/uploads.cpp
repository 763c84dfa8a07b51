#include "uploads.hpp"

#include "connection.hpp"
#include "server_state.hpp"

namespace datapump::http {

void upload_entry::wait(std::shared_ptr<loop_doorbell> bell, loop_context* ctx, std::uint64_t connection_id) {
    const std::lock_guard lock(mutex_);
    for (const follower& f : waiting_) {
        if (f.ctx == ctx && f.connection == connection_id) {
            return;
        }
    }
    waiting_.push_back({std::move(bell), ctx, connection_id});
}

void upload_entry::notify() {
    std::vector<follower> ring;
    {
        const std::lock_guard lock(mutex_);
        if (waiting_.empty()) {
            return;
        }
        ring.swap(waiting_);
    }
    for (follower& f : ring) {
        loop_context* ctx = f.ctx;
        const std::uint64_t id = f.connection;
        f.bell->ring([ctx, id] {
            const auto it = ctx->conns.find(id);
            if (it != ctx->conns.end()) {
                connection* c = it->second;
                c->follow_kick();
                connection::settle(c);
            }
        });
    }
}

bool upload_table::add(const std::shared_ptr<upload_entry>& entry) {
    const std::lock_guard lock(mutex_);
    return uploads_.emplace(entry->path(), entry).second;
}

void upload_table::remove(const upload_entry& entry) {
    const std::lock_guard lock(mutex_);
    const auto it = uploads_.find(entry.path());
    if (it != uploads_.end() && it->second.get() == &entry) {
        uploads_.erase(it);
    }
}

std::shared_ptr<upload_entry> upload_table::find(const std::string& path) const {
    const std::lock_guard lock(mutex_);
    const auto it = uploads_.find(path);
    return it == uploads_.end() ? nullptr : it->second;
}

upload_slot& upload_slot::operator=(upload_slot&& other) noexcept {
    if (this != &other) {
        release();
        table_ = std::exchange(other.table_, nullptr);
        address_ = std::move(other.address_);
    }
    return *this;
}

void upload_slot::release() {
    if (upload_table* t = std::exchange(table_, nullptr)) {
        t->release(address_);
    }
}

result<upload_slot> upload_table::admit(const std::string& address, unsigned max_total, unsigned max_per_address) {
    const std::lock_guard lock(mutex_);
    if (max_total != 0 && admitted_ >= max_total) {
        return fail(errc::busy, "the server runs as many uploads as it takes at once (--max-uploads); retry later");
    }
    const auto it = per_address_.find(address);
    const unsigned mine = it == per_address_.end() ? 0 : it->second;
    if (max_per_address != 0 && mine >= max_per_address) {
        return fail(errc::busy,
                    "this client address runs as many uploads as one address may (--max-uploads-per-ip); retry "
                    "when one ends");
    }
    ++admitted_;
    ++per_address_[address];
    return upload_slot(this, address);
}

void upload_table::release(const std::string& address) {
    const std::lock_guard lock(mutex_);
    --admitted_;
    const auto it = per_address_.find(address);
    if (it != per_address_.end() && --it->second == 0) {
        per_address_.erase(it);
    }
}

std::size_t upload_table::admitted() const {
    const std::lock_guard lock(mutex_);
    return admitted_;
}

std::size_t upload_table::size() const {
    const std::lock_guard lock(mutex_);
    return uploads_.size();
}

bool bearer_matches(const std::string* authorization, const std::string& token) {
    if (authorization == nullptr) {
        return false;
    }
    constexpr std::string_view scheme = "Bearer ";
    const std::string_view value(*authorization);
    if (value.size() < scheme.size()) {
        return false;
    }
    // The scheme is case-insensitive (RFC 9110 §11.1).
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        const char c = value[i];
        const char lower = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
        const char want = scheme[i] >= 'A' && scheme[i] <= 'Z' ? static_cast<char>(scheme[i] - 'A' + 'a') : scheme[i];
        if (lower != want) {
            return false;
        }
    }
    const std::string_view given = value.substr(scheme.size());
    // Constant time in the token's length: every byte is compared whatever matched before.
    unsigned diff = given.size() == token.size() ? 0U : 1U;
    for (std::size_t i = 0; i < token.size(); ++i) {
        const char g = i < given.size() ? given[i] : '\0';
        diff |= static_cast<unsigned>(static_cast<unsigned char>(g) ^ static_cast<unsigned char>(token[i]));
    }
    return diff == 0 && !token.empty();
}

}  // namespace datapump::http
