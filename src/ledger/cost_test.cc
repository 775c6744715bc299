// Cost arithmetic: exact micro-dollars per request, reservations that always cover the actual
// cost, engine-step splits that add up to the nanosecond, intervals that add up to the
// micro-dollar.
#include "ledger/cost.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace ember::ledger {
namespace {

const ModelPrice kStories{
    .input_per_mtok = 150'000, .cached_input_per_mtok = 75'000, .output_per_mtok = 600'000};

TEST(PriceTokens, ChargesEachKindAtItsPrice) {
  // 1M uncached + 1M cached prompt tokens, 1M completion tokens: $0.15 + $0.075 + $0.60.
  const TokenCost cost = PriceTokens(kStories, 2'000'000, 1'000'000, 1'000'000);
  EXPECT_EQ(cost, (TokenCost{.input = 150'000, .cached_input = 75'000, .output = 600'000}));
  EXPECT_EQ(cost.total(), 825'000);
}

TEST(PriceTokens, RoundsHalfUpPerKind) {
  // 10 tokens x $0.15/M = 1.5 micro-dollars -> 2; 10 x $0.075/M = 0.75 -> 1; 3 x $0.60/M = 1.8
  // -> 2.
  EXPECT_EQ(PriceTokens(kStories, 20, 10, 3),
            (TokenCost{.input = 2, .cached_input = 1, .output = 2}));
  // 3 tokens x $0.15/M = 0.45 -> 0.
  EXPECT_EQ(PriceTokens(kStories, 3, 0, 0).total(), 0);
}

TEST(PriceTokens, ClampsNonsenseCounts) {
  EXPECT_EQ(PriceTokens(kStories, 1'000'000, 5'000'000, -4),
            (TokenCost{.input = 0, .cached_input = 75'000, .output = 0}));
  EXPECT_EQ(PriceTokens(kStories, -1, -1, 0).total(), 0);
}

TEST(WorstCase, RoundsUpAndCoversEverySplitOfThePrompt) {
  // 1 token: 0.15 -> 1, plus 1 token at 0.6 -> 1.
  EXPECT_EQ(WorstCase(kStories, 1, 1), 2);
  // 1M prompt at $0.15, 100 output tokens at $0.60/M = 60: 150000 + 1 (split) + 60.
  EXPECT_EQ(WorstCase(kStories, 1'000'000, 100), 150'061);
  // Equal prices where two half-up roundings beat one ceiling: 5 + 5 tokens at $0.10/M is
  // 0.5 + 0.5 -> 1 + 1 = 2 micro-dollars, but 10 tokens at once is exactly 1.
  const ModelPrice flat{.input_per_mtok = 100'000, .cached_input_per_mtok = 100'000};
  EXPECT_EQ(PriceTokens(flat, 10, 5, 0).total(), 2);
  EXPECT_EQ(WorstCase(flat, 10, 0), 2);
  // Exhaustive over small counts: the reservation is never below what the request can cost.
  const ModelPrice odd{
      .input_per_mtok = 333'333, .cached_input_per_mtok = 250'001, .output_per_mtok = 499'999};
  for (const ModelPrice& p : {kStories, flat, odd}) {
    for (std::int64_t prompt = 0; prompt <= 40; ++prompt) {
      for (std::int64_t cached = 0; cached <= prompt; ++cached) {
        for (std::int64_t out = 0; out <= 12; ++out) {
          ASSERT_LE(PriceTokens(p, prompt, cached, out).total(), WorstCase(p, prompt, 12))
              << prompt << " " << cached << " " << out;
        }
      }
    }
  }
}

TEST(WorstCase, NoSplitMarginWhenOnlyOneInputPriceApplies) {
  const ModelPrice no_cache_price{.input_per_mtok = 100'000, .cached_input_per_mtok = 0};
  EXPECT_EQ(WorstCase(no_cache_price, 10, 0), 1);
  EXPECT_EQ(WorstCase(ModelPrice{}, 1'000'000, 1'000'000), 0);
}

TEST(PriceTime, ChargesTheHourlyPriceByTheNanosecond) {
  EXPECT_EQ(PriceTime(3'060'000, 3'600'000'000'000), 3'060'000);  // an hour at $3.06
  EXPECT_EQ(PriceTime(3'060'000, 1'000'000'000), 850);            // a second: $0.00085
  EXPECT_EQ(PriceTime(3'600'000, 500'000'000), 500);              // half a second at $3.60/h
  EXPECT_EQ(PriceTime(1'000'000, 1'800'000), 1);  // 1.8 ms at $1/h: 0.5 micro-dollars -> 1
  EXPECT_EQ(PriceTime(1'000'000, 1'799'999), 0);
  EXPECT_EQ(PriceTime(3'060'000, -5), 0);
  // A year at $100/h does not overflow.
  EXPECT_EQ(PriceTime(100'000'000, 365LL * 24 * 3'600'000'000'000), 876'000'000'000);
}

TEST(PriceInterval, CostsAddUpToTheWallClockPrice) {
  // A minute at $3.06/h = $0.051: 30 s busy, 10 s loading, 20 s idle.
  UsageInterval iv{.start_ns = 1'000'000'000'000,
                   .end_ns = 1'060'000'000'000,
                   .busy_ns = 30'000'000'000,
                   .cold_start_ns = 10'000'000'000,
                   .price_per_hour = 3'060'000};
  PriceInterval(iv);
  EXPECT_EQ(iv.idle_ns, 20'000'000'000);
  EXPECT_EQ(iv.busy_cost, 25'500);
  EXPECT_EQ(iv.cold_start_cost, 8'500);
  EXPECT_EQ(iv.idle_cost, 17'000);
}

TEST(PriceInterval, RoundingExcessComesOutOfBusy) {
  // $1/h: 1.8 ms busy = 0.5 micro-dollars -> 1, 1.8 ms cold -> 1, but 3.6 ms wall = exactly 1.
  UsageInterval iv{.start_ns = 0,
                   .end_ns = 3'600'000,
                   .busy_ns = 1'800'000,
                   .cold_start_ns = 1'800'000,
                   .price_per_hour = 1'000'000};
  PriceInterval(iv);
  EXPECT_EQ(iv.idle_ns, 0);
  EXPECT_EQ(iv.busy_cost, 0);
  EXPECT_EQ(iv.cold_start_cost, 1);
  EXPECT_EQ(iv.idle_cost, 0);
}

TEST(PriceInterval, ClampsBusyPastTheWall) {
  UsageInterval iv{.start_ns = 0,
                   .end_ns = 60'000'000'000,
                   .busy_ns = 55'000'000'000,
                   .cold_start_ns = 10'000'000'000,
                   .price_per_hour = 3'600'000};
  PriceInterval(iv);
  EXPECT_EQ(iv.cold_start_ns, 10'000'000'000);
  EXPECT_EQ(iv.busy_ns, 50'000'000'000);
  EXPECT_EQ(iv.idle_ns, 0);
  EXPECT_EQ(iv.busy_cost + iv.cold_start_cost + iv.idle_cost, 60'000);
  EXPECT_EQ(iv.busy_cost, 50'000);
}

}  // namespace
}  // namespace ember::ledger
