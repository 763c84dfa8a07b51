#include "scheduler.hpp"

#include <algorithm>

namespace datapump::rt::detail {

namespace {

std::int64_t ns(duration d) { return d.count(); }

}  // namespace

bool scheduler::order::operator()(const job& a, const job& b) const {
    if (a.deadline != b.deadline) {
        return a.deadline > b.deadline;
    }
    if (a.stage != b.stage) {
        return a.stage < b.stage;
    }
    if (a.c->id != b.c->id) {
        return a.c->id > b.c->id;
    }
    return a.sequence > b.sequence;
}

scheduler::~scheduler() {
    while (!connections_.empty()) {
        remove(connections_.back().get());
    }
}

void scheduler::add(std::shared_ptr<connection_state> c) {
    schedule(*c);
    connections_.push_back(std::move(c));
}

void scheduler::schedule(connection_state& c) {
    if (c.fed || c.source_ended || c.queued) {
        return;
    }
    if (c.direct && c.in_flight >= c.direct_limit) {
        c.parked = true;  // released when a chunk comes back (leave): late, never skipped
        return;
    }
    c.queued = true;
    releases_.push(c.ideal(c.next_sequence), &c);
}

void scheduler::remove(const connection_state* c) {
    auto keep_end = std::partition(ready_.begin(), ready_.end(), [c](const job& j) { return j.c != c; });
    for (auto it = keep_end; it != ready_.end(); ++it) {
        if (it->c->buffers) {
            it->c->buffers->finish(it->slot.index);
        }
        --it->c->in_flight;
    }
    ready_.erase(keep_end, ready_.end());
    std::make_heap(ready_.begin(), ready_.end(), order{});
    releases_.erase(c);
    std::erase(loaning_, c);
    std::erase_if(connections_, [c](const std::shared_ptr<connection_state>& s) { return s.get() == c; });
}

void scheduler::push(const job& j) {
    ready_.push_back(j);
    std::push_heap(ready_.begin(), ready_.end(), order{});
}

job scheduler::pop() {
    std::pop_heap(ready_.begin(), ready_.end(), order{});
    job j = ready_.back();
    ready_.pop_back();
    return j;
}

time_point scheduler::next_event() {
    if (!ready_.empty()) {
        return time_point::min();
    }
    time_point next = time_point::max();
    // A connection whose source ended while it was queued releases no more: its entry goes.
    // (A direct connection at its limit of chunks is parked, not queued: it waits for a chunk to
    // come back, and resume rings the VP.)
    while (!releases_.empty() && releases_.top().c->source_ended) {
        releases_.pop().c->queued = false;
    }
    if (!releases_.empty()) {
        next = releases_.top().at;
    }
    for (std::size_t i = 0; i < loaning_.size();) {
        connection_state& c = *loaning_[i];
        time_point loan = c.buffers->next_loan_deadline();
        if (loan == time_point::max()) {
            c.has_loans = false;  // every kept buffer came back: out of the list
            c.loaning = false;
            loaning_[i] = loaning_.back();
            loaning_.pop_back();
            continue;
        }
        next = std::min(next, loan);
        ++i;
    }
    return next;
}

void scheduler::release_due(time_point now) {
    while (!releases_.empty() && releases_.top().at <= now) {
        connection_state& c = *releases_.pop().c;
        c.queued = false;
        release_connection(c, now);
        schedule(c);  // its next instant is after now, or it is parked or ended
    }
}

void scheduler::release_connection(connection_state& c, time_point now) {
    while (!c.fed && !c.source_ended && c.ideal(c.next_sequence) <= now) {
        if (c.direct && c.in_flight >= c.direct_limit) {
            break;  // released when a chunk comes back: late, never skipped
        }
        std::uint64_t k = c.next_sequence++;
        time_point ideal = c.ideal(k);
        job j{.c = &c,
              .stage = 0,
              .slot = {0, nullptr},
              .sequence = k,
              .ideal = ideal,
              .deadline = ideal + c.admitted.delay,
              .length = c.buffer_size};
        if (c.direct) {
            // The engine moves the chunk; the VP only counts the release (stage 0 is not its).
            ++c.in_flight;
            c.counters.bump(c.counters.released);
            c.counters.raise(c.counters.max_start_error_ns, ns(now - ideal));
            if (c.jitter.count() > 0 && now - ideal > c.jitter) {
                c.counters.bump(c.counters.jitter_misses);
            }
            c.direct->enqueue(j);
            continue;
        }
        if (c.buffers) {
            auto slot = c.buffers->acquire();
            if (!slot && c.has_loans) {
                c.counters.bump(c.counters.reclaims, c.buffers->reclaim_overdue(now));
                slot = c.buffers->acquire();
            }
            if (!slot) {
                // Behind with every buffer in use: the instants due now are all skipped at once
                // (counted), not one pool look-up each.
                std::uint64_t next = c.first_after(now, k + 1);
                c.counters.bump(c.counters.starved, next - k);
                c.next_sequence = next;
                break;
            }
            j.slot = *slot;
            j.length = c.buffers->buffer_size();
        }
        // else a timer connection: its one stage is upcalled with a null buffer.
        ++c.in_flight;
        push(j);
    }
}

void scheduler::reclaim_due(time_point now) {
    for (connection_state* c : loaning_) {
        if (c->has_loans && c->buffers->next_loan_deadline() <= now) {
            c->counters.bump(c->counters.reclaims, c->buffers->reclaim_overdue(now));
        }
    }
}

bool scheduler::step() {
    time_point now = clock_.now();
    std::size_t before = ready_.size();
    release_due(now);
    reclaim_due(now);
    if (ready_.empty()) {
        return ready_.size() != before;
    }
    run(pop());
    return true;
}

void scheduler::run(job j) {
    while (run_stage(j)) {
        ++j.stage;
        release_due(clock_.now());  // what fell due during the stage competes for the next one
        if (!ready_.empty() && order{}(j, ready_.front())) {
            push(j);  // something more urgent waits: the buffer keeps its deadline and its place
            return;
        }
    }
}

void scheduler::resume(const std::shared_ptr<connection_state>& c, const chunk_done& done) {
    if (std::find(connections_.begin(), connections_.end(), c) == connections_.end()) {
        return;
    }
    job j = done.j;
    j.length = done.moved;
    if (done.failed) {
        c->counters.bump(c->counters.errors);
    }
    if (done.end) {
        c->source_ended = true;
    }
    if (done.moved == 0 || done.failed) {
        leave(j);  // nothing moved (the source's end), or a failure: no upcall
        return;
    }
    if (j.stage + 1 < c->stages.size()) {
        ++j.stage;
        push(j);
        return;
    }
    complete(j, clock_.now());
}

bool scheduler::arrive(const std::shared_ptr<connection_state>& c, const job& j) {
    if (std::find(connections_.begin(), connections_.end(), c) == connections_.end()) {
        return false;
    }
    ++c->in_flight;
    c->counters.bump(c->counters.released);
    job next = j;
    next.c = c.get();
    next.stage = 1;
    push(next);
    return true;
}

void scheduler::end_of_stream(const std::shared_ptr<connection_state>& c) {
    if (std::find(connections_.begin(), connections_.end(), c) == connections_.end()) {
        return;
    }
    c->source_ended = true;
    if (c->in_flight == 0) {
        mark_finished(*c);
    }
}

void scheduler::mark_finished(connection_state& c) {
    if (c.finished.load(std::memory_order_relaxed)) {
        return;
    }
    if (c.out) {
        c.out->end();
    }
    {
        std::lock_guard lock(c.finished_mutex);
        c.finished.store(true, std::memory_order_release);  // pairs with the acquire in finished()
    }
    c.finished_cv.notify_all();
}

void scheduler::complete(job& j, time_point end) {
    connection_state& c = *j.c;
    c.counters.bump(c.counters.completed);
    c.counters.bump(c.counters.bytes, j.length);
    c.counters.raise(c.counters.max_response_ns, ns(end - j.ideal));
    if (end > j.deadline) {
        c.counters.bump(c.counters.late);
    }
    leave(j);
}

void scheduler::leave(job& j) {
    connection_state& c = *j.c;
    if (c.buffers) {
        c.buffers->finish(j.slot.index);
    }
    if (--c.in_flight == 0 && c.source_ended) {
        mark_finished(c);
    }
    if (c.parked && c.in_flight < c.direct_limit) {
        c.parked = false;
        schedule(c);  // its overdue instants are released at the next step, late
    }
}

bool scheduler::run_stage(job& j) {
    connection_state& c = *j.c;
    time_point start = clock_.now();
    if (j.stage == 0 && c.source_ended) {
        // Released (in a catch-up) before the source ended the stream with an earlier buffer:
        // the source is never upcalled past its last buffer. Abandoned, not counted.
        leave(j);
        return false;
    }
    if (c.on_late == late_policy::drop && start > j.deadline) {
        c.counters.bump(c.counters.dropped);
        leave(j);
        return false;
    }
    if (c.stages[j.stage] == nullptr) {
        // The last stage is elsewhere: the buffer stays in the chain until the link resumes it.
        c.out->send(j);
        return false;
    }
    port_state& p = *c.stages[j.stage];
    upcall up;
    if (c.buffers) {
        up.data_ = std::span<std::byte>(j.slot.address, c.buffers->buffer_size());
    }
    up.length_ = j.length;
    up.sequence_ = j.sequence;
    up.stage_ = j.stage;
    up.stages_ = static_cast<unsigned>(c.stages.size());
    up.ideal_ = j.ideal;
    up.deadline_ = j.deadline;
    up.job_ = &j;
    if (j.stage == 0) {
        c.counters.bump(c.counters.released);
        std::int64_t error = ns(start - j.ideal);
        c.counters.raise(c.counters.max_start_error_ns, error);
        if (c.jitter.count() > 0 && error > ns(c.jitter)) {
            c.counters.bump(c.counters.jitter_misses);
        }
    }
    p.fn(up);
    time_point end = clock_.now();
    if (c.has_loans && !c.loaning) {
        c.loaning = true;  // the handler kept the buffer (upcall::keep): its deadline is watched
        loaning_.push_back(&c);
    }
    if (end - start > c.budgets[j.stage]) {
        c.counters.bump(c.counters.overruns);
    }
    if (c.buffers) {
        j.length = up.length_;
    }
    if (j.stage == 0 && up.end_) {
        c.source_ended = true;
    }
    if (j.stage + 1 < c.stages.size()) {
        return true;
    }
    complete(j, end);
    return false;
}

}  // namespace datapump::rt::detail
