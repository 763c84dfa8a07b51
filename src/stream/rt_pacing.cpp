#include "datapump/stream/rt_pacing.hpp"

#include "datapump/base/internal/log.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <utility>

namespace datapump::stream {

// ---- credit ----

credit::credit(std::uint64_t piece, std::uint64_t depth)
    : piece_(std::max<std::uint64_t>(piece, 1)), depth_(std::max(depth, piece_)), bytes_(depth_) {}

bool credit::grant() {
    std::uint64_t now = bytes_.load(std::memory_order_relaxed);
    std::uint64_t next = 0;
    do {
        next = depth_ - now < piece_ ? depth_ : now + piece_;
        // seq_cst: this store and the exchange below are ordered against allowance()'s mark and
        // its last look at the credit (one of the two sides sees the other).
    } while (!bytes_.compare_exchange_weak(now, next, std::memory_order_seq_cst, std::memory_order_relaxed));
    return waiting_.exchange(false, std::memory_order_seq_cst);
}

std::uint64_t credit::allowance(std::uint64_t want) {
    if (want == 0) {
        return 0;
    }
    std::uint64_t have = bytes_.load(std::memory_order_seq_cst);
    if (have == 0) {
        waiting_.store(true, std::memory_order_seq_cst);
        have = bytes_.load(std::memory_order_seq_cst);
        if (have == 0) {
            return 0;  // a grant from here on sees the mark and wakes the owner
        }
        // Credit came meanwhile: no wake-up needed (one already posted is harmless).
        waiting_.store(false, std::memory_order_seq_cst);
    }
    return std::min(want, have);
}

void credit::consume(std::uint64_t n) {
    // Only the owner takes: the credit is at least the last allowance, grants only add.
    bytes_.fetch_sub(n, std::memory_order_seq_cst);
}

std::uint64_t rt_piece(std::uint64_t rate, std::uint64_t burst, std::uint32_t max_ticks_per_second,
                       std::uint64_t min_piece) {
    const std::uint64_t ticks = std::max<std::uint64_t>(max_ticks_per_second, 1);
    const std::uint64_t floor = std::max(rate / ticks + (rate % ticks != 0 ? 1 : 0), std::min(min_piece, rate));
    constexpr std::uint64_t hour = 3600;
    constexpr std::uint64_t most = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t ceiling = rate > most / hour ? most : rate * hour;
    return std::max<std::uint64_t>(std::min(std::max(burst, floor), ceiling), 1);
}

// ---- rt_stream ----

namespace {

// What the port's handler shares with the stream: the credit it grants and the stream's wake-up.
struct tick_state {
    tick_state(std::uint64_t piece, std::function<void()> w) : bucket(piece, piece), wake(std::move(w)) {}
    credit bucket;
    std::function<void()> wake;
};

}  // namespace

struct rt_stream::record {
    std::uint64_t id = 0;
    std::shared_ptr<tick_state> tick;
    rt::port port;
    rt::connection connection;
};

rt_stream::rt_stream() = default;

rt_stream::rt_stream(rt_pacing* owner, std::unique_ptr<record> r) : owner_(owner), record_(std::move(r)) {}

rt_stream::rt_stream(rt_stream&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), record_(std::move(other.record_)) {}

rt_stream::~rt_stream() { release(); }

rt_stream& rt_stream::operator=(rt_stream&& other) noexcept {
    if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        record_ = std::move(other.record_);
    }
    return *this;
}

std::uint64_t rt_stream::allowance(std::uint64_t want) {
    return record_ ? record_->tick->bucket.allowance(want) : want;
}

void rt_stream::consume(std::uint64_t n) {
    if (record_) {
        record_->tick->bucket.consume(n);
    }
}

std::uint64_t rt_stream::piece() const { return record_ ? record_->tick->bucket.piece() : 0; }
std::uint64_t rt_stream::available() const { return record_ ? record_->tick->bucket.available() : 0; }
rt::duration rt_stream::period() const { return record_ ? record_->connection.period() : rt::duration(0); }
unsigned rt_stream::vp() const { return record_ ? record_->connection.vp() : 0; }
rt::connection_stats rt_stream::stats() const { return record_ ? record_->connection.stats() : rt::connection_stats{}; }

