// File: src/http/server/connection.hpp
//
// One client connection, owned by the loop that accepted it. It reads requests (the proto
// parser), answers them in order (pipelining), and hands bodies to its stream::sender (the send
// paths, pacing and VCR controls, a body that follows an upload, and the response's send timeout,
// pause limit and stall release: docs/stream-engine.md).
//
//   reading ──request──> responding: head ──> body (the sender's transfer)
//           ──> reading
//          ──timeout / error / close──> closing ──(last completion)──> deleted
//
// Lifetime: every submitted operation counts in `outstanding_`; a closing connection deletes
// itself when the last one has delivered its final CQE (for SEND_ZC: the notification), so no
// completion ever names freed memory and no loan is returned before the kernel is done with it.
// Every entry point (completions, timer, posted tasks) ends with settle().
//
// Pacing: a paced body takes its bytes from its rt_stream's credit, which a VP of the server's rt
// system refills at the stream's rate; out of credit, the sender waits until the VP posts a
// wake-up to this loop (on_credit). The rt connection ends with the body (end_body).
//
// Thread-safety: loop thread only.
#pragma once

#include "datapump/cache/loans.hpp"
#include "datapump/fs/file.hpp"
#include "datapump/http/chunked_body.hpp"
#include "datapump/http/proto/request.hpp"
#include "datapump/http/proto/request_parser.hpp"
#include "datapump/ingest/ingest.hpp"
#include "datapump/io/event_loop.hpp"
#include "datapump/stream/open.hpp"
#include "datapump/stream/sender.hpp"
#include "datapump/stream/stream_table.hpp"
#include "server_state.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace datapump::http {

// What the router decided to answer.
struct response_plan {
    int status = 200;
    std::string head;     // the whole response head, ending with the blank line
    std::string body;     // a body held in memory (error pages, JSON, HTML)
    bool close_after = false;
    // A file body (status 200/206 to GET): `length` bytes from `start`.
    std::shared_ptr<fs::file> file;  // shared with the root's open-file cache
    std::uint64_t start = 0;
    std::uint64_t length = 0;
    std::uint64_t file_size = 0;
    // The file body's stream (set with `file`), admitted by the router (stream::open): its gates'
    // shares and its table entry, whose id and capability are in the head.
    std::optional<stream::admitted> stream;
    // A GET of a file being uploaded: the body follows the upload (the sender's growing file).
    std::shared_ptr<upload_entry> follow;
    bool follow_chunked = false;
};

// The wake-up a paced stream's rt ticks call (on a VP) when credit arrives for a stream of
// `ctx`'s loop: it posts on_credit to the loop. Defined in router.cpp.
[[nodiscard]] stream::credit_wake credit_wake(loop_context& ctx);

// The router: everything a request can be answered with, on `ctx`'s loop. Defined in router.cpp.
// `admin`: the request came on the admin listener, which serves only the control plane (and
// the public listeners never serve it, but a stream's own capability).
// `from`: the client's address, for its per-address limits.
[[nodiscard]] response_plan route(loop_context& ctx, const request& req, bool keep_alive, bool admin,
                                  const stream::client_address& from);
// What every request meets before it is routed (or its upload begins): a state-changing request
// from a foreign origin is refused (403), and on the admin listener one without the admin token
// (401) or with a body (404: nothing there takes one). Empty: go on. `settings`: the request's.
[[nodiscard]] std::optional<response_plan> refuse_before_routing(const server_config& settings, const request& req,
                                                                 bool keep_alive, bool admin);
// An answer without a body (201 with `location`, 204). `close` adds Connection: close.
[[nodiscard]] response_plan empty_response(int status, bool close, std::string_view location = {});
// An error answer with a short text body. `close` adds Connection: close.
[[nodiscard]] response_plan error_response(int status, std::string_view detail, bool close);
// A PUT's target, relative to the root, once every check before the body passed (writable, token,
// path, Expect, size limit, no other upload to it); else `refusal` is set and an error returned.
// `settings`: the request's (its token, size limit, dotfiles).
[[nodiscard]] result<std::string> upload_target(server::state& server, const server_config& settings, const request& req,
                                                response_plan& refusal);

// One PUT in progress on a connection (upload.cpp); shared with the publisher until published.
struct upload_state {
    std::string path;  // the target, relative to the root
    std::string temp;  // the temp file beside it
    request req;
    bool keep_alive = false;
    std::optional<fs::file> file;
    std::unique_ptr<chunked_body> decoder;  // a chunked body's; outlives the job (declared first)
    std::unique_ptr<ingest::job> job;
    std::shared_ptr<upload_entry> entry;
    // hostile network: uploads. Its place under the caps (released when the state goes), and its
    // timing: the last body bytes, and the window its minimum rate is measured over.
    upload_slot slot;
    io::clock::time_point last_progress{};
    io::clock::time_point window_start{};
    std::uint64_t window_received = 0;  // job->received() at window_start
};

class connection final : private stream::sender_owner {
public:
    // `admin`: accepted on the admin listener (it sees only the control plane).
    connection(loop_context& ctx, unique_fd fd, std::string peer, std::uint64_t id, bool admin = false);
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection();

