#include "datapump/rt/system.hpp"

#include "admission.hpp"
#include "direct.hpp"
#include "pool.hpp"
#include "scheduler.hpp"
#include "state.hpp"
#include "system_state.hpp"
#include "transports.hpp"
#include "vp.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/io/event_loop.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <future>
#include <map>
#include <optional>
#include <thread>

namespace datapump::rt {


using detail::connection_state;
using detail::port_state;

std::optional<refusal> detail::check_qos(const qos& q, bool direct) {
    if (!(q.rate > 0) || q.rate > 1e6) {
        return refusal{errc::invalid_argument,
                       fmt::format("the rate {} is not in (0, 1000000] buffers per second", q.rate)};
    }
    if (q.buffer_size == 0 || q.buffer_count == 0) {
        return refusal{errc::invalid_argument, "the buffer size and count must be above 0"};
    }
    if (direct && q.buffer_size > (std::size_t{1} << 30)) {
        return refusal{errc::invalid_argument, "a direct connection's chunk is at most 1 GiB"};
    }
    if (q.delay.count() < 0 || q.jitter.count() < 0) {
        return refusal{errc::invalid_argument, "negative delay or jitter bound"};
    }
    if (direct && q.on_late == late_policy::drop) {
        return refusal{errc::invalid_argument, "a direct connection never drops data: use deliver_late"};
    }
    return std::nullopt;
}

const clock& machine_clock() {
    static const steady_clock instance;
    return instance;
}

std::string_view to_string(kernel_priority p) {
    switch (p) {
    case kernel_priority::deadline: return "SCHED_DEADLINE";
    case kernel_priority::fifo: return "SCHED_FIFO";
    case kernel_priority::nice: return "nice -20";
    case kernel_priority::none: return "no real-time priority";
    }
    return "?";
}

// ---- held_buffer and upcall ----

held_buffer::held_buffer(held_buffer&& other) noexcept = default;
held_buffer& held_buffer::operator=(held_buffer&& other) noexcept = default;
held_buffer::~held_buffer() = default;

std::span<const std::byte> held_buffer::data() const {
    if (!record_) {
        return {};
    }
    return {record_->address, record_->length};
}

std::uint64_t held_buffer::sequence() const { return record_ ? record_->sequence : 0; }

bool held_buffer::reclaimed() const { return record_ && record_->reclaimed.load(std::memory_order_acquire); }

void held_buffer::release() { record_.reset(); }

held_buffer upcall::keep() {
    if (job_ == nullptr || calibrating_ || data_.data() == nullptr) {
        return {};
    }
    connection_state& c = *job_->c;
    c.has_loans = true;
    return detail::job::make_held(c.buffers->keep(job_->slot.index, length_, sequence_, deadline_));
}

// ---- port ----

port::port(port&& other) noexcept : owner_(other.owner_), state_(other.state_) {
    other.owner_ = nullptr;
    other.state_ = nullptr;
}

port& port::operator=(port&& other) noexcept {
    if (this != &other) {
        close();
        owner_ = std::exchange(other.owner_, nullptr);
        state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
}

port::~port() { close(); }

const std::string& port::name() const {
    static const std::string none;
    return state_ != nullptr ? state_->name : none;
}

duration port::budget() const {
    return state_ != nullptr ? duration(state_->budget_ns.load(std::memory_order_relaxed)) : duration(0);
}

void port::close() {
    if (state_ != nullptr) {
        if (state_->orphaned) {
            delete state_;  // its system is gone and left the record to this handle
        } else {
            owner_->close_port(state_);
        }
        state_ = nullptr;
        owner_ = nullptr;
    }
}

// ---- connection ----

connection::connection(connection&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), state_(std::move(other.state_)) {}

connection& connection::operator=(connection&& other) noexcept {
    if (this != &other) {
        disconnect();
        owner_ = std::exchange(other.owner_, nullptr);
        state_ = std::move(other.state_);
    }
    return *this;
}

connection::~connection() { disconnect(); }

std::uint64_t connection::id() const { return state_ ? state_->id : 0; }
unsigned connection::vp() const { return state_ ? state_->vp : 0; }
duration connection::budget() const { return state_ ? state_->admitted.budget : duration(0); }
double connection::density() const { return state_ ? state_->density : 0.0; }
duration connection::period() const { return state_ ? state_->admitted.period : duration(0); }
duration connection::delay() const { return state_ ? state_->admitted.delay : duration(0); }

connection_stats connection::stats() const {
    connection_stats s;
    if (!state_) {
        return s;
    }
    const detail::connection_counters& c = state_->counters;
    auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
    s.released = get(c.released);
    s.completed = get(c.completed);
    s.late = get(c.late);
    s.dropped = get(c.dropped);
    s.starved = get(c.starved);
    s.jitter_misses = get(c.jitter_misses);
    s.overruns = get(c.overruns);
    s.reclaims = get(c.reclaims);
    s.bytes = get(c.bytes);
    s.max_start_error = duration(c.max_start_error_ns.load(std::memory_order_relaxed));
    s.max_response = duration(c.max_response_ns.load(std::memory_order_relaxed));
    s.errors = get(c.errors);
    if (state_->buffers) {
        s.buffers = state_->buffers->count();
        s.buffers_free = state_->buffers->free_count();
    }
    return s;
}

bool connection::finished() const { return state_ && state_->finished.load(std::memory_order_acquire); }

bool connection::wait_finished(duration timeout) const {
    if (!state_) {
        return false;
    }
    std::unique_lock lock(state_->finished_mutex);
    return state_->finished_cv.wait_for(lock, timeout,
                                        [this] { return state_->finished.load(std::memory_order_acquire); });
}

void connection::disconnect() {
    if (state_ && owner_ != nullptr) {
        if (!state_->detached.load(std::memory_order_acquire)) {  // else the system may be gone
            owner_->disconnect(state_.get());
        }
        owner_ = nullptr;  // the state stays: its counters remain readable
    }
}

bool connection::connected() const {
    return state_ && owner_ != nullptr && !state_->detached.load(std::memory_order_acquire);
}

// ---- system ----

system::system(std::unique_ptr<detail::system_state> state) : state_(std::move(state)) {}

result<std::unique_ptr<system>> system::assemble(const system_config& config, transports_maker make_transports) {
    if (!(config.max_density > 0 && config.max_density <= 1.0)) {
        return fail(errc::invalid_argument, "rt: max_density must be in (0, 1]");
    }
    if (config.spin_window.count() < 0 || config.timing_floor.count() < 0 ||
        config.max_spin_window < config.spin_window) {
        return fail(errc::invalid_argument, "rt: negative spin window or timing floor");
    }
    if (config.calibration_runs == 0 || config.calibration_margin < 1.0) {
        return fail(errc::invalid_argument, "rt: calibration needs at least one run and a margin of 1 or more");
    }
    // The transports check config.tcp and load its key (their errors are create's).
    auto remote = make_transports(config);
    if (!remote) {
        return std::unexpected(remote.error());
    }
    auto state = std::make_unique<detail::system_state>();
    state->config = config;
    state->remote = std::move(*remote);
    // The key's bytes live on in the transports only (wiped with them); the copy of the config
    // forgets them.
    state->config.tcp.key.assign(state->config.tcp.key.size(), '\0');
    state->config.tcp.key.clear();
    state->time = config.time != nullptr ? config.time : &machine_clock();
    unsigned cpus = std::max(1U, std::thread::hardware_concurrency());
    unsigned count = config.vps != 0 ? config.vps : cpus;
    if (count > 256) {
        return fail(errc::invalid_argument, "rt: at most 256 virtual processors");
    }
    state->config.vps = count;
    state->vp_tasks.resize(count);
    state->vp_ids.resize(count);
    for (unsigned i = 0; i < count; ++i) {
        detail::vp_options options{.index = i,
                                   .cpu = config.pin ? static_cast<int>(i % cpus) : -1,
                                   .priority = config.priority,
                                   .fifo_priority = config.fifo_priority,
                                   .spin_window = config.spin_window,
                                   .max_spin_window = config.max_spin_window,
                                   .name = fmt::format("{}-vp{}", config.name, i)};
        state->vps.push_back(std::make_unique<detail::vp>(*state->time, options));
    }
    if (config.engine && state->time->is_steady()) {
        // The ring is single-issuer: it is made on the thread that will submit to it.
        std::promise<result<io::event_loop*>> made;
        std::future<result<io::event_loop*>> ready = made.get_future();
        detail::system_state* st = state.get();
        std::string engine_name = fmt::format("{}-engine", config.name).substr(0, 15);
        state->engine_thread = std::thread([st, engine_name, &made] {
            ::pthread_setname_np(::pthread_self(), engine_name.c_str());
            auto loop = io::event_loop::create(io::loop_config{.entries = 256, .arena = nullptr, .index = 0});
            if (!loop) {
                made.set_value(std::unexpected(loop.error()));
                return;
            }
            st->engine = std::move(*loop);
            made.set_value(st->engine.get());
            st->engine->run();
        });
        auto engine = ready.get();
        if (!engine) {
            state->engine_thread.join();
            return std::unexpected(engine.error());
        }
    }
    return std::unique_ptr<system>(new system(std::move(state)));
}

system::~system() {
    state_->closing.store(true, std::memory_order_release);
    if (state_->remote) {
        state_->remote->stop_serving(*this);
    }
    std::vector<std::shared_ptr<connection_state>> left;
    {
        std::lock_guard lock(state_->mutex);
        left = state_->connections;
    }
    for (const auto& c : left) {
        disconnect(c.get());
    }
    if (state_->remote) {
        state_->remote->close_peers(*this);
    }
    state_->vps.clear();
    if (state_->engine) {
        state_->engine->stop();
        state_->engine_thread.join();
    }
    if (!state_->ports.empty()) {
        spdlog::warn("rt: system destroyed with {} port(s) still open", state_->ports.size());
    }
    // Their handles outlive the system: each now owns its record (port::close deletes it).
    for (auto& entry : state_->ports) {
        entry.second->orphaned = true;
        static_cast<void>(entry.second.release());
    }
}

unsigned system::vps() const { return static_cast<unsigned>(state_->vps.size()); }

vp_info system::vp(unsigned index) const {
    vp_info info;
    if (index >= state_->vps.size()) {
        return info;
    }
    detail::priority_outcome got = state_->vps[index]->outcome();
    info.index = index;
    info.cpu = got.cpu;
    info.priority = got.granted;
    info.priority_note = got.note;
    info.spin_window = state_->vps[index]->spin_window();
    info.wake_error = state_->vps[index]->wake_error();
    std::lock_guard lock(state_->mutex);
    info.connections = state_->vp_tasks[index].size();
    for (const detail::task& t : state_->vp_tasks[index]) {
        info.density += detail::density(t);
    }
    return info;
}

const clock& system::time() const { return *state_->time; }
const system_config& system::config() const { return state_->config; }

namespace {

bool valid_port_name(std::string_view name) {
    if (name.empty() || name.size() > 64) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
               ch == '_' || ch == '-';
    });
}

}  // namespace