void rt_stream::release() {
    if (record_) {
        owner_->release(*record_);
        record_.reset();
        owner_ = nullptr;
    }
}

// ---- rt_pacing ----

rt_pacing::rt_pacing(rt::system& system, rt_pacing_config config) : system_(system), config_(config) {}

rt_pacing::~rt_pacing() {
    const std::lock_guard lock(mutex_);
    if (!live_.empty()) {
        spdlog::warn("rt pacing: {} paced streams still admitted at exit", live_.size());
    }
}

std::expected<rt_stream, rt::refusal> rt_pacing::admit(std::uint64_t id, std::uint64_t rate, std::uint64_t burst,
                                                       std::function<void()> wake) {
    auto refuse = [this](errc code, std::string reason) {
        refusals_.fetch_add(1, std::memory_order_relaxed);
        return std::unexpected(rt::refusal{code, std::move(reason)});
    };
    if (rate == 0) {
        return refuse(errc::invalid_argument, "an unpaced stream (rate 0) has no pacing to admit");
    }
    const std::uint64_t piece = rt_piece(rate, burst, config_.max_ticks_per_second, config_.min_piece);
    auto tick = std::make_shared<tick_state>(piece, std::move(wake));
    auto port = system_.open_port(
        fmt::format("stream-{}", id),
        [tick](rt::upcall& up) {
            // Instant 0 is the start-up burst the bucket started with.
            if (up.calibrating() || up.sequence() == 0) {
                return;
            }
            if (tick->bucket.grant() && tick->wake) {
                tick->wake();
            }
        },
        rt::port_options{.budget = config_.tick_budget});
    if (!port) {
        return refuse(port.error().code, describe(port.error()));
    }
    rt::qos q;
    q.rate = static_cast<double>(rate) / static_cast<double>(piece);
    q.delay = rt::duration(0);  // one period: the piece must be granted before the next one is due
    q.buffer_size = static_cast<std::size_t>(piece);
    q.buffer_count = 1;
    auto connected = system_.connect_timer(port->name(), q);
    if (!connected) {
        return refuse(connected.error().code, std::move(connected.error().reason));
    }
    auto r = std::make_unique<rt_stream::record>();
    r->id = id;
    r->tick = std::move(tick);
    r->port = std::move(*port);
    r->connection = std::move(*connected);
    {
        const std::lock_guard lock(mutex_);
        live_.emplace(id, r.get());
    }
    return rt_stream(this, std::move(r));
}

void rt_pacing::release(rt_stream::record& r) {
    // Closing the port disconnects the connection: no VP upcalls it after this. Its handle still
    // reads the final counters (it is detached, not reset), and the view may read them meanwhile.
    r.port.close();
    const rt::connection_stats last = r.connection.stats();
    {
        const std::lock_guard lock(mutex_);
        ended_misses_ += last.misses();
        ended_overruns_ += last.overruns;
        live_.erase(r.id);
    }
    r.connection = rt::connection{};
}

std::uint64_t rt_pacing::connections() const {
    const std::lock_guard lock(mutex_);
    return live_.size();
}

template <class F>
std::uint64_t rt_pacing::sum_live(F f) const {
    std::uint64_t sum = 0;
    for (const auto& entry : live_) {
        sum += f(entry.second->connection.stats());
    }
    return sum;
}

std::uint64_t rt_pacing::deadline_misses() const {
    const std::lock_guard lock(mutex_);
    return ended_misses_ + sum_live([](const rt::connection_stats& s) { return s.misses(); });
}

std::uint64_t rt_pacing::overruns() const {
    const std::lock_guard lock(mutex_);
    return ended_overruns_ + sum_live([](const rt::connection_stats& s) { return s.overruns; });
}

}  // namespace datapump::stream
