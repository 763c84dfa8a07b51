// ingest::publisher: per-upload and batched durability. A provider that wraps posix and records
// the publishing calls shows the order each mode promises (bytes durable before any name changes,
// names durable before the answer), and how many syncs a batch costs.
#include "datapump/ingest/publisher.hpp"
#include "unit/fs/test_support.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

namespace datapump::test {
namespace {

using namespace std::chrono_literals;
using ingest::durability;
using ingest::publish_request;
using ingest::publisher;

// The calls the wrapped provider saw, in order ("finish", "resize", "sync", "rename", "rename-nosync").
std::mutex calls_mutex;
std::vector<std::string> calls;  // guarded by calls_mutex
const fs::provider_ops* posix_ops = nullptr;

void record(std::string what) {
    const std::lock_guard lock(calls_mutex);
    calls.push_back(std::move(what));
}

std::vector<std::string> take_calls() {
    const std::lock_guard lock(calls_mutex);
    return std::exchange(calls, {});
}

fs::provider_ops recording_ops(const fs::provider_ops& base, const char* name) {
    fs::provider_ops ops = base;
    ops.name = name;
    ops.finish = [](fs::file_handle f, std::uint64_t size) noexcept {
        record("finish");
        return posix_ops->finish(f, size);
    };
    ops.resize = [](fs::file_handle f, std::uint64_t size) noexcept {
        record("resize");
        return posix_ops->resize(f, size);
    };
    ops.sync = [](fs::instance_handle i) noexcept {
        record("sync");
        return posix_ops->sync(i);
    };
    ops.rename = [](fs::instance_handle i, const char* from, const char* to, std::uint32_t flags) noexcept {
        record((flags & fs::rename_defer_sync) != 0 ? "rename-nosync" : "rename");
        return posix_ops->rename(i, from, to, flags);
    };
    return ops;
}

// Waits for `n` callbacks (bounded: a hang fails the test instead of the run).
class outcomes {
public:
    std::function<void(result<bool>)> slot(std::string name) {
        return [this, name = std::move(name)](result<bool> r) {
            const std::lock_guard lock(mutex_);
            results_.emplace_back(name, r ? (*r ? "replaced" : "created") : std::string(to_string(r.error().code)));
            done_.notify_all();
        };
    }
    [[nodiscard]] bool wait_for(std::size_t n) {
        std::unique_lock lock(mutex_);
        return done_.wait_for(lock, 30s, [&] { return results_.size() >= n; });
    }
    [[nodiscard]] std::vector<std::pair<std::string, std::string>> results() {
        const std::lock_guard lock(mutex_);
        return results_;
    }

private:
    std::mutex mutex_;
    std::condition_variable done_;
    std::vector<std::pair<std::string, std::string>> results_;
};

class publisher_test : public ::testing::Test {
protected:
    void SetUp() override {
        posix_ops = providers_.find("posix");
        ASSERT_NE(posix_ops, nullptr);
        static fs::provider_ops recording = recording_ops(*posix_ops, "recording");
        if (providers_.find("recording") == nullptr) {
            ASSERT_TRUE(providers_.add(&recording).has_value());
        }
        auto inst = providers_.instantiate("recording", {.root = dir_.str()});
        ASSERT_TRUE(inst.has_value()) << describe(inst.error());
        instance_ = std::move(*inst);
        (void)take_calls();
    }

    // A temp file holding `bytes` plus 4 KiB of padding the publisher must cut off (as an ingest
    // job leaves it), opened for writing like the upload's.
    fs::file& make_temp(const std::string& temp, const std::vector<std::byte>& bytes) {
        auto f = instance_.open(temp, fs::open_mode::create_new);
        EXPECT_TRUE(f.has_value()) << describe(f.error());
        std::vector<std::byte> padded = bytes;
        padded.resize(bytes.size() + 4096, std::byte{0x5a});
        std::ofstream out(dir_.file(temp), std::ios::binary | std::ios::in | std::ios::out);
        out.write(reinterpret_cast<const char*>(padded.data()), static_cast<std::streamsize>(padded.size()));
        out.close();
        files_.push_back(std::make_unique<fs::file>(std::move(*f)));
        return *files_.back();
    }

    publish_request request(const std::string& name, const std::vector<std::byte>& bytes, outcomes& out) {
        const std::string temp = "." + name + ".tmp";
        return {.file = &make_temp(temp, bytes), .size = bytes.size(), .temp = temp, .path = name,
                .done = out.slot(name)};
    }