    [[nodiscard]] std::uint64_t id() const { return id_; }
    void start();
    // A control request changed this connection's stream (loop thread, from a posted task).
    void kick();
    // Credit came for this connection's paced stream (loop thread, from the task a VP posted).
    void on_credit();
    // Shutdown: close at once (cut) or after the response in progress (drain).
    void cut();
    void drain();
    // Deletes the connection if it is closing and nothing is outstanding. Call last.
    static void settle(connection* c);
    // The upload this connection follows moved on (loop thread, from a posted task).
    void follow_kick();
    // The publisher finished this connection's upload (loop thread, from a posted task).
    void on_published(result<bool> replaced);
    // hostile network: the client's address and its share of the address's connection count
    // (given back when the connection is deleted).
    void hold_client(const stream::client_address& from, stream::connection_slot slot);

private:
    struct op final : io::completion {
        connection* self = nullptr;
        void (connection::*handler)(int, std::uint32_t) = nullptr;
        void complete(int result, std::uint32_t flags) override {
            connection* c = self;
            (c->*handler)(result, flags);
            settle(c);
        }
    };
    enum class phase : std::uint8_t { reading, head, body, memory, upload, closing };
    enum class timer_use : std::uint8_t { none, idle, header, upload };

    // Reading and answering.
    void arm_recv();
    void on_recv(int result, std::uint32_t flags);
    void process_input();
    void answer(response_plan plan);
    void send_out();
    void on_send(int result, std::uint32_t flags);
    void took_out(std::size_t n);
    void finish_response();
    // `reset`: abort the connection (RST) whatever its phase, as a cut body is.
    void close_now(std::string_view why, bool reset = false);
    void on_timer(int result, std::uint32_t flags);
    void arm_wait_timer();

    // Bodies (body.cpp): the stream's registration, the sender's owner.
    void begin_body();
    void sender_progress(std::uint64_t n) override;
    void sender_paused() override;
    void sender_resumed() override;
    bool sender_admitted() override;
    void sender_await_growth() override;
    void sender_done() override;
    void sender_failed(std::string_view why) override;
    void sender_debug(std::string_view detail) override;
    void sender_settle() override;
    void answer_error(int status, std::string_view reason);
    void end_body();
    // logs: the response ended (its last byte sent, or cut): its access line and its durations.
    void response_ended(bool completed);

    // Uploads (upload.cpp).
    void begin_upload(request req, bool keep_alive);
    void start_upload_job();
    void on_upload_done(result<std::uint64_t> total);
    void upload_failed(const error& why, int http_status, bool count = true);
    void upload_progress();
    void upload_timer();
    void arm_upload_timer();

    // Nothing held forever: TCP keep-alive and TCP_USER_TIMEOUT on the socket; the response's
    // limits are the sender's (watch), the re-admission of a stalled stream the connection's.
    void configure_socket();
    [[nodiscard]] stream::send_limits limits() const;
    bool readmit();  // false: refused for now, the sender asks again shortly

    loop_context& ctx_;
    server::state& server_;
    // conf: the settings of the request in progress: the loop's when the request's head was
    // read, kept to the end of its response, so that a reload never changes a live stream.
    std::shared_ptr<const server_config> settings_;
    unique_fd fd_;
    std::string peer_;
    std::uint64_t id_;
    bool admin_ = false;
    unsigned outstanding_ = 0;
    phase phase_ = phase::reading;
    bool recv_armed_ = false;
    bool draining_ = false;

    op recv_op_;
    op send_op_;
    op timer_op_;
    io::timer timer_;
    timer_use timer_use_ = timer_use::none;

    std::vector<std::byte> in_;
    std::size_t in_begin_ = 0;
    std::size_t in_end_ = 0;
    request_parser parser_;

    // The response in progress.
    std::string out_;
    std::size_t out_sent_ = 0;
    // Answers sent at once by send_out that are still on the stack (pipelined requests answered
    // within one another): past the bound, send_out goes through the ring.
    static constexpr unsigned max_direct_depth = 8;
    unsigned direct_depth_ = 0;
    bool close_after_ = false;
    int status_ = 0;
    std::string log_request_;  // method and target, log_escape()d
    bool head_request_ = false;  // the request being answered is a HEAD: answer() sends no body
    io::clock::time_point request_started_{};
    std::uint64_t body_sent_ = 0;

    // The body stream: the sender (its send paths, pacing, controls, a followed upload, and the
    // response's limits), and what the connection keeps of the stream: its registration.
    stream::sender sender_;
    bool body_counted_ = false;  // counted in active_streams (a file body), until end_body
    std::shared_ptr<stream::control> control_;

    // The upload in progress (phase upload).
    std::shared_ptr<upload_state> upload_;
    bool upload_timed_out_ = false;

    // The upload this GET follows (the sender follows its file; the entry rings its kick).
    std::shared_ptr<upload_entry> follow_;

    bool readmit_refusal_logged_ = false;  // a refused re-admission was logged (once per response)
    // hostile network: per-client-address limits (the slots give their counts back when dropped).
    stream::client_address client_;
    stream::connection_slot client_slot_;
    stream::stream_slot stream_slot_;  // the body stream's share, until end_body
    // logs: the access line's request fields, log_escape()d when the head is parsed (method empty:
    // the request never parsed), and when the socket took the response's first byte.
    std::string access_method_;
    std::string access_target_;
    std::string access_referer_;
    std::string access_agent_;
    std::string access_range_;
    unsigned access_version_ = 11;  // HTTP/1.1: major * 10 + minor
    io::clock::time_point first_byte_at_{};
    bool first_byte_sent_ = false;
};

}  // namespace datapump::http
