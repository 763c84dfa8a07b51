// File: src/rt/scheduler.hpp
//
// The user-level scheduler of one VP (seed 001's ULS): EDF over the upcalls due on it. Pure: it
// owns no thread and reads time only from the injected clock, so tests drive it step by step.
//
//   releases: connection c's buffer k becomes due at its ideal instant t_k; the source's upcall
//             then waits in the ready queue with deadline t_k + D
//   ready:    jobs (connection, buffer, stage) ordered by deadline, then by later stage first
//             (finish what is in flight), then by connection id, then by sequence
//   a job runs one stage; the next stage of the same buffer follows at once unless a more urgent
//   job is waiting (then it goes back to the queue, keeping its deadline)
//
// What is due is found without walking the connections: each connection that will release
// again has one entry in the release queue (its next instant), and each connection holding kept
// buffers is in the loan list. A step costs O(log n) per release, not O(n) (a thousand paced
// streams ticking 4 times a second made the walks most of the VP's time).
//
// Thread-safety: one thread (the VP's) at a time.
#pragma once

#include "direct.hpp"
#include "release_queue.hpp"
#include "state.hpp"

#include "datapump/rt/clock.hpp"

#include <memory>
#include <vector>

namespace datapump::rt::detail {

class scheduler {
public:
    explicit scheduler(const clock& time) : clock_(time) {}
    scheduler(const scheduler&) = delete;
    scheduler& operator=(const scheduler&) = delete;
    ~scheduler();

    void add(std::shared_ptr<connection_state> c);
    // Stops releasing for `c` and drops its jobs (their buffers go back to the pool, uncounted).
    void remove(const connection_state* c);
    [[nodiscard]] std::size_t connections() const { return connections_.size(); }

    // A stage outside this VP finished with a job of `c` (ignored when c was removed): the
    // engine moved a direct connection's chunk (done.j.stage 0), or the peer of an outbound link
    // is done with the buffer (the last stage). The next stage becomes ready with the job's
    // deadline, or the buffer leaves the chain.
    void resume(const std::shared_ptr<connection_state>& c, const chunk_done& done);
    // A buffer of fed connection `c` arrived from its peer: stage 1 becomes ready. False when c
    // is not (or no longer) here: the caller gives the buffer back.
    bool arrive(const std::shared_ptr<connection_state>& c, const job& j);
    // The peer of fed connection `c` sent its last buffer.
    void end_of_stream(const std::shared_ptr<connection_state>& c);

    // The next instant something is due: a release, a loan deadline; time_point::min() when a
    // job is ready now; time_point::max() when nothing will ever be due.
    [[nodiscard]] time_point next_event();
    // Releases what is due, reclaims overdue loans and runs the most urgent job (its chain, as far
    // as nothing more urgent waits). Returns false when there was nothing to do.
    bool step();

private:
    struct order {
        bool operator()(const job& a, const job& b) const;  // a less urgent than b
    };
    void release_due(time_point now);
    // Releases c's instants due by `now` (c was due: its entry came out of the queue).
    void release_connection(connection_state& c, time_point now);
    // Queues c's next instant, unless it releases no more (fed, source ended), is queued already,
    // or is a direct connection at its limit of chunks (then parked: leave() queues it).
    void schedule(connection_state& c);
    void reclaim_due(time_point now);
    void run(job j);
    // Runs j's current stage. False: the buffer left the chain (finished or dropped).
    bool run_stage(job& j);
    void complete(job& j, time_point end);
    void leave(job& j);
    void mark_finished(connection_state& c);
    void push(const job& j);
    job pop();

    const clock& clock_;
    std::vector<std::shared_ptr<connection_state>> connections_;
    std::vector<job> ready_;  // a heap under `order`
    release_queue releases_;
    std::vector<connection_state*> loaning_;  // the connections with kept buffers (has_loans)
};

}  // namespace datapump::rt::detail