result<port> system::open_port(std::string_view name, handler fn, port_options options) {
    if (!valid_port_name(name)) {
        return fail(errc::invalid_argument, "rt: a port name is 1-64 characters of [A-Za-z0-9._-]");
    }
    if (!fn) {
        return fail(errc::invalid_argument, "rt: a port needs a handler");
    }
    if (options.budget.count() < 0) {
        return fail(errc::invalid_argument, "rt: negative budget");
    }
    std::lock_guard lock(state_->mutex);
    if (state_->ports.contains(name)) {
        return fail(errc::busy, "rt: a port of that name is open");
    }
    auto p = std::make_unique<port_state>();
    p->name = std::string(name);
    p->fn = std::move(fn);
    p->declared = options.budget;
    p->budget_ns.store(options.budget.count(), std::memory_order_relaxed);
    port_state* raw = p.get();
    state_->ports.emplace(p->name, std::move(p));
    return port(this, raw);
}

void system::close_port(port_state* p) {
    std::unique_lock lock(state_->mutex);
    // A connect that claimed the port may still be measuring or admitting: wait for its outcome
    // (registered, or the ports given back), so that it never runs or keeps a freed handler.
    // (A handler closing its own port during calibration would wait for itself: not allowed.)
    std::shared_ptr<connection_state> in;
    state_->ports_cv.wait(lock, [this, p, &in] {
        if (p->in == nullptr) {
            return true;
        }
        auto it = std::find_if(state_->connections.begin(), state_->connections.end(),
                               [p](const auto& c) { return c.get() == p->in; });
        if (it == state_->connections.end()) {
            return false;  // being connected, or being disconnected by another thread: wait
        }
        in = *it;  // held: disconnect below needs it alive even if another thread gets there first
        return true;
    });
    lock.unlock();
    if (in) {
        disconnect(in.get());
    }
    lock.lock();
    state_->ports.erase(p->name);
}

