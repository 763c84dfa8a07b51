// File: src/rt/admission.hpp
//
// The EDF admission test, pure: no clock, no threads, no state. The system gives it what each VP
// already carries and the request; it answers with the VP to use or a refusal naming the figures.
//
// Test (per VP, partitioned, non-preemptive EDF; docs/rt.md): a set of tasks fits when for every
// task i on it
//     Σ_j C_j / min(D_j, T_j)  +  B_i / D_i  ≤  max_density
// where B_i is the longest budget among the VP's tasks with a later delay bound than i (an upcall
// is never preempted, so i may wait for one of them to finish). Exact for preemptive EDF with
// D ≥ T and B = 0; sufficient otherwise.
#pragma once

#include "datapump/rt/qos.hpp"

#include <cstddef>
#include <expected>
#include <span>
#include <vector>

namespace datapump::rt::detail {

// One admitted (or requested) connection as admission sees it.
struct task {
    duration budget;   // C: Σ of the stages' budgets
    duration period;   // T
    duration delay;    // D
};

struct admission_limits {
    double max_density = 0.9;
    duration timing_floor{0};
    std::size_t pool_bytes_free = 0;
};

struct admission_request {
    task t;
    duration jitter{0};
    std::size_t pool_bytes = 0;
};

// C / min(D, T).
[[nodiscard]] double density(const task& t);

// Whether `tasks` fits one VP, and if so with how much density used (the left side's maximum over
// i); -1 when it does not fit.
[[nodiscard]] double load_if_fits(std::span<const task> tasks, double max_density);

// Chooses the VP for `request` among `vps` (the tasks each carries): the one where it fits with
// the least room left (ties: the lowest index). Refusals: invalid_argument for figures that can
// never work, full when no VP (or the pool) has room.
[[nodiscard]] std::expected<unsigned, refusal> admit(const admission_request& request,
                                                     std::span<const std::vector<task>> vps,
                                                     const admission_limits& limits);

}  // namespace datapump::rt::detail
