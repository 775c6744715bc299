#include "common/money.h"

#include <gtest/gtest.h>

namespace ember {
namespace {

TEST(MoneyTest, ParsesDecimalDollarsExactly) {
  EXPECT_EQ(*ParseDollars("12.50", "x"), 12'500'000);
  EXPECT_EQ(*ParseDollars("0.000001", "x"), 1);
  EXPECT_EQ(*ParseDollars("3", "x"), 3'000'000);
  EXPECT_EQ(*ParseDollars("+0.15", "x"), 150'000);
  EXPECT_EQ(*ParseDollars(".5", "x"), 500'000);
  EXPECT_EQ(*ParseDollars("2.1000000", "x"), 2'100'000);  // trailing zeros past 6 digits
  EXPECT_EQ(*ParseDollars("0.1", "x") * 3, *ParseDollars("0.3", "x"));  // no float drift
}

TEST(MoneyTest, RefusesWhatIsNotExact) {
  EXPECT_FALSE(ParseDollars("0.0000001", "budget"));
  EXPECT_FALSE(ParseDollars("-1", "budget"));
  EXPECT_FALSE(ParseDollars("1e3", "budget"));
  EXPECT_FALSE(ParseDollars("", "budget"));
  EXPECT_FALSE(ParseDollars(".", "budget"));
  EXPECT_FALSE(ParseDollars("1.2.3", "budget"));
  EXPECT_FALSE(ParseDollars("99999999999", "budget"));
  auto e = ParseDollars("abc", "--hard-budget");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("--hard-budget"), std::string::npos);
}

TEST(MoneyTest, FormatsRoundTrip) {
  EXPECT_EQ(FormatDollars(12'500'000), "12.50");
  EXPECT_EQ(FormatDollars(1), "0.000001");
  EXPECT_EQ(FormatDollars(0), "0.00");
  EXPECT_EQ(FormatDollars(-2'500'000), "-2.50");
  EXPECT_EQ(FormatDollars(123'456'789), "123.456789");
  for (Microdollars m : {0LL, 1LL, 10LL, 999'999LL, 1'000'001LL, 42'000'000'000LL}) {
    EXPECT_EQ(*ParseDollars(FormatDollars(m), "x"), m);
  }
}

TEST(MoneyTest, MulDivRoundsHalfUpWithoutOverflow) {
  EXPECT_EQ(MulDivRound(3, 1, 2), 2);  // 1.5 -> 2
  EXPECT_EQ(MulDivRound(1, 1, 3), 0);  // 0.33 -> 0
  EXPECT_EQ(MulDivRound(2, 1, 3), 1);  // 0.67 -> 1
  // 10^12 tokens at $15/Mtok: 15,000,000 micro$ per 10^6 tokens.
  EXPECT_EQ(MulDivRound(1'000'000'000'000, 15'000'000, 1'000'000), 15'000'000'000'000);
  EXPECT_EQ(MulDivRound(INT64_MAX, INT64_MAX, 1), INT64_MAX);
}

}  // namespace
}  // namespace ember
