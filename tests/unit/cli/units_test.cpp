#include "units.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace datapump::cli {
namespace {

TEST(HumanUnits, BytesBelowOneKibStayBytes) {
    EXPECT_EQ(human_bytes(0), "0 B");
    EXPECT_EQ(human_bytes(999), "999 B");
}

TEST(HumanUnits, BinaryPrefixesWithThreeSignificantDigits) {
    EXPECT_EQ(human_bytes(1000), "0.98 KiB");
    EXPECT_EQ(human_bytes(1536), "1.50 KiB");
    EXPECT_EQ(human_bytes(5 * 1024 * 1024 + 777), "5.00 MiB");
    EXPECT_EQ(human_bytes(std::uint64_t{15} * 1024 * 1024 * 1024 / 10), "1.50 GiB");
    EXPECT_EQ(human_bytes(std::uint64_t{42} * 1024 * 1024), "42.0 MiB");
    EXPECT_EQ(human_bytes(std::uint64_t{512} * 1024 * 1024), "512 MiB");
}

TEST(HumanUnits, RoundingNeverPrintsAThousandOfAPrefix) {
    // 1023.9 KiB rounds to 1024: it is shown in the next unit instead.
    EXPECT_EQ(human_bytes(1023 * 1024 + 900), "1.00 MiB");
}

TEST(HumanUnits, LargestValuesUseTib) {
    EXPECT_EQ(human_bytes(std::numeric_limits<std::uint64_t>::max()), "16777216 TiB");
}

TEST(HumanUnits, Rates) {
    EXPECT_EQ(human_rate(150.0 * 1024 * 1024), "150 MiB/s");
    EXPECT_EQ(human_rate(2.5 * 1024 * 1024 * 1024), "2.50 GiB/s");
    EXPECT_EQ(human_rate(-1.0), "0 B/s");
    EXPECT_EQ(human_rate(std::numeric_limits<double>::infinity()), "0 B/s");
}

}  // namespace
}  // namespace datapump::cli
