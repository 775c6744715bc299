// Tests of usage reports: grouping, exact totals, time windows, the machine summary's arithmetic,
// the JSON shape scripts depend on, CSV and table output, and --by/--since parsing.
#include "ledger/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace ember::ledger {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kDay = 86'400 * kSecond;
constexpr std::int64_t kDec1 = 1'796'083'200 * kSecond;  // 2026-12-01T00:00:00Z

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "ember_report_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto store = Store::Open(dir_ / "ledger.db", SyncMode::kNormal);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  void Write(const std::vector<UsageRecord>& records,
             const std::vector<UsageInterval>& intervals = {},
             const std::vector<MachineEvent>& events = {}) {
    auto written = store_->Write(records, intervals, events);
    ASSERT_TRUE(written) << written.error().message;
  }
  Report Build(const Filter& filter, const std::string& by) {
    auto keys = ParseGroupBy(by);
    EXPECT_TRUE(keys) << keys.error().message;
    auto report = BuildReport(*store_, filter, keys.value_or(std::vector<GroupKey>{}));
    EXPECT_TRUE(report) << report.error().message;
    return report.value_or(Report{});
  }

  fs::path dir_;
  std::unique_ptr<Store> store_;
};

UsageRecord Record(std::string id, std::string tenant, std::string model, std::int64_t finished_ns,
                   Microdollars input, Microdollars output) {
  UsageRecord r;
  r.request_id = std::move(id);
  r.tenant = std::move(tenant);
  r.model = std::move(model);
  r.key_id = "k1";
  r.finished_ns = finished_ns;
  r.prompt_tokens = 10;
  r.cached_prompt_tokens = 4;
  r.completion_tokens = 5;
  r.input_cost = input;
  r.cached_input_cost = 1;
  r.output_cost = output;
  r.infra_cost = 7;
  r.engine_ns = kSecond / 2;
  r.queue_ns = kSecond / 4;
  return r;
}

TEST(ParseGroupByTest, AcceptsTheKeysInTheOrderGivenAndRefusesOthers) {
  EXPECT_EQ(ParseGroupBy("tenant,model"),
            (std::vector<GroupKey>{GroupKey::kTenant, GroupKey::kModel}));
  EXPECT_EQ(ParseGroupBy(" day , key "), (std::vector<GroupKey>{GroupKey::kDay, GroupKey::kKey}));
  EXPECT_EQ(ParseGroupBy(""), std::vector<GroupKey>{});
  auto unknown = ParseGroupBy("tenant,region");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(unknown.error().message, HasSubstr("\"region\""));
  EXPECT_THAT(unknown.error().message, HasSubstr("tenant, model, key and day"));
  auto twice = ParseGroupBy("model,tenant,model");
  ASSERT_FALSE(twice);
  EXPECT_THAT(twice.error().message, HasSubstr("\"model\" is named twice"));
  EXPECT_FALSE(ParseGroupBy("tenant,"));
}

