#include "metrics/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace ember::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::size_t CountOccurrences(const std::string& haystack, const std::string& needle) {
  std::size_t count = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++count;
  }
  return count;
}

TEST(RegistryTest, RendersCounterWithLabels) {
  Registry registry;
  registry.GetCounter("ember_http_requests_total", "HTTP requests.", {{"code", "200"}}).Inc(3);
  EXPECT_EQ(registry.Render(),
            "# HELP ember_http_requests_total HTTP requests.\n"
            "# TYPE ember_http_requests_total counter\n"
            "ember_http_requests_total{code=\"200\"} 3\n");
}

TEST(RegistryTest, RendersGaugeWithoutLabelsAndFractionalValues) {
  Registry registry;
  Gauge& gauge = registry.GetGauge("ember_kv_usage_ratio", "KV cache usage.");
  gauge.Set(0.25);
  gauge.Add(0.005);
  EXPECT_EQ(registry.Render(),
            "# HELP ember_kv_usage_ratio KV cache usage.\n"
            "# TYPE ember_kv_usage_ratio gauge\n"
            "ember_kv_usage_ratio 0.255\n");
}

TEST(RegistryTest, EscapesLabelValuesAndHelp) {
  Registry registry;
  registry.GetCounter("c_total", "line one\nback\\slash", {{"path", "a\"b\\c\nd"}}).Inc();
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# HELP c_total line one\\nback\\\\slash\n"));
  EXPECT_THAT(text, HasSubstr("c_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(RegistryTest, RendersHistogramCumulativeBuckets) {
  Registry registry;
  Histogram& histogram = registry.GetHistogram("ember_ttft_seconds", "Time to first token.",
                                               {0.005, 0.1, 1}, {{"model", "m"}});
  histogram.Observe(0.001);
  histogram.Observe(0.005);  // upper bounds are inclusive
  histogram.Observe(0.05);
  histogram.Observe(3);
  EXPECT_EQ(registry.Render(),
            "# HELP ember_ttft_seconds Time to first token.\n"
            "# TYPE ember_ttft_seconds histogram\n"
            "ember_ttft_seconds_bucket{model=\"m\",le=\"0.005\"} 2\n"
            "ember_ttft_seconds_bucket{model=\"m\",le=\"0.1\"} 3\n"
            "ember_ttft_seconds_bucket{model=\"m\",le=\"1\"} 3\n"
            "ember_ttft_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
            "ember_ttft_seconds_sum{model=\"m\"} 3.056\n"
            "ember_ttft_seconds_count{model=\"m\"} 4\n");
  EXPECT_EQ(histogram.Count(), 4u);
  EXPECT_EQ(histogram.CumulativeCounts(), (std::vector<std::uint64_t>{2, 3, 3, 4}));
}

TEST(RegistryTest, HistogramWithoutLabelsHasOnlyLe) {
  Registry registry;
  registry.GetHistogram("h", "H.", {1}).Observe(0.5);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{le=\"+Inf\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("h_sum 0.5\n"));
  EXPECT_THAT(text, HasSubstr("h_count 1\n"));
}

TEST(RegistryTest, ConcurrentIncFromFourThreadsSumsExactly) {
  Registry registry;
  Counter& counter = registry.GetCounter("n_total", "N.");
  Histogram& histogram = registry.GetHistogram("h_seconds", "H.", LatencyBuckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        counter.Inc();
        histogram.Observe(0.5);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.Value(), 400000.0);
  EXPECT_EQ(histogram.Count(), 400000u);
  EXPECT_EQ(histogram.Sum(), 200000.0);
  EXPECT_EQ(histogram.CumulativeCounts().back(), 400000u);
}

TEST(RegistryTest, SameNameAndLabelsReturnSameSeries) {
  Registry registry;
  Counter& a = registry.GetCounter("x_total", "X.", {{"k", "v"}, {"j", "w"}});
  Counter& b = registry.GetCounter("x_total", "ignored", {{"k", "v"}, {"j", "w"}});
  Counter& reordered = registry.GetCounter("x_total", "X.", {{"j", "w"}, {"k", "v"}});
  Counter& other = registry.GetCounter("x_total", "X.", {{"k", "other"}});
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&a, &reordered);
  EXPECT_NE(&a, &other);
  Gauge& g1 = registry.GetGauge("g", "G.");
  EXPECT_EQ(&g1, &registry.GetGauge("g", "G."));
  Histogram& h1 = registry.GetHistogram("h", "H.", {1, 2});
  EXPECT_EQ(&h1, &registry.GetHistogram("h", "H.", {1, 2}));
  EXPECT_THAT(registry.Render(), Not(HasSubstr("ignored")));
}

TEST(RegistryTest, RenderIsSortedWithHelpAndTypeOncePerFamily) {
  Registry registry;
  registry.GetCounter("zeta_total", "Z.", {{"a", "2"}}).Inc();
  registry.GetGauge("alpha", "A.").Set(1);
  registry.GetCounter("zeta_total", "Z.", {{"a", "1"}}).Inc(2);
  registry.GetHistogram("mid_seconds", "M.", {1}, {{"a", "1"}});
  registry.GetHistogram("mid_seconds", "M.", {1}, {{"a", "2"}});
  const std::string text = registry.Render();
  EXPECT_EQ(CountOccurrences(text, "# HELP zeta_total"), 1u);
  EXPECT_EQ(CountOccurrences(text, "# TYPE zeta_total counter"), 1u);
  EXPECT_EQ(CountOccurrences(text, "# TYPE mid_seconds histogram"), 1u);
  EXPECT_LT(text.find("# HELP alpha"), text.find("# HELP mid_seconds"));
  EXPECT_LT(text.find("# HELP mid_seconds"), text.find("# HELP zeta_total"));
  EXPECT_LT(text.find("zeta_total{a=\"1\"} 2"), text.find("zeta_total{a=\"2\"} 1"));
}

TEST(RegistryTest, CallbackGaugeIsReadAtScrapeTime) {
  Registry registry;
  double depth = 1;
  registry.AddCallbackGauge("ember_queue_depth", "Queue depth.", {{"q", "main"}},
                            [&depth] { return depth; });
  EXPECT_THAT(registry.Render(), HasSubstr("ember_queue_depth{q=\"main\"} 1\n"));
  depth = 7;
  EXPECT_THAT(registry.Render(), HasSubstr("ember_queue_depth{q=\"main\"} 7\n"));
}

TEST(RegistryTest, FormatsLargeIntegersWithoutExponent) {
  Registry registry;
  registry.GetCounter("big_total", "B.").Inc(123456789012.0);
  EXPECT_THAT(registry.Render(), HasSubstr("big_total 123456789012\n"));
}

TEST(LatencyBucketsTest, SpansOneMillisecondToSixtySeconds) {
  const std::vector<double> buckets = LatencyBuckets();
  ASSERT_EQ(buckets.size(), 20u);
  EXPECT_EQ(buckets.front(), 0.001);
  EXPECT_EQ(buckets.back(), 60.0);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
}

}  // namespace
}  // namespace ember::metrics
