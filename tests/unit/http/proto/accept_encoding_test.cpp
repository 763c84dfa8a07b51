#include "datapump/http/proto/accept_encoding.hpp"

#include <gtest/gtest.h>

namespace datapump::http {
namespace {

TEST(accept_encoding, named_codings_with_and_without_weights) {
    EXPECT_TRUE(accepts_coding("gzip, deflate, br, zstd", "br"));  // a browser's page request
    EXPECT_TRUE(accepts_coding("gzip, deflate, br, zstd", "gzip"));
    EXPECT_TRUE(accepts_coding("GZIP;Q=0.5", "gzip"));
    EXPECT_TRUE(accepts_coding("x-gzip", "gzip"));
    EXPECT_TRUE(accepts_coding("br;q=1.000", "br"));
    EXPECT_TRUE(accepts_coding("br;q=0.001", "br"));
    EXPECT_FALSE(accepts_coding("br;q=0", "br"));
    EXPECT_FALSE(accepts_coding("br;q=0.000", "br"));
    EXPECT_FALSE(accepts_coding("gzip", "br"));
    EXPECT_FALSE(accepts_coding("", "gzip"));  // no header: the file as it is
    EXPECT_FALSE(accepts_coding("identity", "gzip"));
}

// '*' covers what is not named; a coding named with q=0 stays refused under '*'.
TEST(accept_encoding, star_covers_what_is_not_named) {
    EXPECT_TRUE(accepts_coding("*", "br"));
    EXPECT_FALSE(accepts_coding("identity;q=1, *;q=0", "gzip"));  // a browser's media request
    EXPECT_FALSE(accepts_coding("*;q=0", "br"));
    EXPECT_FALSE(accepts_coding("br;q=0, *", "br"));
    EXPECT_TRUE(accepts_coding("br;q=0, *", "gzip"));
}

TEST(accept_encoding, malformed_weights_count_as_zero) {
    EXPECT_FALSE(accepts_coding("br;q=2", "br"));
    EXPECT_FALSE(accepts_coding("br;q=", "br"));
    EXPECT_FALSE(accepts_coding("br;q=0.5x", "br"));
    EXPECT_FALSE(accepts_coding("br;q=0.00001", "br"));
    EXPECT_TRUE(accepts_coding("br;level=5", "br"));  // another parameter: no weight given
    EXPECT_TRUE(accepts_coding(" , ,br", "br"));
}

}  // namespace
}  // namespace datapump::http