std::expected<std::shared_ptr<connection_state>, refusal> system::claim_with_pool(
    std::span<const std::string_view> names, const qos& q) {
    if (auto no = pool_room(q)) {
        return std::unexpected(std::move(*no));
    }
    auto c = std::make_shared<connection_state>();
    if (auto no = claim_ports(*c, names)) {
        return std::unexpected(std::move(*no));
    }
    auto buffers = detail::pool::create(detail::pool_options{.buffer_size = q.buffer_size,
                                                             .count = q.buffer_count,
                                                             .lock_memory = state_->config.lock_memory});
    if (!buffers) {
        release_ports(*c);
        return std::unexpected(refusal{buffers.error().code == errc::invalid_argument ? errc::invalid_argument
                                                                                      : errc::full,
                                       describe(buffers.error())});
    }
    c->buffers = std::move(*buffers);
    return c;
}

std::optional<refusal> system::pool_room(const qos& q) {
    std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::size_t slot = (q.buffer_size + page - 1) / page * page;
    std::lock_guard lock(state_->mutex);
    std::size_t limit = state_->config.max_pool_bytes;
    std::size_t left = limit - std::min(limit, state_->pool_bytes);
    if (q.buffer_count > left / std::max<std::size_t>(slot, 1)) {
        return refusal{errc::full, fmt::format("the buffers need {} bytes ({} x {}) and the pool has {} left",
                                               q.buffer_count * slot, q.buffer_count, slot, left)};
    }
    return std::nullopt;
}

