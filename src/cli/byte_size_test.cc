#include "cli/byte_size.h"

#include <gtest/gtest.h>

namespace ember::cli {
namespace {

TEST(ParseByteSize, AcceptsBinarySuffixesAndBareBytes) {
  EXPECT_EQ(ParseByteSize("0").value(), 0u);
  EXPECT_EQ(ParseByteSize("4096").value(), 4096u);
  EXPECT_EQ(ParseByteSize("512MiB").value(), 512ull << 20);
  EXPECT_EQ(ParseByteSize("2GiB").value(), 2ull << 30);
  EXPECT_EQ(ParseByteSize("2G").value(), 2ull << 30);
  EXPECT_EQ(ParseByteSize("2gb").value(), 2ull << 30);
  EXPECT_EQ(ParseByteSize("1.5KiB").value(), 1536u);
  EXPECT_EQ(ParseByteSize("10B").value(), 10u);
}

TEST(ParseByteSize, RejectsGarbage) {
  EXPECT_FALSE(ParseByteSize("").has_value());
  EXPECT_FALSE(ParseByteSize("lots").has_value());
  EXPECT_FALSE(ParseByteSize("-1GiB").has_value());
  EXPECT_FALSE(ParseByteSize("2 parsecs").has_value());
  EXPECT_FALSE(ParseByteSize("0x10").has_value());
  EXPECT_FALSE(ParseByteSize("1e30").has_value());
}

}  // namespace
}  // namespace ember::cli
