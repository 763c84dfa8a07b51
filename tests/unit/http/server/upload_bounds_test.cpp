// Bounded uploads (docs/daemon.md "Uploads"), in process: an upload that finds no free arena
// buffer is a temporary condition (503 with Retry-After), never a 500 or a 408; and an upload
// that the global or per-address cap refuses gets the same, before its body is read.
#include "datapump/http/server.hpp"
#include "unit/http/server/client.hpp"

#include <gtest/gtest.h>

#include <poll.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace datapump;
using namespace std::chrono_literals;
using test::http_client;
namespace fsys = std::filesystem;

std::string put_head(const std::string& target, std::uint64_t length) {
    return "PUT " + target + " HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
}

class upload_bounds_test : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/datapump-uploads-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        config_.root = root_.string();
        config_.listen_port = 0;
        config_.loops = 2;
        config_.writable = true;
        config_.cache_mib = 1;  // 16 buffers of 64 KiB
        config_.buffer_kib = 64;
        config_.upload_windows = 1;
        config_.upload_min_rate = 0;
        config_.access_log = std::getenv("DP_TEST_LOG") != nullptr;
    }
    void TearDown() override {
        if (server_) {
            server_->shutdown(0ms);
            server_.reset();
        }
        std::error_code ec;
        fsys::remove_all(root_, ec);
    }
    void start() {
        auto s = http::server::start(config_);
        ASSERT_TRUE(s) << describe(s.error());
        server_ = std::move(*s);
        port_ = server_->port();
    }
    template <class Pred>
    bool eventually(Pred pred) {
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < until) {
            if (pred(server_->view())) {
                return true;
            }
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }
    // Upload temp files left in the root.
    std::size_t temps() const {
        std::size_t n = 0;
        for (const auto& e : fsys::directory_iterator(root_)) {
            n += e.path().filename().string().find(".dp-upload-") != std::string::npos ? 1U : 0U;
        }
        return n;
    }
    // `n` uploads that sent their head and nothing more: each holds the arena buffer its first
    // bytes would land in.
    std::vector<std::unique_ptr<http_client>> stalled_uploads(int n) {
        std::vector<std::unique_ptr<http_client>> held;
        for (int i = 0; i < n; ++i) {
            held.push_back(std::make_unique<http_client>(port_));
            EXPECT_TRUE(held.back()->send(put_head("/held" + std::to_string(i) + ".bin", 1000)));
        }
        EXPECT_TRUE(eventually([&](const http::server_view& v) {
            return v.ingest.uploads_in_progress == static_cast<std::uint64_t>(n);
        }));
        return held;
    }

    // Uploads that sent their head and nothing more until they hold all `buffers` arena buffers
    // (in progress == buffers). Another pin of a moment (the arena is this small on purpose) can
    // make one of them meet no free buffer and get its 503 instead: it is dropped and another
    // opened, so the arena ends up full of holders whatever the timing.
    std::vector<std::unique_ptr<http_client>> fill_arena(std::uint64_t buffers) {
        std::vector<std::unique_ptr<http_client>> held;
        std::uint64_t opened = 0;
        const std::uint64_t failed_before = server_->view().ingest.uploads_failed;
        for (int round = 0; round < 8; ++round) {
            while (held.size() < buffers) {
                held.push_back(std::make_unique<http_client>(port_));
                EXPECT_TRUE(held.back()->send(put_head("/held" + std::to_string(opened++) + ".bin", 1000)));
            }
            // Every upload opened is in progress or has failed (refused: its client has an answer).
            EXPECT_TRUE(eventually([&](const http::server_view& v) {
                return v.ingest.uploads_in_progress + (v.ingest.uploads_failed - failed_before) >= opened;
            }));
            std::erase_if(held, [](const std::unique_ptr<http_client>& c) {
                pollfd p{c->fd(), POLLIN, 0};
                return ::poll(&p, 1, 0) > 0;
            });
            if (server_->view().ingest.uploads_in_progress == buffers && held.size() == buffers) {
                break;
            }
        }
        EXPECT_EQ(server_->view().ingest.uploads_in_progress, buffers);
        EXPECT_EQ(held.size(), buffers);
        return held;
    }

    fsys::path root_;
    http::server_config config_;
    std::unique_ptr<http::server> server_;
    std::uint16_t port_ = 0;
};

TEST_F(upload_bounds_test, no_free_arena_buffer_is_a_503_with_retry_after) {
    config_.max_uploads = 100;  // above the arena on purpose: the buffers run out first
    config_.max_uploads_per_ip = 0;
    start();
    auto held = fill_arena(16);
    http_client late(port_);
    ASSERT_TRUE(late.send(put_head("/late.bin", 5) + "hello"));
    auto r = late.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(r->header("retry-after"), "1");
    EXPECT_NE(r->body.find("no unpinned buffer"), std::string::npos) << r->body;
    EXPECT_TRUE(late.closed_by_server());
    EXPECT_FALSE(fsys::exists(root_ / "late.bin"));
    // One of the holders goes: its buffer comes back, and the next upload gets it.
    held.front()->abort();
    ASSERT_TRUE(eventually([](const http::server_view& v) { return v.ingest.uploads_in_progress == 15; }))
        << server_->view().ingest.uploads_in_progress << " " << server_->view().ingest.uploads_failed;
    http_client next(port_);
    ASSERT_TRUE(next.send(put_head("/next.bin", 5) + "hello"));
    r = next.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201) << r->body;
    held.clear();
    EXPECT_TRUE(eventually([](const http::server_view& v) { return v.ingest.uploads_in_progress == 0; }));
    EXPECT_EQ(temps(), 0U);
}

TEST_F(upload_bounds_test, the_global_cap_answers_503_before_the_body_is_read) {
    config_.max_uploads = 3;
    config_.max_uploads_per_ip = 0;
    start();
    auto held = stalled_uploads(3);
    http_client over(port_);
    // Expect: 100-continue: the refusal comes instead of the interim answer, no body byte sent.
    ASSERT_TRUE(over.send("PUT /over.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
    auto r = over.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(r->header("retry-after"), "1");
    EXPECT_NE(r->body.find("--max-uploads"), std::string::npos) << r->body;
    EXPECT_TRUE(over.closed_by_server());
    held.pop_back();  // a holder leaves: its slot is free again
    ASSERT_TRUE(eventually([](const http::server_view& v) { return v.ingest.uploads_in_progress == 2; }));
    http_client next(port_);
    ASSERT_TRUE(next.send(put_head("/next.bin", 5) + "hello"));
    r = next.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201) << r->body;
}

TEST_F(upload_bounds_test, the_per_address_cap_answers_503) {
    config_.max_uploads = 0;  // auto: 16 / 2 / 2 = 4
    config_.max_uploads_per_ip = 2;
    start();
    auto held = stalled_uploads(2);
    http_client over(port_);
    ASSERT_TRUE(over.send(put_head("/over.bin", 5)));
    auto r = over.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_NE(r->body.find("--max-uploads-per-ip"), std::string::npos) << r->body;
    EXPECT_EQ(temps(), 2U);  // the holders' only
}

}  // namespace
