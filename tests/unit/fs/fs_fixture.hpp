// File: tests/unit/fs/fs_fixture.hpp
//
// A small cache (16 KiB blocks), a registry and one provider instance rooted in a fresh temp
// dir: what every fs test starts from. Parameterised tests run once per provider setup.
//
// Thread-safety: one test at a time.
#pragma once

#include "datapump/fs/registry.hpp"
#include "unit/fs/test_support.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace datapump::test {

inline constexpr std::size_t block = 16 * 1024;

struct provider_setup {
    const char* name;
    std::uint32_t flags;
    const char* label;
};

inline std::string setup_name(const ::testing::TestParamInfo<provider_setup>& info) { return info.param.label; }

inline const provider_setup all_setups[] = {
    {"posix", 0, "posix"},
    {"direct", 0, "direct_fixed"},
    {"direct", fs::config_no_fixed_buffers, "direct_plain_uring"},
    {"direct", fs::config_no_io_uring, "direct_pread"},
};

class fs_test : public ::testing::TestWithParam<provider_setup> {
protected:
    void SetUp() override {
        auto c = cache::file_cache::create({.buffers = {.buffer_size = block, .buffer_count = 64}});
        ASSERT_TRUE(c.has_value()) << describe(c.error());
        cache_ = std::move(*c);
        auto inst = providers_.instantiate(GetParam().name, config());
        ASSERT_TRUE(inst.has_value()) << describe(inst.error());
        instance_ = std::move(*inst);
    }
    void TearDown() override {
        if (cache_ != nullptr) {
            cache_->quiesce();
        }
    }

    [[nodiscard]] fs::instance_config config() const {
        return {.root = dir_.str(), .cache = cache_.get(), .flags = GetParam().flags};
    }

    // Byte-compares loans against `expect` starting at file offset `offset`.
    static void expect_loans(const std::vector<cache::read_loan>& loans, const std::vector<std::byte>& expect,
                             std::uint64_t offset, std::uint64_t length) {
        std::uint64_t at = offset;
        for (const auto& loan : loans) {
            ASSERT_EQ(loan.file_offset(), at);
            ASSERT_LE(at + loan.size(), expect.size());
            ASSERT_EQ(0, std::memcmp(loan.bytes().data(), expect.data() + at, loan.size())) << "at " << at;
            at += loan.size();
        }
        EXPECT_EQ(at, offset + length);
    }

    temp_dir dir_;
    std::unique_ptr<cache::file_cache> cache_;
    fs::registry providers_;
    fs::provider_instance instance_;
};

}  // namespace datapump::test