namespace {

// Dry runs of `p`'s handler on a scratch buffer: the longest, times the margin (at least 1 us).
duration calibrate(port_state& p, std::span<std::byte> scratch, const clock& time, unsigned stage, unsigned stages,
                   const system_config& config) {
    duration longest{0};
    for (unsigned run = 0; run < config.calibration_runs; ++run) {
        detail::job::with_calibration_upcall(scratch, stage, stages, time.now(), [&](upcall& up) {
            time_point start = time.now();
            p.fn(up);
            longest = std::max(longest, time.now() - start);
        });
    }
    auto measured = duration(static_cast<std::int64_t>(static_cast<double>(longest.count()) *
                                                       config.calibration_margin));
    return std::max(measured, duration(std::chrono::microseconds(1)));
}

std::string show_chain(std::span<const std::string_view> chain) {
    std::string out;
    for (std::string_view name : chain) {
        if (!out.empty()) {
            out += " -> ";
        }
        out += name;
    }
    return out;
}

}  // namespace

namespace {

std::unexpected<refusal> refused(std::string_view chain, errc code, std::string why) {
    spdlog::info("rt: connect {} refused: {}", chain, why);
    return std::unexpected(refusal{code, std::move(why)});
}


}  // namespace

std::optional<refusal> system::claim_ports(connection_state& c, std::span<const std::string_view> names) {
    std::lock_guard lock(state_->mutex);
    std::vector<port_state*> found;
    for (std::string_view name : names) {
        auto it = state_->ports.find(name);
        if (it == state_->ports.end()) {
            return refusal{errc::not_found, fmt::format("no port named '{}'", name)};
        }
        port_state* p = it->second.get();
        if (p->in != nullptr || std::find(found.begin(), found.end(), p) != found.end()) {
            return refusal{errc::busy, fmt::format("port '{}' is already in a connection", name)};
        }
        found.push_back(p);
    }
    // Claimed now so that a concurrent connect cannot take the same ports while this one measures;
    // given back by release_ports on refusal.
    for (port_state* p : found) {
        p->in = &c;
        c.stages.push_back(p);
    }
    return std::nullopt;
}

