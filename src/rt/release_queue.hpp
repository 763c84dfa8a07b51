// File: src/rt/release_queue.hpp
//
// The next release instants of one VP's connections, soonest first, so that the scheduler pops
// what is due instead of walking every connection at each step. With a thousand paced streams,
// each ticking a few times a second, that walk (three of them per tick, each computing every
// connection's next instant) was most of the VP's time: docs/benchmarks.md, "Many paced viewers".
//
//   entries: a binary min-heap of (instant, connection id, connection), in a vector
//   order:   earlier instant first; on equal instants the lower connection id first, so the
//            order is a function of the entries, never of the heap's history
//
// The queue holds what it is given: the scheduler keeps at most one entry per connection (its
// `queued` flag) and checks, when an entry comes out, whether the connection still releases
// (its source may have ended meanwhile). push and pop are O(log n); erase (a connection leaves
// the VP) is O(n), as the scheduler's other per-connection removals.
//
// Thread-safety: none. The VP's thread only (or run_until's), like the scheduler that owns it.
#pragma once

#include "state.hpp"

#include "datapump/rt/clock.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace datapump::rt::detail {

class release_queue {
public:
    struct entry {
        time_point at{};
        std::uint64_t id = 0;  // the connection's id: the tie-break
        connection_state* c = nullptr;
    };

    [[nodiscard]] bool empty() const { return heap_.empty(); }
    [[nodiscard]] std::size_t size() const { return heap_.size(); }

    void push(time_point at, connection_state* c) {
        heap_.push_back(entry{.at = at, .id = c->id, .c = c});
        std::push_heap(heap_.begin(), heap_.end(), later{});
    }

    // The soonest entry. Precondition: !empty(). Valid until the next push, pop or erase.
    [[nodiscard]] const entry& top() const { return heap_.front(); }

    // Removes and returns the soonest entry. Precondition: !empty().
    entry pop() {
        std::pop_heap(heap_.begin(), heap_.end(), later{});
        entry e = heap_.back();
        heap_.pop_back();
        return e;
    }

    // Removes every entry of `c`.
    void erase(const connection_state* c) {
        auto n = std::erase_if(heap_, [c](const entry& e) { return e.c == c; });
        if (n > 0) {
            std::make_heap(heap_.begin(), heap_.end(), later{});
        }
    }

private:
    struct later {  // a after b: the heap's "less", so that the front is the soonest
        bool operator()(const entry& a, const entry& b) const {
            if (a.at != b.at) {
                return a.at > b.at;
            }
            return a.id > b.id;
        }
    };
    std::vector<entry> heap_;
};

}  // namespace datapump::rt::detail
