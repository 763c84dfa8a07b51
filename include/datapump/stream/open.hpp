// File: datapump/stream/open.hpp
//
// Opening a stream (docs/stream-engine.md, "The split"): the gates a new stream passes and its
// entry in the stream table, in one place and in this order:
//
//   open(parts, spec) ─1─> clients.start_stream   the client address's streams and paced rate
//                     ─2─> capacity.reserve       the server's paced capacity (paced only)
//                     ─3─> table.make()           the id and the capability (not yet listed)
//                     ─4─> pacing->admit          the rt timer connection (paced only; its burst
//                                                 raised to rt's piece)
//                     ──> admitted {slot, capacity, pacing, controls, rate, burst}
//                      or open_refusal: the gate that refused, with its figures; what the gates
//                         before it took is given back (the table's id is spent: ids are never
//                         reused anyway)
//
// A stalled stream gives its capacity and its rt connection back (the sender's stall release)
// and takes them again with readmit(), by the same code; it keeps its client slot and its entry.
//
// stream/ knows no status codes: the caller turns a refusal into its answer (http/: a 503).
//
// Ownership: `admitted` is move-only; dropping it gives back what it holds (the slot, the
// capacity, the rt connection; the entry was never listed). Its owner lists the entry
// (stream_table::add, after setting `kick`) and removes it when the stream ends.
//
// Thread-safety: open() and readmit() may be called from any thread (every part is any-thread).
// What they return belongs to the caller's thread: the rt_stream's owner rules
// (rt_pacing.hpp). The parts must outlive what they hand out.
#pragma once

#include "datapump/base/expected.hpp"  // <expected>, also for clang 16 with libstdc++ 12
#include "datapump/base/export.hpp"
#include "datapump/stream/admission.hpp"
#include "datapump/stream/client_limits.hpp"
#include "datapump/stream/rt_pacing.hpp"
#include "datapump/stream/stream_table.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>

DATAPUMP_API_BEGIN

namespace datapump::stream {

// The objects a stream is admitted by and registered in (one of each per server).
struct parts {
    client_limits& clients;
    admission& capacity;
    rt_pacing* pacing;  // not null when a paced stream (rate > 0) is opened or readmitted
    stream_table& table;
};

// Called on a VP with the stream's id when rt credit arrives while the stream waits for it. It
// must only post to the stream's thread (never block, never call rt).
using credit_wake = std::function<void(std::uint64_t stream_id)>;

// What is opened: request-independent figures (the caller read them from its request).
struct open_spec {
    client_address from;
    std::uint64_t rate = 0;   // B/s; 0: unpaced (best effort: no capacity, no rt connection)
    std::uint64_t burst = 0;  // B, as asked (paced: raised to rt's piece)
    std::string file;         // the table entry's name of the file ("/movies/a.mp4")
    std::uint64_t start = 0;  // the bytes of the file the stream covers: [start, start + length)
    std::uint64_t length = 0;
    std::uint64_t file_size = 0;
    std::string send_path;  // the table entry's name of the send path ("sendfile")
    credit_wake wake;       // paced streams' credit wake-up
};

// An admitted stream: its share of each gate and its table entry. Move-only (its members are);
// dropping it gives everything back.
struct admitted {
    stream_slot slot;                   // its share of its client address's limits
    reservation capacity;               // its share of the server's capacity (empty: unpaced)
    rt_stream pacing;                   // its rt timer connection (empty: unpaced)
    std::shared_ptr<control> controls;  // its entry: made and filled in, not listed
    std::uint64_t rate = 0;             // B/s; 0: unpaced
    std::uint64_t burst = 0;            // paced: the credit bucket's depth (rt's piece); else as asked
};

// rt refused a paced stream's timer connection (its density test, or the port's name): the
// stream's figures and rt's reason.
struct rt_refusal {
    std::uint64_t rate = 0;   // B/s
    std::uint64_t piece = 0;  // rt_piece() of the rate and the asked burst
    std::string reason;       // rt's
    // "the pacing scheduler (rt) refused the stream (R B/s in pieces of P B: T ticks/s): REASON"
    [[nodiscard]] std::string text() const;
};

// Why a stream was refused: the gate that refused, with the figures for the answer.
//   client_refusal  the client address's limits (1)
//   refusal         the server's capacity (2)
//   rt_refusal      the pacing scheduler (4)
using open_refusal = std::variant<client_refusal, refusal, rt_refusal>;

// The refusal's text, for the answer and the log: describe(client_refusal, from),
// refusal::text() or rt_refusal::text().
[[nodiscard]] std::string describe(const open_refusal& r, const client_address& from);

// Admits and registers the stream `spec` describes (steps 1-4 above). Every refusal is counted
// by the gate that made it.
[[nodiscard]] std::expected<admitted, open_refusal> open(const parts& p, open_spec spec);

// What a stalled stream takes again: its capacity and its rt connection (both empty: unpaced).
struct readmission {
    reservation capacity;
    rt_stream pacing;
};

// Takes the capacity and the rt connection again for the stream whose entry is `c` (its id, rate
// and burst: the burst is already rt's piece), after its stall release gave them back. The
// capacity's refusal is not counted (the stream was admitted once; it asks again until its send
// timeout), rt's is. Refusals: refusal (capacity) or rt_refusal, never client_refusal.
[[nodiscard]] std::expected<readmission, open_refusal> readmit(const parts& p, const control& c,
                                                               const credit_wake& wake);

}  // namespace datapump::stream
DATAPUMP_API_END