void system::release_ports(connection_state& c) {
    {
        std::lock_guard lock(state_->mutex);
        for (port_state* p : c.stages) {
            if (p != nullptr) {
                p->in = nullptr;
            }
        }
    }
    state_->ports_cv.notify_all();  // close_port may wait for this connect's outcome
}

duration system::budgets(connection_state& c, std::span<std::byte> scratch) {
    const clock& time = *state_->time;
    duration total{0};
    auto stages = static_cast<unsigned>(c.stages.size());
    for (unsigned i = 0; i < stages; ++i) {
        port_state* p = c.stages[i];
        if (p == nullptr) {
            // The engine's stage of a direct connection: the VP only posts the move.
            c.budgets.push_back(std::chrono::microseconds(1));
            total += c.budgets.back();
            continue;
        }
        duration b(p->budget_ns.load(std::memory_order_relaxed));
        if (b.count() == 0) {
            b = calibrate(*p, scratch, time, i, stages, state_->config);
            p->budget_ns.store(b.count(), std::memory_order_relaxed);
        }
        c.budgets.push_back(b);
        total += b;
    }
    return total;
}

std::optional<refusal> system::admit(const std::shared_ptr<connection_state>& c, const qos& q, duration budget,
                                     const std::function<std::optional<refusal>(connection_state&)>& before_start) {
    auto period = duration(std::llround(1e9 / q.rate));
    c->rate = q.rate;
    c->admitted = detail::task{.budget = budget, .period = period, .delay = q.delay.count() > 0 ? q.delay : period};
    c->jitter = q.jitter;
    c->on_late = q.on_late;
    c->buffer_size = q.buffer_size;
    c->density = detail::density(c->admitted);
    std::size_t pool_bytes = c->buffers ? c->buffers->bytes() : 0;
    std::unique_lock lock(state_->mutex);
    std::size_t limit = state_->config.max_pool_bytes;
    auto chosen = detail::admit(
        detail::admission_request{.t = c->admitted, .jitter = q.jitter, .pool_bytes = pool_bytes},
        state_->vp_tasks,
        detail::admission_limits{.max_density = state_->config.max_density,
                                 .timing_floor = state_->config.timing_floor,
                                 .pool_bytes_free = limit - std::min(limit, state_->pool_bytes)});
    if (!chosen) {
        return std::move(chosen.error());
    }
    c->vp = *chosen;
    if (before_start) {
        if (auto no = before_start(*c)) {
            return no;
        }
    }
    if (c->buffers && !c->buffers->locked() && state_->config.lock_memory && !state_->warned_unlocked) {
        state_->warned_unlocked = true;
        spdlog::warn("rt: mlock of connection buffers refused (RLIMIT_MEMLOCK?): they are pre-faulted but may be "
                     "swapped out");
    }
    c->id = state_->next_id++;
    state_->vp_tasks[c->vp].push_back(c->admitted);
    state_->vp_ids[c->vp].push_back(c->id);
    state_->pool_bytes += pool_bytes;
    state_->connections.push_back(c);
    state_->ports_cv.notify_all();  // close_port may wait for this connect's outcome
    // The first buffer is due a little after now on real time (the VP must see the connection
    // first), at once on a manual clock.
    const clock& time = *state_->time;
    c->start = time.now() + (time.is_steady() ? std::chrono::milliseconds(1) : duration(0));
    lock.unlock();
    state_->vps[c->vp]->add(c);
    return std::nullopt;
}

