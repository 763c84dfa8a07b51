#include "datapump/stream/client_limits.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <cstring>
#include <string_view>
#include <utility>

namespace datapump::stream {

namespace {

constexpr std::array<std::uint8_t, 12> v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_v4_mapped(const client_address& a) {
    return std::memcmp(a.bytes.data(), v4_mapped_prefix.data(), v4_mapped_prefix.size()) == 0;
}

}  // namespace

client_address client_address::from(const sockaddr* address) {
    client_address a;
    if (address == nullptr) {
        return a;
    }
    if (address->sa_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
        std::memcpy(a.bytes.data(), v4_mapped_prefix.data(), v4_mapped_prefix.size());
        std::memcpy(a.bytes.data() + 12, &v4->sin_addr, 4);
    } else if (address->sa_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
        std::memcpy(a.bytes.data(), &v6->sin6_addr, 16);  // a mapped IPv4 stays mapped: the same key
    }
    return a;
}

std::string client_address::text() const {
    char out[INET6_ADDRSTRLEN] = {};
    if (is_v4_mapped(*this)) {
        ::inet_ntop(AF_INET, bytes.data() + 12, out, sizeof out);
    } else {
        ::inet_ntop(AF_INET6, bytes.data(), out, sizeof out);
    }
    return out;
}

std::size_t client_address_hash::operator()(const client_address& a) const noexcept {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    std::memcpy(&hi, a.bytes.data(), 8);
    std::memcpy(&lo, a.bytes.data() + 8, 8);
    return std::hash<std::uint64_t>{}(hi * 0x9e3779b97f4a7c15ULL ^ lo);
}

// ---- slots ----

connection_slot::connection_slot(connection_slot&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), address_(other.address_) {}

connection_slot& connection_slot::operator=(connection_slot&& other) noexcept {
    if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        address_ = other.address_;
    }
    return *this;
}

void connection_slot::release() {
    if (owner_ != nullptr) {
        std::exchange(owner_, nullptr)->end_connection(address_);
    }
}

stream_slot::stream_slot(stream_slot&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), address_(other.address_), rate_(other.rate_) {}

stream_slot& stream_slot::operator=(stream_slot&& other) noexcept {
    if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        address_ = other.address_;
        rate_ = other.rate_;
    }
    return *this;
}

void stream_slot::release() {
    if (owner_ != nullptr) {
        std::exchange(owner_, nullptr)->end_stream(address_, rate_);
    }
}

// ---- client_limits ----

client_limits_config client_limits::config() const {
    const std::lock_guard lock(mutex_);
    return config_;
}

void client_limits::set_config(client_limits_config config) {
    const std::lock_guard lock(mutex_);
    config_ = config;
}

std::unexpected<client_refusal> client_limits::refuse(client_refusal r) {
    refusals_[static_cast<std::size_t>(r.limit)].fetch_add(1, std::memory_order_relaxed);
    return std::unexpected(r);
}

std::expected<connection_slot, client_refusal> client_limits::connect(const client_address& a) {
    {
        const std::lock_guard lock(mutex_);
        counts& c = table_[a];
        if (config_.max_connections != 0 && c.connections >= config_.max_connections) {
            const std::uint64_t held = c.connections;
            return refuse({client_refusal::kind::connections, held, 1, config_.max_connections});
        }
        ++c.connections;
    }
    return connection_slot(this, a);
}

std::expected<stream_slot, client_refusal> client_limits::start_stream(const client_address& a, std::uint64_t rate) {
    {
        const std::lock_guard lock(mutex_);
        const auto it = table_.try_emplace(a).first;
        counts& c = it->second;
        if (config_.max_streams != 0 && c.streams >= config_.max_streams) {
            const client_refusal r{client_refusal::kind::streams, c.streams, 1, config_.max_streams};
            drop_if_empty(it);
            return refuse(r);
        }
        if (config_.max_rate != 0 && rate != 0 && (rate > config_.max_rate || c.rate > config_.max_rate - rate)) {
            const client_refusal r{client_refusal::kind::rate, c.rate, rate, config_.max_rate};
            drop_if_empty(it);
            return refuse(r);
        }
        ++c.streams;
        c.rate += rate;
    }
    return stream_slot(this, a, rate);
}

void client_limits::drop_if_empty(std::unordered_map<client_address, counts, client_address_hash>::iterator it) {
    if (it->second.connections == 0 && it->second.streams == 0 && it->second.rate == 0) {
        table_.erase(it);
    }
}

void client_limits::end_connection(const client_address& a) {
    const std::lock_guard lock(mutex_);
    const auto it = table_.find(a);
    if (it != table_.end()) {
        --it->second.connections;
        drop_if_empty(it);
    }
}

void client_limits::end_stream(const client_address& a, std::uint64_t rate) {
    const std::lock_guard lock(mutex_);
    const auto it = table_.find(a);
    if (it != table_.end()) {
        --it->second.streams;
        it->second.rate -= rate;
        drop_if_empty(it);
    }
}

client_limits::counts client_limits::of(const client_address& a) const {
    const std::lock_guard lock(mutex_);
    const auto it = table_.find(a);
    return it == table_.end() ? counts{} : it->second;
}

std::size_t client_limits::addresses() const {
    const std::lock_guard lock(mutex_);
    return table_.size();
}

std::string describe(const client_refusal& r, const client_address& a) {
    switch (r.limit) {
        case client_refusal::kind::connections:
            return fmt::format("too many connections from {} ({} open; the limit is {} per address)", a.text(), r.held,
                               r.max);
        case client_refusal::kind::streams:
            return fmt::format("too many streams from {} ({} live; the limit is {} per address): wait for one to end",
                               a.text(), r.held, r.max);
        case client_refusal::kind::rate:
            return fmt::format("the paced streams of {} take {} B/s already; {} B/s more would pass the limit of {} "
                               "B/s per address: ask a lower rate or wait for a stream to end",
                               a.text(), r.held, r.asked, r.max);
    }
    return "refused";
}

}  // namespace datapump::stream
