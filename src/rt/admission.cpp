#include "admission.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace datapump::rt::detail {

namespace {

std::string show(duration d) {
    auto ns = d.count();
    if (ns >= 10'000'000) {
        return fmt::format("{:.1f} ms", static_cast<double>(ns) / 1e6);
    }
    if (ns >= 10'000) {
        return fmt::format("{:.1f} us", static_cast<double>(ns) / 1e3);
    }
    return fmt::format("{} ns", ns);
}

std::unexpected<refusal> refuse(errc code, std::string reason) {
    return std::unexpected(refusal{code, std::move(reason)});
}

}  // namespace

double density(const task& t) {
    auto window = std::min(t.delay, t.period);
    if (window.count() <= 0) {
        return 1e9;
    }
    return static_cast<double>(t.budget.count()) / static_cast<double>(window.count());
}

double load_if_fits(std::span<const task> tasks, double max_density) {
    double sum = 0;
    for (const task& t : tasks) {
        sum += density(t);
    }
    // B_i, the longest budget among later delay bounds, for every i in one sweep from the latest
    // delay bound down (O(n log n); the pairwise loop it replaces was O(n^2) per test, twice per
    // VP per connect: a thousand paced streams' admissions took seconds of a loop's time).
    std::vector<const task*> by_delay;
    by_delay.reserve(tasks.size());
    for (const task& t : tasks) {
        by_delay.push_back(&t);
    }
    std::ranges::sort(by_delay, [](const task* a, const task* b) { return a->delay > b->delay; });
    double worst = sum;
    duration blocking{0};  // the longest budget among the delay bounds after the current group's
    for (std::size_t i = 0; i < by_delay.size();) {
        const duration delay = by_delay[i]->delay;
        duration group_longest{0};
        for (; i < by_delay.size() && by_delay[i]->delay == delay; ++i) {
            group_longest = std::max(group_longest, by_delay[i]->budget);
        }
        double load = sum + static_cast<double>(blocking.count()) / static_cast<double>(delay.count());
        worst = std::max(worst, load);
        blocking = std::max(blocking, group_longest);
    }
    // A small tolerance so that a set filled exactly to the limit fits (floating-point sums).
    return worst <= max_density + 1e-12 ? worst : -1.0;
}

std::expected<unsigned, refusal> admit(const admission_request& request, std::span<const std::vector<task>> vps,
                                       const admission_limits& limits) {
    const task& t = request.t;
    if (t.period.count() <= 0) {
        return refuse(errc::invalid_argument, "the rate must be above 0 buffers per second");
    }
    if (t.delay.count() <= 0) {
        return refuse(errc::invalid_argument, "the delay bound must be above 0");
    }
    if (t.budget.count() <= 0) {
        return refuse(errc::invalid_argument, "the budget must be above 0");
    }
    if (t.budget > t.delay) {
        return refuse(errc::invalid_argument,
                      fmt::format("the chain's budget {} exceeds its delay bound {}: it could never finish in time",
                                  show(t.budget), show(t.delay)));
    }
    if (t.delay < limits.timing_floor) {
        return refuse(errc::invalid_argument,
                      fmt::format("the delay bound {} is below what this system can time ({})", show(t.delay),
                                  show(limits.timing_floor)));
    }
    if (request.jitter.count() > 0 && request.jitter < limits.timing_floor) {
        return refuse(errc::invalid_argument,
                      fmt::format("the jitter bound {} is below what this system can time ({})", show(request.jitter),
                                  show(limits.timing_floor)));
    }
    if (request.pool_bytes > limits.pool_bytes_free) {
        return refuse(errc::full, fmt::format("the buffers need {} bytes and the pool has {} left", request.pool_bytes,
                                              limits.pool_bytes_free));
    }
    if (vps.empty()) {
        return refuse(errc::full, "the system has no virtual processors");
    }
    double own = density(t);
    if (own > limits.max_density) {
        return refuse(errc::full, fmt::format("the connection alone needs density {:.3f} (budget {} per {}), "
                                              "above the limit {:.2f}",
                                              own, show(t.budget), show(std::min(t.delay, t.period)),
                                              limits.max_density));
    }
    int best = -1;
    double best_room = 0;
    double most_room = -1;
    std::vector<task> trial;
    for (std::size_t i = 0; i < vps.size(); ++i) {
        trial.assign(vps[i].begin(), vps[i].end());
        double before = trial.empty() ? 0.0 : load_if_fits(trial, 1e300);
        most_room = std::max(most_room, limits.max_density - before);
        trial.push_back(t);
        double load = load_if_fits(trial, limits.max_density);
        if (load < 0) {
            continue;
        }
        double room = limits.max_density - load;
        if (best < 0 || room < best_room) {
            best = static_cast<int>(i);
            best_room = room;
        }
    }
    if (best < 0) {
        return refuse(errc::full,
                      fmt::format("the connection needs density {:.3f} (budget {} per {}) and no virtual processor "
                                  "can take it: the most any has left is {:.3f} of {:.2f} (a long upcall there "
                                  "may also block a shorter delay bound)",
                                  own, show(t.budget), show(std::min(t.delay, t.period)), std::max(most_room, 0.0),
                                  limits.max_density));
    }
    return static_cast<unsigned>(best);
}

}  // namespace datapump::rt::detail
