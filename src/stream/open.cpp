// Opening a stream: its gates in order and its table entry (open.hpp). What a gate took is given
// back by the handles' destructors when a later gate refuses.
#include "datapump/stream/open.hpp"

#include "datapump/base/check.hpp"

#include <fmt/format.h>

#include <atomic>
#include <type_traits>
#include <utility>

namespace datapump::stream {

namespace {

// The rt timer connection of stream `id` at `rate` (> 0) with bursts of `burst`, or rt's refusal
// with the stream's figures. open()'s step 4 and readmit()'s second half.
std::expected<rt_stream, rt_refusal> pace(rt_pacing* pacing, std::uint64_t id, std::uint64_t rate, std::uint64_t burst,
                                          const credit_wake& wake) {
    DP_CHECK(pacing != nullptr);
    auto paced = pacing->admit(id, rate, burst, [wake, id] { wake(id); });
    if (!paced) {
        const rt_pacing_config& config = pacing->config();
        return std::unexpected(rt_refusal{
            .rate = rate,
            .piece = rt_piece(rate, burst, config.max_ticks_per_second, config.min_piece),
            .reason = std::move(paced.error().reason),
        });
    }
    return std::move(*paced);
}

}  // namespace

std::string rt_refusal::text() const {
    return fmt::format("the pacing scheduler (rt) refused the stream ({} B/s in pieces of {} B: {:.1f} ticks/s): {}",
                       rate, piece, static_cast<double>(rate) / static_cast<double>(piece), reason);
}

std::string describe(const open_refusal& r, const client_address& from) {
    return std::visit(
        [&from](const auto& why) -> std::string {
            using gate = std::decay_t<decltype(why)>;
            if constexpr (std::is_same_v<gate, client_refusal>) {
                return describe(why, from);
            } else {
                return why.text();
            }
        },
        r);
}

std::expected<admitted, open_refusal> open(const parts& p, open_spec spec) {
    admitted a;
    auto slot = p.clients.start_stream(spec.from, spec.rate);
    if (!slot) {
        return std::unexpected(slot.error());
    }
    a.slot = std::move(*slot);
    auto reserved = p.capacity.reserve(spec.rate);
    if (!reserved) {
        return std::unexpected(reserved.error());
    }
    a.capacity = std::move(*reserved);
    a.rate = spec.rate;
    a.burst = spec.burst;
    auto c = p.table.make();
    if (a.rate != 0) {
        auto paced = pace(p.pacing, c->id, a.rate, a.burst, spec.wake);
        if (!paced) {
            return std::unexpected(std::move(paced.error()));
        }
        a.pacing = std::move(*paced);
        a.burst = a.pacing.piece();  // the bucket's depth: the burst, raised to the minimum piece
    }
    c->file = std::move(spec.file);
    c->start = spec.start;
    c->end = spec.start + spec.length;
    c->file_size = spec.file_size;
    // Relaxed: the entry is not listed yet; listing it (the table's mutex) publishes it.
    c->position.store(spec.start, std::memory_order_relaxed);
    c->rate = a.rate;
    c->burst = a.rate == 0 ? 0 : a.burst;
    c->send_path = std::move(spec.send_path);
    a.controls = std::move(c);
    return a;
}

std::expected<readmission, open_refusal> readmit(const parts& p, const control& c, const credit_wake& wake) {
    if (c.rate == 0) {
        return readmission{};
    }
    auto reserved = p.capacity.reserve(c.rate, false);
    if (!reserved) {
        return std::unexpected(reserved.error());
    }
    auto paced = pace(p.pacing, c.id, c.rate, c.burst, wake);
    if (!paced) {
        return std::unexpected(std::move(paced.error()));
    }
    return readmission{.capacity = std::move(*reserved), .pacing = std::move(*paced)};
}

}  // namespace datapump::stream
