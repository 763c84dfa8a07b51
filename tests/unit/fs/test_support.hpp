// File: tests/unit/fs/test_support.hpp
//
// Helpers shared by the fs and io unit tests: a temporary directory made with mkdtemp and removed
// with everything in it, deterministic file contents, and a bounded wait.
//
// Thread-safety: temp_dir is owned by one test; the free functions are pure or touch only the
// paths they are given.
#pragma once

#include "support/pattern.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <cstdlib>

namespace datapump::test {

class temp_dir {
public:
    temp_dir() {
        std::string tmpl = "/tmp/datapump-test-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = tmpl;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    [[nodiscard]] std::string str() const { return path_.string(); }
    [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

// Byte i of a test file with `seed`: the formula shared by every test (support/pattern.hpp).
[[nodiscard]] inline std::byte pattern_byte(std::uint64_t i, std::uint32_t seed = 0) {
    return testing::pattern_byte(seed, i);
}

[[nodiscard]] inline std::vector<std::byte> pattern(std::size_t size, std::uint32_t seed = 0) {
    std::vector<std::byte> out(size);
    for (std::size_t i = 0; i < size; ++i) {
        out[i] = pattern_byte(i, seed);
    }
    return out;
}

inline void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(f.good()) << "writing " << path;
}

[[nodiscard]] inline std::vector<std::byte> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        out[i] = static_cast<std::byte>(raw[i]);
    }
    return out;
}

// Polls `done` every 5 ms for at most `limit`; returns its last value. Bounded, so a missing
// notification fails the test instead of hanging it.
template <class Pred>
[[nodiscard]] bool wait_for(Pred done, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (done()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
}

}  // namespace datapump::test