TEST(ParseTimeArgTest, AcceptsDatesTimesUnixSecondsAndAges) {
  const std::int64_t now = kDec1 + 12 * 3600 * kSecond;
  EXPECT_EQ(ParseTimeArg("2026-12-01", now), kDec1);
  EXPECT_EQ(ParseTimeArg("2026-12-01T10:00:00Z", now), kDec1 + 36'000 * kSecond);
  EXPECT_EQ(ParseTimeArg("2024-02-29T23:59:59Z", now), (1'709'251'199) * kSecond);
  EXPECT_EQ(ParseTimeArg("1733000000", now), 1'733'000'000 * kSecond);
  EXPECT_EQ(ParseTimeArg("7d", now), now - 7 * kDay);
  EXPECT_EQ(ParseTimeArg("24h", now), now - kDay);
  EXPECT_EQ(ParseTimeArg("30m", now), now - 1'800 * kSecond);
  for (const char* bad :
       {"", "yesterday", "2026-13-01", "2026-02-29", "2026-12-01T24:00:00Z", "2026-12-01T10:00:00",
        "2026-12-01 10:00:00Z", "7w", "-7d", "d", "1.5h", "99999999999999999999"}) {
    auto parsed = ParseTimeArg(bad, now);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(ParseTimeArg("yesterday", now).error().message,
              HasSubstr("expected a date (2026-12-01)"));
}

TEST_F(ReportTest, GroupsByTenantAndModelSortedByKeys) {
  Write({Record("1", "beta", "m1", kDec1, 100, 200), Record("2", "acme", "m2", kDec1, 10, 20),
         Record("3", "acme", "m1", kDec1, 1, 2), Record("4", "acme", "m2", kDec1, 1000, 2000),
         Record("5", "", "m1", kDec1, 5, 5)});
  const Report report = Build(Filter{}, "tenant,model");
  ASSERT_EQ(report.rows.size(), 4u);
  EXPECT_EQ(report.rows[0].keys, (std::vector<std::string>{"", "m1"}));
  EXPECT_EQ(report.rows[1].keys, (std::vector<std::string>{"acme", "m1"}));
  EXPECT_EQ(report.rows[2].keys, (std::vector<std::string>{"acme", "m2"}));
  EXPECT_EQ(report.rows[3].keys, (std::vector<std::string>{"beta", "m1"}));
  const ReportRow& acme_m2 = report.rows[2];
  EXPECT_EQ(acme_m2.requests, 2);
  EXPECT_EQ(acme_m2.prompt_tokens, 20);
  EXPECT_EQ(acme_m2.cached_prompt_tokens, 8);
  EXPECT_EQ(acme_m2.completion_tokens, 10);
  EXPECT_EQ(acme_m2.input_cost, 1010);
  EXPECT_EQ(acme_m2.cached_input_cost, 2);
  EXPECT_EQ(acme_m2.output_cost, 2020);
  EXPECT_EQ(acme_m2.cost, 1010 + 2 + 2020);
  EXPECT_EQ(acme_m2.infra_cost, 14);
  EXPECT_EQ(acme_m2.engine_ns, kSecond);
  EXPECT_EQ(report.total.requests, 5);
  EXPECT_EQ(report.total.cost, 301 + 31 + 4 + 3001 + 11);
}

TEST_F(ReportTest, GroupsByUtcDayOfFinish) {
  Write({Record("1", "a", "m", kDec1 - 1, 1, 0), Record("2", "a", "m", kDec1, 2, 0),
         Record("3", "a", "m", kDec1 + kDay - 1, 4, 0), Record("4", "a", "m", kDec1 + kDay, 8, 0)});
  const Report report = Build(Filter{}, "day");
  ASSERT_EQ(report.rows.size(), 3u);
  EXPECT_EQ(report.rows[0].keys, std::vector<std::string>{"2026-11-30"});
  EXPECT_EQ(report.rows[0].input_cost, 1);
  EXPECT_EQ(report.rows[1].keys, std::vector<std::string>{"2026-12-01"});
  EXPECT_EQ(report.rows[1].input_cost, 6);
  EXPECT_EQ(report.rows[2].keys, std::vector<std::string>{"2026-12-02"});
  EXPECT_EQ(report.rows[2].input_cost, 8);
}

TEST_F(ReportTest, TotalsEqualTheSumOfRowsAndOfRecordsToTheMicrodollar) {
  std::mt19937_64 rng(42);
  const std::vector<std::string> tenants = {"", "acme", "beta", "gamma", "delta"};
  const std::vector<std::string> models = {"stories260K", "llama-3-8b", "qwen"};
  auto pick = [&](std::int64_t n) { return static_cast<std::int64_t>(rng() % n); };
  std::vector<UsageRecord> records;
  for (int i = 0; i < 5000; ++i) {
    UsageRecord r;
    r.request_id = "req-" + std::to_string(i);
    r.tenant = tenants[pick(5)];
    r.model = models[pick(3)];
    r.key_id = "key-" + std::to_string(pick(4));
    r.finished_ns = kDec1 + pick(10 * kDay);
    r.prompt_tokens = pick(100'000);
    r.cached_prompt_tokens = pick(r.prompt_tokens + 1);
    r.completion_tokens = pick(10'000);
    r.input_cost = pick(1'000'000'000);
    r.cached_input_cost = pick(1'000'000);
    r.output_cost = pick(1'000'000'000);
    r.infra_cost = pick(10'000'000);
    r.engine_ns = pick(100 * kSecond);
    r.queue_ns = pick(10 * kSecond);
    records.push_back(r);
  }
  Write(records);
  ReportRow naive;
  std::map<std::pair<std::string, std::string>, Microdollars> naive_cost;  // (tenant, day)
  for (const auto& r : records) {
    naive.requests += 1;
    naive.prompt_tokens += r.prompt_tokens;
    naive.cached_prompt_tokens += r.cached_prompt_tokens;
    naive.completion_tokens += r.completion_tokens;
    naive.cost += r.input_cost + r.cached_input_cost + r.output_cost;
    naive.input_cost += r.input_cost;
    naive.cached_input_cost += r.cached_input_cost;
    naive.output_cost += r.output_cost;
    naive.infra_cost += r.infra_cost;
    naive.engine_ns += r.engine_ns;
    naive.queue_ns += r.queue_ns;
  }
  for (const std::string by : {"", "tenant", "tenant,model,key,day", "day,key"}) {
    const Report report = Build(Filter{}, by);
    EXPECT_EQ(report.total, naive) << by;
    ReportRow summed;
    for (const auto& row : report.rows) summed.Add(row);
    EXPECT_EQ(summed, naive) << by;
  }
  const Report by_tenant = Build(Filter{}, "tenant");
  EXPECT_EQ(by_tenant.rows.size(), 5u);
  for (const auto& row : by_tenant.rows) {
    Microdollars expected = 0;
    for (const auto& r : records) {
      if (r.tenant == row.keys[0]) expected += r.cost();
    }
    EXPECT_EQ(row.cost, expected) << row.keys[0];
  }
}

TEST_F(ReportTest, SinceIsInclusiveAndUntilExclusive) {
  const std::int64_t since = kDec1, until = kDec1 + kDay;
  Write({Record("before", "a", "m", since - 1, 1, 0), Record("first", "a", "m", since, 2, 0),
         Record("last", "a", "m", until - 1, 4, 0), Record("after", "a", "m", until, 8, 0)});
  UsageInterval in, out;
  in.start_ns = since;
  in.end_ns = since + kSecond;
  in.busy_cost = 5;
  out.start_ns = until;
  out.end_ns = until + kSecond;
  out.busy_cost = 50;
  MachineEvent inside, outside;
  inside.at_ns = until - 1;
  inside.kind = "spot_interruption";
  outside.at_ns = until;
  outside.kind = "spot_interruption";
  Write({}, {in, out}, {inside, outside});
  Filter filter;
  filter.since_ns = since;
  filter.until_ns = until;
  const Report report = Build(filter, "");
  ASSERT_EQ(report.rows.size(), 1u);
  EXPECT_EQ(report.total.requests, 2);
  EXPECT_EQ(report.total.input_cost, 6);
  EXPECT_EQ(report.machine.wall_ns, kSecond);
  EXPECT_EQ(report.machine.busy_cost, 5);
  EXPECT_EQ(report.machine.spot_interruptions, 1);
}

TEST_F(ReportTest, NoGroupingGivesOneRowEvenWithoutRecords) {
  const Report report = Build(Filter{}, "");
  ASSERT_EQ(report.rows.size(), 1u);
  EXPECT_EQ(report.rows[0], ReportRow{});
  EXPECT_EQ(report.total, ReportRow{});
}

TEST_F(ReportTest, MachineSummaryIsExact) {
  UsageInterval on_demand;
  on_demand.start_ns = kDec1;
  on_demand.end_ns = kDec1 + 3600 * kSecond;
  on_demand.busy_ns = 900 * kSecond;
  on_demand.cold_start_ns = 100 * kSecond;
  on_demand.idle_ns = 2600 * kSecond;
  on_demand.price_per_hour = 3'600'000;
  on_demand.on_demand_price_per_hour = 3'600'000;
  on_demand.busy_cost = 900'000;
  on_demand.cold_start_cost = 100'000;
  on_demand.idle_cost = 2'600'000;
  UsageInterval spot1;
  spot1.start_ns = kDec1 + 3600 * kSecond;
  spot1.end_ns = spot1.start_ns + 7 * kSecond + 1;
  spot1.busy_ns = 7 * kSecond + 1;
  spot1.spot = true;
  spot1.price_per_hour = 1'000'000;
  spot1.on_demand_price_per_hour = 3'000'001;
  spot1.busy_cost = 1'944;
  UsageInterval spot2;
  spot2.start_ns = spot1.end_ns;
  spot2.end_ns = spot2.start_ns + 1800 * kSecond + 1;
  spot2.idle_ns = 1800 * kSecond + 1;
  spot2.spot = true;
  spot2.price_per_hour = 1'000'000;
  spot2.on_demand_price_per_hour = 2'000'001;
  spot2.idle_cost = 500'000;
  MachineEvent start, interruption1, interruption2;
  start.at_ns = kDec1;
  start.kind = "start";
  interruption1.at_ns = kDec1 + 1;
  interruption1.kind = "spot_interruption";
  interruption2.at_ns = kDec1 + 2;
  interruption2.kind = "spot_interruption";
  Write({}, {on_demand, spot1, spot2}, {start, interruption1, interruption2});

  const MachineSummary m = Build(Filter{}, "").machine;
  EXPECT_EQ(m.wall_ns, (3600 + 7 + 1800) * kSecond + 2);
  EXPECT_EQ(m.busy_ns, 907 * kSecond + 1);
  EXPECT_EQ(m.cold_start_ns, 100 * kSecond);
  EXPECT_EQ(m.idle_ns, 4400 * kSecond + 1);
  EXPECT_EQ(m.spot_ns, 1807 * kSecond + 2);
  EXPECT_EQ(m.busy_cost, 901'944);
  EXPECT_EQ(m.cold_start_cost, 100'000);
  EXPECT_EQ(m.idle_cost, 3'100'000);
  EXPECT_EQ(m.machine_cost, 4'101'944);
  EXPECT_EQ(m.spot_cost, 501'944);
  // (7 s + 1 ns) x $3.000001/h = 5833.33... -> 5833; (1800 s + 1 ns) x $2.000001/h =
  // 1000000.50000055... -> 1000001 (half up).
  EXPECT_EQ(m.on_demand_equivalent_cost, 5'833 + 1'000'001);
  EXPECT_EQ(m.spot_interruptions, 2);
}

TEST_F(ReportTest, JsonHasExactlyTheShapeScriptsReadAnonymousAsEmpty) {
  Write({Record("1", "", "m1", kDec1, 100, 200), Record("2", "acme", "m1", kDec1, 10, 20)});
  const Report report = Build(Filter{}, "tenant,day");
  const auto json = nlohmann::json::parse(ReportJson(report));
  const std::set<std::string> counters = {"requests",
                                          "prompt_tokens",
                                          "cached_prompt_tokens",
                                          "completion_tokens",
                                          "cost_microdollars",
                                          "input_cost_microdollars",
                                          "cached_input_cost_microdollars",
                                          "output_cost_microdollars",
                                          "infra_microdollars",
                                          "engine_seconds",
                                          "queue_seconds"};
  auto names = [](const nlohmann::json& object) {
    std::set<std::string> out;
    for (const auto& [name, value] : object.items()) out.insert(name);
    return out;
  };
  EXPECT_EQ(names(json), (std::set<std::string>{"rows", "total", "machine"}));
  ASSERT_EQ(json["rows"].size(), 2u);
  std::set<std::string> row_names = counters;
  row_names.insert({"tenant", "day"});
  EXPECT_EQ(names(json["rows"][0]), row_names);
  EXPECT_EQ(json["rows"][0]["tenant"], "");
  EXPECT_EQ(json["rows"][0]["day"], "2026-12-01");
  EXPECT_EQ(json["rows"][0]["cost_microdollars"], 301);
  EXPECT_EQ(json["rows"][0]["engine_seconds"], 0.5);
  EXPECT_EQ(json["rows"][1]["tenant"], "acme");
  EXPECT_EQ(names(json["total"]), counters);
  EXPECT_EQ(json["total"]["requests"], 2);
  EXPECT_EQ(json["total"]["cost_microdollars"], 301 + 31);
  EXPECT_EQ(json["total"]["queue_seconds"], 0.5);
  EXPECT_EQ(
      names(json["machine"]),
      (std::set<std::string>{"wall_seconds", "busy_seconds", "cold_start_seconds", "idle_seconds",
                             "spot_seconds", "busy_microdollars", "cold_start_microdollars",
                             "idle_microdollars", "machine_microdollars", "spot_microdollars",
                             "on_demand_equivalent_microdollars", "spot_interruptions"}));
  // Keys come first in each row, in --by order (nlohmann::json sorts names: read the text).
  EXPECT_THAT(ReportJson(report),
              HasSubstr("{\"tenant\":\"\",\"day\":\"2026-12-01\",\"requests\""));
}

TEST_F(ReportTest, CsvHasAHeaderRowsAndATotalLine) {
  Write({Record("1", "acme, inc", "m1", kDec1, 1'500'000, 0),
         Record("2", "beta", "m1", kDec1, 1, 0)});
  const std::string csv = ReportCsv(Build(Filter{}, "tenant"));
  EXPECT_EQ(csv,
            "tenant,requests,prompt_tokens,cached_prompt_tokens,completion_tokens,cost_dollars,"
            "input_cost_dollars,cached_input_cost_dollars,output_cost_dollars,infra_dollars,"
            "engine_seconds,queue_seconds\n"
            "\"acme, inc\",1,10,4,5,1.500001,1.50,0.000001,0.00,0.000007,0.500,0.250\n"
            "beta,1,10,4,5,0.000002,0.000001,0.000001,0.00,0.000007,0.500,0.250\n"
            "TOTAL,2,20,8,10,1.500003,1.500001,0.000002,0.00,0.000014,1.000,0.500\n");
}

TEST_F(ReportTest, TableShowsRowsATotalAndTheMachine) {
  Write({Record("1", "", "m1", kDec1, 2'000'000, 500'000), Record("2", "beta", "m1", kDec1, 1, 0)});
  const std::string table = ReportTable(Build(Filter{}, "tenant"));
  EXPECT_THAT(table, HasSubstr("(anonymous)"));
  EXPECT_THAT(table, HasSubstr("2.500001"));  // the anonymous tenant's cost in dollars
  EXPECT_THAT(table, HasSubstr("TOTAL"));
  EXPECT_THAT(table, HasSubstr("2.500003"));
  EXPECT_THAT(table, HasSubstr("machine:"));
}

}  // namespace
}  // namespace ember::ledger