    temp_dir dir_;
    fs::registry providers_;
    fs::provider_instance instance_;
    std::vector<std::unique_ptr<fs::file>> files_;
};

TEST_F(publisher_test, per_upload_syncs_each_file_before_its_rename) {
    write_file(dir_.file("b"), pattern(50, 9));
    outcomes out;
    auto pub = publisher::start(instance_, {.mode = durability::per_upload});
    ASSERT_TRUE(pub.has_value()) << describe(pub.error());
    const auto a_bytes = pattern(10000, 1);
    const auto b_bytes = pattern(4096, 2);
    (*pub)->post(request("a", a_bytes, out));
    (*pub)->post(request("b", b_bytes, out));
    ASSERT_TRUE(out.wait_for(2));
    EXPECT_EQ(out.results(), (std::vector<std::pair<std::string, std::string>>{{"a", "created"}, {"b", "replaced"}}));
    EXPECT_EQ(read_file(dir_.file("a")), a_bytes);  // the padding was cut off
    EXPECT_EQ(read_file(dir_.file("b")), b_bytes);
    EXPECT_EQ(take_calls(), (std::vector<std::string>{"finish", "rename", "finish", "rename"}));
    const auto stats = (*pub)->stats();
    EXPECT_EQ(stats.published, 2U);
    EXPECT_EQ(stats.batches, 2U);
    EXPECT_EQ(stats.syncs, 4U);
    EXPECT_EQ(stats.failed, 0U);
}

TEST_F(publisher_test, a_batch_syncs_twice_whatever_its_size_bytes_before_names) {
    outcomes out;
    // A window far longer than the test: the batch goes because it is full.
    auto pub = publisher::start(instance_, {.mode = durability::batched, .batch_window = 1h, .max_batch = 4});
    ASSERT_TRUE(pub.has_value()) << describe(pub.error());
    std::vector<std::vector<std::byte>> bodies;
    for (int i = 0; i < 4; ++i) {
        bodies.push_back(pattern(1000 * static_cast<std::size_t>(i) + 1, static_cast<std::uint8_t>(i + 3)));
        (*pub)->post(request("f" + std::to_string(i), bodies.back(), out));
    }
    ASSERT_TRUE(out.wait_for(4));
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(read_file(dir_.file("f" + std::to_string(i))), bodies[static_cast<std::size_t>(i)]) << i;
        EXPECT_FALSE(std::filesystem::exists(dir_.path() / (".f" + std::to_string(i) + ".tmp")));
    }
    EXPECT_EQ(take_calls(), (std::vector<std::string>{"resize", "resize", "resize", "resize", "sync", "rename-nosync",
                                                      "rename-nosync", "rename-nosync", "rename-nosync", "sync"}));
    const auto stats = (*pub)->stats();
    EXPECT_EQ(stats.batches, 1U);
    EXPECT_EQ(stats.syncs, 2U);
    EXPECT_EQ(stats.published, 4U);
}

TEST_F(publisher_test, a_failed_member_fails_alone_and_loses_its_temp_file) {
    write_file(dir_.file("keep"), pattern(20, 4));
    outcomes out;
    auto pub = publisher::start(instance_, {.mode = durability::batched, .batch_window = 1h, .max_batch = 3});
    ASSERT_TRUE(pub.has_value());
    const auto good = pattern(300, 5);
    const auto replaced = pattern(700, 6);
    (*pub)->post(request("good", good, out));
    auto lost = request("x", pattern(10, 7), out);
    lost.path = "no-such-dir/x";  // its rename fails
    (*pub)->post(std::move(lost));
    (*pub)->post(request("keep", replaced, out));
    ASSERT_TRUE(out.wait_for(3));
    // The failure is told at once; the others once the names are durable.
    EXPECT_EQ(out.results(), (std::vector<std::pair<std::string, std::string>>{
                                 {"x", "not found"}, {"good", "created"}, {"keep", "replaced"}}));
    EXPECT_EQ(read_file(dir_.file("good")), good);
    EXPECT_EQ(read_file(dir_.file("keep")), replaced);
    EXPECT_FALSE(std::filesystem::exists(dir_.path() / ".x.tmp"));
    const auto stats = (*pub)->stats();
    EXPECT_EQ(stats.published, 2U);
    EXPECT_EQ(stats.failed, 1U);
    EXPECT_EQ(stats.syncs, 2U);
}

TEST_F(publisher_test, destruction_publishes_a_batch_still_waiting_for_its_window) {
    outcomes out;
    auto pub = publisher::start(instance_, {.mode = durability::batched, .batch_window = 1h, .max_batch = 256});
    ASSERT_TRUE(pub.has_value());
    const auto bytes = pattern(5000, 8);
    (*pub)->post(request("late", bytes, out));
    pub->reset();  // does not wait an hour
    ASSERT_TRUE(out.wait_for(1));
    EXPECT_EQ(out.results().front().second, "created");
    EXPECT_EQ(read_file(dir_.file("late")), bytes);
}

TEST_F(publisher_test, start_refuses_what_it_cannot_do) {
    auto no_batch = publisher::start(instance_, {.mode = durability::batched, .max_batch = 0});
    ASSERT_FALSE(no_batch.has_value());
    EXPECT_EQ(no_batch.error().code, errc::invalid_argument);
    EXPECT_EQ(publisher::start(fs::provider_instance{}, {}).error().code, errc::invalid_argument);

    static fs::provider_ops no_sync = *posix_ops;
    no_sync.name = "no_sync";
    no_sync.resize = nullptr;
    no_sync.sync = nullptr;
    ASSERT_TRUE(providers_.add(&no_sync).has_value());
    auto inst = providers_.instantiate("no_sync", {.root = dir_.str()});
    ASSERT_TRUE(inst.has_value());
    auto batched = publisher::start(*inst, {.mode = durability::batched});
    ASSERT_FALSE(batched.has_value());
    EXPECT_EQ(batched.error().code, errc::unsupported);
    EXPECT_TRUE(publisher::start(*inst, {.mode = durability::per_upload}).has_value());  // finish + rename suffice
}

}  // namespace
}  // namespace datapump::test