std::expected<connection, refusal> system::connect(std::span<const std::string_view> chain, const qos& q) {
    std::string text = show_chain(chain);
    if (state_->closing.load(std::memory_order_acquire)) {
        return refused(text, errc::closed, "the system is shutting down");
    }
    if (chain.size() < 2) {
        return refused(text, errc::invalid_argument, "a connection needs a source and a sink (two ports or more)");
    }
    if (chain.size() > 64) {
        return refused(text, errc::invalid_argument, "a chain has at most 64 stages");
    }
    if (auto no = detail::check_qos(q, false)) {
        return refused(text, no->code, std::move(no->reason));
    }
    for (std::size_t i = 0; i < chain.size(); ++i) {
        if (state_->remote && state_->remote->is_remote(chain[i])) {
            auto remote = state_->remote->connect(*this, chain, i, q);
            if (!remote) {
                spdlog::info("rt: connect {} refused: {}", text, remote.error().reason);
            }
            return remote;
        }
    }
    auto prepared = claim_with_pool(chain, q);
    if (!prepared) {
        return refused(text, prepared.error().code, std::move(prepared.error().reason));
    }
    std::shared_ptr<connection_state> c = std::move(*prepared);
    // Budgets not declared are measured on the pool's first buffer.
    duration budget = budgets(*c, c->buffers->calibration_buffer());
    if (auto no = admit(c, q, budget, nullptr)) {
        release_ports(*c);
        return refused(text, no->code, std::move(no->reason));
    }
    spdlog::debug("rt: connected {} (id {}, vp {}, density {:.3f})", text, c->id, c->vp, c->density);
    return connection(this, std::move(c));
}

std::expected<connection, refusal> system::connect_timer(std::string_view port, const qos& q) {
    std::string text = fmt::format("timer {}", port);
    if (state_->closing.load(std::memory_order_acquire)) {
        return refused(text, errc::closed, "the system is shutting down");
    }
    if (auto no = detail::check_qos(q, false)) {
        return refused(text, no->code, std::move(no->reason));
    }
    auto c = std::make_shared<connection_state>();
    std::array<std::string_view, 1> names{port};
    if (auto no = claim_ports(*c, names)) {
        return refused(text, no->code, std::move(no->reason));
    }
    duration budget = budgets(*c, std::span<std::byte>());
    if (auto no = admit(c, q, budget, nullptr)) {
        release_ports(*c);
        return refused(text, no->code, std::move(no->reason));
    }
    return connection(this, std::move(c));
}

std::expected<connection, refusal> system::connect_direct(const direct_endpoints& ends, std::string_view sync_port,
                                                          const qos& q) {
    std::string text = fmt::format("direct fd {} -> fd {}{}{}", ends.from, ends.to, sync_port.empty() ? "" : " sync ",
                                   sync_port);
    if (state_->closing.load(std::memory_order_acquire)) {
        return refused(text, errc::closed, "the system is shutting down");
    }
    if (!state_->engine) {
        return refused(text, errc::unsupported, "direct connections need the engine loop (a steady clock, engine on)");
    }
    if (auto no = detail::check_qos(q, true)) {
        return refused(text, no->code, std::move(no->reason));
    }
    auto c = std::make_shared<connection_state>();
    c->stages.push_back(nullptr);
    if (!sync_port.empty()) {
        std::array<std::string_view, 1> names{sync_port};
        if (auto no = claim_ports(*c, names)) {
            return refused(text, no->code, std::move(no->reason));
        }
    }
    c->direct_limit = q.buffer_count;
    duration budget = budgets(*c, std::span<std::byte>());
    detail::system_state* st = state_.get();
    auto start_mover = [st, &ends, &q](connection_state& cs) -> std::optional<refusal> {
        detail::vp* target = st->vps[cs.vp].get();
        auto mover = detail::direct_mover::create(
            *st->engine,
            ends,
            q.buffer_size, [target, weak_self = cs.weak_from_this()](const detail::chunk_done& done) {
                if (auto self = weak_self.lock()) {
                    target->resume(std::move(self), done);
                }
            });
        if (!mover) {
            return refusal{mover.error().code, describe(mover.error())};
        }
        cs.direct = std::move(*mover);
        return std::nullopt;
    };
    if (auto no = admit(c, q, budget, start_mover)) {
        release_ports(*c);
        return refused(text, no->code, std::move(no->reason));
    }
    spdlog::debug("rt: connected {} (id {}, vp {})", text, c->id, c->vp);
    return connection(this, std::move(c));
}

