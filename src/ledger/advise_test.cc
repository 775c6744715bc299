// Advise: each rule on synthetic days of hour-long intervals, with the exact monthly savings
// and the numbers people read in the text; the instance table and its errors.
#include "ledger/advise.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ledger/cost.h"

namespace ember::ledger {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::int64_t kSec = 1'000'000'000;
constexpr std::int64_t kMin = 60 * kSec;
constexpr std::int64_t kHour = 60 * kMin;
constexpr std::int64_t kT0 = 1'797'328'800 * kSec;  // 2026-12-15T10:00:00Z
constexpr Microdollars kM7i2xl = 403'200;           // $0.4032/h

UsageInterval Hour(std::int64_t index, std::int64_t busy_ns) {
  UsageInterval iv{.start_ns = kT0 + index * kHour,
                   .end_ns = kT0 + (index + 1) * kHour,
                   .busy_ns = busy_ns,
                   .threads = 8,
                   .price_per_hour = kM7i2xl,
                   .on_demand_price_per_hour = kM7i2xl};
  PriceInterval(iv);
  return iv;
}

// A day on an m7i.2xlarge: `busy(hour)` of engine work in each hour.
template <typename F>
AdviseInput Day(F busy) {
  AdviseInput in;
  in.window_ns = 24 * kHour;
  for (int h = 0; h < 24; ++h) in.intervals.push_back(Hour(h, busy(h)));
  in.requests = 100;
  in.queue_ns_p50 = kSec / 20;
  in.queue_ns_p95 = kSec / 5;
  in.latency_ns_p95 = 4 * kSec;
  in.prices.instance = InstancePrice{
      .price_per_hour = kM7i2xl, .on_demand_price_per_hour = kM7i2xl, .name = "m7i.2xlarge"};
  in.threads = 8;
  return in;
}

// Busy half of each of the first 8 hours, then 16 idle hours: 16.7% busy, 83.3% idle.
AdviseInput QuietDay() {
  return Day([](int h) { return h < 8 ? 30 * kMin : 0; });
}

std::vector<InstanceOffer> Offers() {
  return {{"c7i.large", 2, 4, 89'250, 35'000},       {"c7i.xlarge", 4, 8, 178'500, 70'000},
          {"m7i.xlarge", 4, 16, 201'600, 80'000},    {"m7i.2xlarge", 8, 32, 403'200, 160'000},
          {"c7i.4xlarge", 16, 32, 714'000, 280'000}, {"m7i.4xlarge", 16, 64, 806'400, 320'000}};
}

std::vector<std::string> Kinds(const std::vector<Recommendation>& recs) {
  std::vector<std::string> kinds;
  for (const auto& r : recs) kinds.push_back(r.kind);
  return kinds;
}

TEST(Advise, LongIdleStretchesRecommendScaleToZero) {
  const auto recs = Advise(QuietDay());
  ASSERT_THAT(Kinds(recs), ElementsAre("idle_unload"));
  const Recommendation& r = recs[0];
  // The 16 idle hours cost 16 x $0.4032 = $6.4512 a day: x 730 / 24 = $196.224 a month.
  EXPECT_EQ(r.monthly_saving, 196'224'000);
  EXPECT_THAT(r.text, HasSubstr("m7i.2xlarge was idle 83.3% of the 24.0 h recorded (busy "
                                "16.7%, loading models 0.0%); idle time cost $8.064. 80.0% of "
                                "it came in 1 stretch of 15 min or more without any engine "
                                "work (the longest 16.0 h), which cost $6.4512."));
  EXPECT_THAT(r.text, HasSubstr("saves $196.224 a month (730 h)"));
  EXPECT_NEAR(r.numbers.at("idle_fraction"), 20.0 / 24, 1e-9);
  EXPECT_NEAR(r.numbers.at("utilization"), 4.0 / 24, 1e-9);
  EXPECT_NEAR(r.numbers.at("long_idle_fraction"), 0.8, 1e-9);
  EXPECT_EQ(r.numbers.at("requests"), 100);
}

TEST(Advise, NoScaleToZeroWhenIdleUnloadIsOnOrIdleIsInShortGaps) {
  AdviseInput unload = QuietDay();
  unload.idle_unload_enabled = true;
  EXPECT_THAT(Kinds(Advise(unload)), ElementsAre("none"));
  // 60% idle, but 36 minutes in every hour: no stretch of 15 minutes is known to be empty.
  const auto spread = Advise(Day([](int) { return 24 * kMin; }));
  ASSERT_THAT(Kinds(spread), ElementsAre("none"));
  EXPECT_THAT(spread[0].text, HasSubstr("m7i.2xlarge was busy 40.0%, loading models 0.0% and "
                                        "idle 60.0%; 100 requests waited 0.20 s at p95"));
  EXPECT_THAT(spread[0].text, HasSubstr("The machine cost $9.6768 ($294.336 a month"));
}

TEST(Advise, LowUtilizationRecommendsTheCheapestOfferWithHalfTheVcpus) {
  AdviseInput in = QuietDay();
  in.offers = Offers();
  const auto recs = Advise(in);
  // Sorted by saving: idle $196.224, spot $177.536, c7i.xlarge $164.031.
  ASSERT_THAT(Kinds(recs), ElementsAre("idle_unload", "spot", "smaller_instance"));
  const Recommendation& r = recs[2];
  EXPECT_EQ(r.monthly_saving, (403'200 - 178'500) * 730);
  EXPECT_THAT(r.text, HasSubstr("busy 16.7% of the 24.0 h recorded on m7i.2xlarge (8 vCPUs, "
                                "$0.4032/h). c7i.xlarge has 4 vCPUs and 8 GiB for $0.1785/h: "
                                "the same work would keep it about 33.3% busy"));
  EXPECT_THAT(r.text, HasSubstr("saves $164.031 a month"));
  EXPECT_THAT(r.text, HasSubstr("--threads to at most 4"));
}

TEST(Advise, UnknownCurrentInstanceAssumesThreadsAsVcpus) {
  AdviseInput in = QuietDay();
  in.idle_unload_enabled = true;
  in.prices.instance.name = "";
  in.offers = {{"small", 4, 8, 100'000, std::nullopt}};
  const auto recs = Advise(in);
  ASSERT_THAT(Kinds(recs), ElementsAre("smaller_instance"));
  EXPECT_EQ(recs[0].monthly_saving, 303'200 * 730);
  EXPECT_THAT(recs[0].text, HasSubstr("the current instance ($0.4032/h; 8 vCPUs assumed from "
                                      "--threads, not found in the instance table)"));
  in.idle_unload_enabled = false;
  in.offers.clear();
  EXPECT_THAT(Advise(in)[0].text, HasSubstr("The current instance was idle 83.3%"));
}

TEST(Advise, BusyMachineRecommendsTheCheapestLargerOffer) {
  AdviseInput in = Day([](int) { return 54 * kMin; });  // 90% busy
  in.offers = Offers();
  const auto recs = Advise(in);
  ASSERT_THAT(Kinds(recs), ElementsAre("spot", "larger_instance"));
  const Recommendation& r = recs[1];
  EXPECT_EQ(r.monthly_saving, -226'884'000);  // ($0.4032 - $0.714) x 730
  EXPECT_THAT(r.text, HasSubstr("The machine was busy 90.0% of the time (queue p95 0.20 s) on "
                                "m7i.2xlarge (8 vCPUs, $0.4032/h). c7i.4xlarge has 16 vCPUs for "
                                "$0.714/h: the same work would keep it about 45.0% busy"));
  EXPECT_THAT(r.text, HasSubstr("costs $226.884 more a month (730 h)"));
}

TEST(Advise, SlowQueueWithoutALargerOfferRecommendsAReplica) {
  AdviseInput in = Day([](int) { return 30 * kMin; });
  in.queue_ns_p50 = 3 * kSec / 10;
  in.queue_ns_p95 = 5 * kSec / 2;
  const auto recs = Advise(in);
  ASSERT_THAT(Kinds(recs), ElementsAre("replicas"));
  EXPECT_EQ(recs[0].monthly_saving, -294'336'000);  // $0.4032 x 730
  EXPECT_THAT(recs[0].text,
              HasSubstr("Requests waited 2.50 s at p95 for a slot (p50 0.30 s) and the machine "
                        "was busy 50.0%"));
  EXPECT_THAT(recs[0].text, HasSubstr("Going from 1 to 2 replicas would leave each about 25.0% "
                                      "busy; one more costs $294.336 more a month"));
}

TEST(Advise, SpotOnlyForShortRequestsOnOnDemand) {
  AdviseInput in = Day([](int) { return 30 * kMin; });
  in.offers = Offers();
  auto recs = Advise(in);
  ASSERT_THAT(Kinds(recs), ElementsAre("spot"));
  EXPECT_EQ(recs[0].monthly_saving, 177'536'000);  // ($0.4032 - $0.16) x 730
  EXPECT_THAT(recs[0].text, HasSubstr("95% of the 100 requests finished within 4.00 s, inside "
                                      "the 30.00 s drain timeout"));
  in.latency_ns_p95 = 40 * kSec;
  EXPECT_THAT(Kinds(Advise(in)), ElementsAre("none"));
  in.latency_ns_p95 = 4 * kSec;
  in.prices.instance.spot = true;
  in.prices.instance.price_per_hour = 160'000;
  EXPECT_THAT(Kinds(Advise(in)), ElementsAre("none"));
}

TEST(Advise, MoreThreadsThanVcpus) {
  AdviseInput in = Day([](int) { return 30 * kMin; });
  in.offers = Offers();
  in.threads = 16;
  const auto recs = Advise(in);
  ASSERT_THAT(Kinds(recs), ElementsAre("spot", "threads"));
  EXPECT_EQ(recs[1].monthly_saving, 0);
  EXPECT_THAT(recs[1].text, HasSubstr("ember ran 16 engine threads on m7i.2xlarge (8 vCPUs"));
  EXPECT_THAT(recs[1].text, HasSubstr("set --threads to 8 or fewer"));
}

TEST(Advise, NothingRecorded) {
  const auto recs = Advise(AdviseInput{.window_ns = 7 * 24 * kHour});
  ASSERT_THAT(Kinds(recs), ElementsAre("none"));
  EXPECT_THAT(recs[0].text, HasSubstr("no machine intervals"));
}

TEST(Advise, TextAndJson) {
  const auto recs = Advise(QuietDay());
  const std::string text = AdviceText(recs);
  EXPECT_THAT(text, HasSubstr("Scale to zero when idle: saves $196.224/month\n  m7i.2xlarge "
                              "was idle 83.3%"));
  const std::string json = AdviceJson(recs);
  EXPECT_THAT(json, HasSubstr("\"kind\": \"idle_unload\""));
  EXPECT_THAT(json, HasSubstr("\"monthly_saving\": \"196.224\""));
  EXPECT_THAT(json, HasSubstr("\"monthly_saving_microdollars\": 196224000"));
  EXPECT_THAT(json, HasSubstr("\"observed_hours\": 24.0"));
  EXPECT_THAT(AdviceText(Advise(Day([](int) { return 30 * kMin; }))),
              HasSubstr("No change recommended\n  Over the 24.0 h recorded (of a 24.0 h window)"));
}

std::string ErrorOf(std::string_view text) {
  auto r = ParseInstanceTable(text, "instances.toml");
  return r ? std::string("(accepted)") : r.error().message;
}

TEST(InstanceTable, TheShippedExampleParsesExactly) {
  // src/ledger/advise_test.cc -> the source tree's docs/examples/
  const auto root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  auto offers = LoadInstanceTable(root / "docs/examples/instances.toml");
  ASSERT_TRUE(offers) << offers.error().message;
  ASSERT_EQ(offers->size(), 10u);
  EXPECT_EQ((*offers)[0], (InstanceOffer{"c7i.large", 2, 4, 89'250, 35'000}));
  EXPECT_EQ((*offers)[6], (InstanceOffer{"m7i.2xlarge", 8, 32, 403'200, 160'000}));
}

TEST(InstanceTable, ErrorsNameTheLine) {
  EXPECT_THAT(ErrorOf(""), "(accepted)");
  EXPECT_THAT(ErrorOf("[[instance]]\nname = \"a\"\nvcpus = 2\nmemory_gib = 4\n"),
              HasSubstr("instances.toml:1: [[instance]] needs price_per_hour"));
  EXPECT_THAT(ErrorOf("[[instance]]\nname = \"a\"\nvcpu = 2\n"),
              HasSubstr("instances.toml:3: unknown key \"vcpu\" in [[instance]] (allowed: name, "
                        "vcpus, memory_gib, price_per_hour, spot_price_per_hour)"));
  EXPECT_THAT(
      ErrorOf("[[instance]]\nprice_per_hour = \"0.1\"\n"),
      HasSubstr("instances.toml:2: price_per_hour must be a number of dollars, not a string"));
  EXPECT_THAT(ErrorOf("[[instance]]\nprice_per_hour = 0.0000001\n"),
              HasSubstr("instances.toml:2: price_per_hour: \"0.0000001\" has a fraction"));
  EXPECT_THAT(ErrorOf("[[instance]]\nvcpus = 0\n"),
              HasSubstr("instances.toml:2: vcpus must be a positive integer"));
  EXPECT_THAT(ErrorOf("[instance]\nname = \"a\"\n"),
              HasSubstr("instances.toml:1: write each instance as [[instance]]"));
  const std::string one =
      "[[instance]]\nname = \"a\"\nvcpus = 2\nmemory_gib = 4\n"
      "price_per_hour = 1\n";
  EXPECT_THAT(ErrorOf(one + one), HasSubstr("instances.toml:6: instance \"a\" is listed twice"));
}

}  // namespace
}  // namespace ember::ledger
