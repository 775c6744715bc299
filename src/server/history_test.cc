#include "server/history.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace ember::server {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using Json = nlohmann::json;

TEST(LatencyBinsTest, PercentilesAreWithinTheBinsResolution) {
  LatencyBins bins;
  const auto before = bins.Counts();
  // 98 intervals of 10 ms and 2 of 400 ms: p50 is 10 ms, p99 400 ms.
  for (int i = 0; i < 98; ++i) bins.Observe(milliseconds(10));
  for (int i = 0; i < 2; ++i) bins.Observe(milliseconds(400));
  const auto now = bins.Counts();
  const double p50 = *LatencyBins::QuantileNs(now, before, 0.50);
  const double p99 = *LatencyBins::QuantileNs(now, before, 0.99);
  EXPECT_NEAR(p50, 10e6, 10e6 * 0.06);
  EXPECT_NEAR(p99, 400e6, 400e6 * 0.06);
  // Only what came after `before` counts.
  EXPECT_FALSE(LatencyBins::QuantileNs(now, now, 0.5).has_value());
}

TEST(LatencyBinsTest, ExtremesLandInTheEndBins) {
  LatencyBins bins;
  bins.Observe(std::chrono::nanoseconds(1));
  bins.Observe(std::chrono::hours(1));
  const auto counts = bins.Counts();
  EXPECT_EQ(counts.front(), 1u);
  EXPECT_EQ(counts.back(), 1u);
}

TEST(HistoryTest, APointHoldsWhatHappenedInItsStep) {
  History h(std::chrono::seconds(10), 360);
  h.Roll(1005);  // the first point ends at 1010
  h.ObserveTtft(milliseconds(50));
  h.ObserveTtft(milliseconds(50));
  for (int i = 0; i < 100; ++i) h.ObserveInterval(microseconds(20'000));
  h.CountTokens(102);
  h.Sample(3, 0.25);
  h.Sample(1, 0.5);
  h.OnCompleted("finished", "acme", 1200);
  h.OnCompleted("finished", "acme", 300);
  h.OnCompleted("rate_limited", "beta", std::nullopt);
  h.Roll(1009);  // not over yet
  EXPECT_EQ(Json::parse(h.Json())["points"].size(), 0u);
  h.Roll(1010);
  const Json j = Json::parse(h.Json());
  EXPECT_EQ(j["step_seconds"], 10);
  ASSERT_EQ(j["points"].size(), 1u);
  const Json& p = j["points"][0];
  EXPECT_EQ(p["end_unix_s"], 1010);
  EXPECT_NEAR(p["ttft_ms"]["p50"].get<double>(), 50, 50 * 0.06);
  EXPECT_NEAR(p["itl_ms"]["p99"].get<double>(), 20, 20 * 0.06);
  EXPECT_DOUBLE_EQ(p["tokens_per_s"].get<double>(), 10.2);
  EXPECT_EQ(p["queue_max"], 3);
  EXPECT_DOUBLE_EQ(p["kv_used_max"].get<double>(), 0.5);
  EXPECT_EQ(p["outcomes"]["finished"], 2);
  EXPECT_EQ(p["outcomes"]["rate_limited"], 1);
  EXPECT_EQ(p["cost_microdollars"]["acme"], 1500);
  EXPECT_FALSE(p["cost_microdollars"].contains("beta"));  // unpriced: no cost, not zero
}

TEST(HistoryTest, QuietStepsAreEmptyPointsAndTheHistoryIsBounded) {
  History h(std::chrono::seconds(1), 5);
  h.Roll(100);
  h.CountTokens(7);
  h.Roll(104);  // closes 101 (7 tokens) and the empty 102, 103, 104
  Json j = Json::parse(h.Json());
  ASSERT_EQ(j["points"].size(), 4u);
  EXPECT_EQ(j["points"][0]["tokens_per_s"], 7);
  EXPECT_EQ(j["points"][3]["end_unix_s"], 104);
  EXPECT_TRUE(j["points"][3]["ttft_ms"]["p50"].is_null());
  EXPECT_EQ(j["points"][3]["tokens_per_s"], 0);
  h.Roll(1'000'000);  // a long gap: never more than the history's points
  j = Json::parse(h.Json());
  ASSERT_EQ(j["points"].size(), 5u);
  EXPECT_EQ(j["points"][4]["end_unix_s"], 1'000'000);
}

}  // namespace
}  // namespace ember::server