void system::disconnect(connection_state* c) {
    // Every caller holds a reference to c (a handle, a link's record, a copy of the list), so c
    // stays valid here even when another thread disconnects it meanwhile.
    std::shared_ptr<connection_state> keep;
    {
        std::unique_lock lock(state_->mutex);
        auto it = std::find_if(state_->connections.begin(), state_->connections.end(),
                               [c](const auto& s) { return s.get() == c; });
        if (it == state_->connections.end()) {
            // Already disconnected, or being disconnected by another thread (a peer's disconnect
            // racing a port's close): return only once that one has let go of the ports, so that
            // the caller may free them.
            state_->ports_cv.wait(lock, [c] { return c->detached.load(std::memory_order_acquire); });
            return;
        }
        keep = *it;
        state_->connections.erase(it);
    }
    state_->vps[c->vp]->remove(c);
    if (c->direct) {
        // Nothing may still name the mover's completion when the caller closes its descriptors.
        std::promise<void> stopped;
        std::future<void> done = stopped.get_future();
        c->direct->stop([&stopped] { stopped.set_value(); });
        done.wait();
    }
    if (c->out) {
        c->out->close();
    }
    std::lock_guard lock(state_->mutex);
    auto& ids = state_->vp_ids[c->vp];
    auto& tasks = state_->vp_tasks[c->vp];
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] == c->id) {
            ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(i));
            tasks.erase(tasks.begin() + static_cast<std::ptrdiff_t>(i));
            break;
        }
    }
    state_->pool_bytes -= c->buffers ? c->buffers->bytes() : 0;
    for (port_state* p : c->stages) {
        if (p != nullptr) {  // a direct connection's engine stage has no port
            p->in = nullptr;
        }
    }
    c->detached.store(true, std::memory_order_release);  // pairs with the acquire in connection::disconnect
    state_->ports_cv.notify_all();  // a close_port may wait for this disconnect to let go of its port
}

result<void> system::post(std::function<void()> task) {
    if (state_->closing.load(std::memory_order_acquire)) {
        return fail(errc::closed, "rt: post: the system is shutting down");
    }
    if (!state_->time->is_steady()) {
        std::lock_guard lock(state_->posted_mutex);
        state_->posted.push_back(std::move(task));
        return {};
    }
    if (!state_->engine) {
        return fail(errc::unsupported, "rt: post: the system has no engine loop");
    }
    state_->engine->post(std::move(task));
    return {};
}

void system::run_until(time_point until) {
    if (state_->time->is_steady()) {
        spdlog::error("rt: run_until is for systems on a manual clock");
        return;
    }
    auto* manual = const_cast<manual_clock*>(dynamic_cast<const manual_clock*>(state_->time));
    while (true) {
        std::vector<std::function<void()>> tasks;
        {
            std::lock_guard lock(state_->posted_mutex);
            tasks.swap(state_->posted);
        }
        for (auto& task : tasks) {
            task();
        }
        if (!tasks.empty()) {
            continue;
        }
        detail::vp* next = nullptr;
        time_point when = time_point::max();
        for (auto& v : state_->vps) {
            time_point t = v->driven().next_event();
            if (t < when) {
                when = t;
                next = v.get();
            }
        }
        if (next == nullptr || when > until) {
            break;
        }
        if (manual != nullptr && when != time_point::min()) {
            manual->set(when);
        }
        next->driven().step();
    }
    if (manual != nullptr) {
        manual->set(until);
    }
}

}  // namespace datapump::rt
