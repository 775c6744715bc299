#include "cli/duration.h"

#include <gtest/gtest.h>

namespace ember::cli {
namespace {

TEST(ParseDuration, AcceptsUnitsAndBareSeconds) {
  EXPECT_EQ(ParseDuration("30s").value(), std::chrono::milliseconds(30'000));
  EXPECT_EQ(ParseDuration("500ms").value(), std::chrono::milliseconds(500));
  EXPECT_EQ(ParseDuration("2m").value(), std::chrono::milliseconds(120'000));
  EXPECT_EQ(ParseDuration("1.5").value(), std::chrono::milliseconds(1'500));
}

TEST(ParseDuration, RejectsGarbage) {
  EXPECT_FALSE(ParseDuration("").has_value());
  EXPECT_FALSE(ParseDuration("soon").has_value());
  EXPECT_FALSE(ParseDuration("-1s").has_value());
  EXPECT_FALSE(ParseDuration("10 parsecs").has_value());
}

}  // namespace
}  // namespace ember::cli
