// Tests of the SQLite ledger file: round trips, idempotent writes, migrations, refusing foreign,
// corrupt and newer files without touching them, read-only access beside a writer, and a full
// disk that fails a write retryably and then recovers.
#include "ledger/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace ember::ledger {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "ember_store_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

UsageRecord Record(int i, std::int64_t finished_ns = 0) {
  UsageRecord r;
  r.request_id = "req-" + std::to_string(i);
  r.tenant = i % 2 == 0 ? "acme" : "beta";
  r.key_id = "key-" + std::to_string(i % 3);
  r.model = i % 2 == 0 ? "stories260K" : "org/model.v2";
  r.endpoint = "/v1/chat/completions";
  r.outcome = "finished";
  r.finish_reason = "stop";
  r.http_status = 200;
  r.arrival_ns = 1'000 + i;
  r.admitted_ns = 2'000 + i;
  r.first_token_ns = 3'000 + i;
  r.finished_ns = finished_ns != 0 ? finished_ns : 1'800'000'000'000'000'000 + i;
  r.prompt_tokens = 100 + i;
  r.cached_prompt_tokens = 10 + i;
  r.completion_tokens = 50 + i;
  r.queue_ns = 5'000 + i;
  r.cold_start_ns = 7 + i;
  r.engine_ns = 9'000'000 + i;
  r.input_cost = 1'000 + i;
  r.cached_input_cost = 20 + i;
  r.output_cost = 3'000 + i;
  r.infra_cost = 400 + i;
  r.spot = i % 2 == 1;
  return r;
}

UsageInterval Interval(std::int64_t start_ns) {
  UsageInterval v;
  v.start_ns = start_ns;
  v.end_ns = start_ns + 60'000'000'000;
  v.busy_ns = 10'000'000'000;
  v.cold_start_ns = 2'000'000'000;
  v.idle_ns = 48'000'000'000;
  v.requests = 12;
  v.queue_ns = 34;
  v.kv_used_permille_max = 875;
  v.threads = 8;
  v.price_per_hour = 1'200'000;
  v.on_demand_price_per_hour = 4'000'000;
  v.spot = true;
  v.busy_cost = 3'333;
  v.cold_start_cost = 667;
  v.idle_cost = 16'000;
  return v;
}

MachineEvent Event(std::int64_t at_ns, std::string kind) {
  MachineEvent e;
  e.at_ns = at_ns;
  e.kind = std::move(kind);
  e.detail = "detail of " + e.kind;
  return e;
}

std::string Bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs SQL on FILE through a plain sqlite3 connection (what another application would do).
void RawExec(const fs::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
      << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

std::int64_t RawInt(const fs::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  const std::int64_t v = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return v;
}

TEST_F(StoreTest, CreatesTheFileAndReadsBackWhatItWrote) {
  const fs::path file = dir_ / "nested" / "dir" / "ledger.db";
  const std::vector<UsageRecord> records = {Record(1), Record(2), Record(3)};
  const std::vector<UsageInterval> intervals = {Interval(1'000), Interval(61'000'001'000)};
  const std::vector<MachineEvent> events = {Event(5, "start"), Event(6, "spot_interruption")};
  {
    auto store = Store::Open(file, SyncMode::kNormal);
    ASSERT_TRUE(store) << store.error().message;
    auto written = (*store)->Write(records, intervals, events);
    ASSERT_TRUE(written) << written.error().message;
    EXPECT_EQ(*written, 3);
  }
  auto store = Store::Open(file, SyncMode::kFull);  // reopened: it was on disk
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->Records(Filter{}), records);
  EXPECT_EQ((*store)->Intervals(0, INT64_MAX), intervals);
  EXPECT_EQ((*store)->Events(0, INT64_MAX), events);
  EXPECT_EQ((*store)->CountRecords(), 3);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(StoreTest, ARetriedBatchCountsOnceAndIntervalsAreReplaced) {
  auto store = Store::Open(dir_ / "ledger.db", SyncMode::kNormal);
  ASSERT_TRUE(store) << store.error().message;
  const std::vector<UsageRecord> batch = {Record(1), Record(2)};
  UsageInterval interval = Interval(1'000);
  EXPECT_EQ((*store)->Write(batch, {&interval, 1}, {}), 2);
  interval.busy_ns += 1;
  EXPECT_EQ((*store)->Write(batch, {&interval, 1}, {}), 0);
  const std::vector<UsageRecord> overlapping = {Record(2), Record(3)};
  EXPECT_EQ((*store)->Write(overlapping, {}, {}), 1);
  EXPECT_EQ((*store)->CountRecords(), 3);
  EXPECT_EQ((*store)->Intervals(0, INT64_MAX), std::vector<UsageInterval>{interval});
}

TEST_F(StoreTest, MigratesAnEmptyFileToTheCurrentSchema) {
  const fs::path file = dir_ / "ledger.db";
  std::ofstream(file).close();
  ASSERT_EQ(fs::file_size(file), 0u);
  {
    auto store = Store::Open(file, SyncMode::kNormal);
    ASSERT_TRUE(store) << store.error().message;
  }
  EXPECT_EQ(RawInt(file, "PRAGMA application_id"), Store::kApplicationId);
  EXPECT_EQ(RawInt(file, "PRAGMA application_id"), 0x454D4252);
  EXPECT_EQ(RawInt(file, "PRAGMA user_version"), 1);
  EXPECT_EQ(RawInt(file,
                   "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                   "('usage', 'intervals', 'events')"),
            3);
  EXPECT_EQ(RawInt(file,
                   "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                   "('usage_finished', 'usage_tenant_finished')"),
            2);
}

// Two servers started at once on one data directory (a rolling restart, or the repack-cache
// race test) both create the ledger: each switches it to WAL and migrates it. SQLite answers
// one of two connections upgrading their locks at once with an immediate SQLITE_BUSY (its
// deadlock rule skips the busy handler), which used to stop that server from starting.
TEST_F(StoreTest, TwoProcessesCreatingTheLedgerAtOnceBothOpenIt) {
  for (int round = 0; round < 40; ++round) {
    const fs::path file = dir_ / ("race-" + std::to_string(round) + ".db");
    std::vector<Result<std::unique_ptr<Store>>> stores;
    stores.reserve(3);
    for (int i = 0; i < 3; ++i) stores.emplace_back(std::unexpected(Error{}));
    {
      std::vector<std::jthread> openers;
      for (int i = 0; i < 3; ++i) {
        openers.emplace_back([&, i] { stores[i] = Store::Open(file, SyncMode::kNormal); });
      }
    }
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(stores[i]) << "round " << round << ", opener " << i << ": "
                             << stores[i].error().message;
    }
    const auto written = (*stores[0])->Write(std::vector{Record(round)}, {}, {});
    ASSERT_TRUE(written) << written.error().message;
    const auto again = (*stores[1])->Write(std::vector{Record(round)}, {}, {});
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(*written + *again, 1) << "the same request id counts once across processes";
  }
}

TEST_F(StoreTest, RefusesAnotherApplicationsDatabaseAndLeavesItAlone) {
  const fs::path file = dir_ / "other.db";
  RawExec(file,
          "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT);"
          "INSERT INTO accounts (name) VALUES ('x');"
          "PRAGMA application_id = 42;");
  const std::string before = Bytes(file);
  auto store = Store::Open(file, SyncMode::kNormal);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(store.error().message, HasSubstr("is not an ember ledger (application_id 42"));
  EXPECT_THAT(store.error().message, HasSubstr("refusing to touch it"));
  EXPECT_THAT(store.error().message, HasSubstr(file.string()));
  auto read_only = Store::OpenReadOnly(file);
  ASSERT_FALSE(read_only);
  EXPECT_THAT(read_only.error().message, HasSubstr("not an ember ledger"));
  EXPECT_EQ(Bytes(file), before);
}

TEST_F(StoreTest, RefusesASqliteFileWithTablesButNoApplicationId) {
  const fs::path file = dir_ / "other.db";
  RawExec(file, "CREATE TABLE usage (x INTEGER);");
  const std::string before = Bytes(file);
  auto store = Store::Open(file, SyncMode::kNormal);
  ASSERT_FALSE(store);
  EXPECT_THAT(store.error().message, HasSubstr("not an ember ledger (application_id 0"));
  EXPECT_EQ(Bytes(file), before);
}

TEST_F(StoreTest, RefusesAFileThatIsNotSqliteAndLeavesItAlone) {
  const fs::path file = dir_ / "garbage.db";
  std::mt19937 rng(7);
  std::string garbage(8192, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  std::ofstream(file, std::ios::binary) << garbage;
  auto store = Store::Open(file, SyncMode::kNormal);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(store.error().message, HasSubstr("is not an SQLite database"));
  EXPECT_THAT(store.error().message, HasSubstr("refusing to touch it"));
  EXPECT_FALSE(Store::OpenReadOnly(file));
  EXPECT_EQ(Bytes(file), garbage);
  EXPECT_FALSE(fs::exists(dir_ / "garbage.db-wal"));
}

TEST_F(StoreTest, RefusesACorruptLedger) {
  const fs::path file = dir_ / "ledger.db";
  {
    auto store = Store::Open(file, SyncMode::kNormal);
    ASSERT_TRUE(store) << store.error().message;
    std::vector<UsageRecord> records;
    for (int i = 0; i < 2000; ++i) records.push_back(Record(i));
    ASSERT_TRUE((*store)->Write(records, {}, {}));
  }
  ASSERT_GT(fs::file_size(file), 16 * 4096u);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 * 4096);
    const std::string junk(3 * 4096, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  const std::string before = Bytes(file);
  auto store = Store::Open(file, SyncMode::kNormal);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(store.error().message, HasSubstr("corrupt"));
  EXPECT_EQ(Bytes(file), before);
}

TEST_F(StoreTest, RefusesALedgerFromANewerEmber) {
  const fs::path file = dir_ / "ledger.db";
  {
    ASSERT_TRUE(Store::Open(file, SyncMode::kNormal));
  }
  RawExec(file, "PRAGMA user_version = 2;");
  const std::string before = Bytes(file);
  auto store = Store::Open(file, SyncMode::kNormal);
  ASSERT_FALSE(store);
  EXPECT_THAT(store.error().message, HasSubstr("schema version 2, newer than this ember's (1)"));
  EXPECT_FALSE(Store::OpenReadOnly(file));
  EXPECT_EQ(Bytes(file), before);
}

TEST_F(StoreTest, ReadOnlyOpenSeesAWritersCommitsWhileItIsOpen) {
  const fs::path file = dir_ / "ledger.db";
  auto writer = Store::Open(file, SyncMode::kNormal);
  ASSERT_TRUE(writer) << writer.error().message;
  const std::vector<UsageRecord> first = {Record(1)};
  ASSERT_TRUE((*writer)->Write(first, {}, {}));
  auto reader = Store::OpenReadOnly(file);
  ASSERT_TRUE(reader) << reader.error().message;
  EXPECT_EQ((*reader)->Records(Filter{}), first);
  const std::vector<UsageRecord> second = {Record(2)};
  ASSERT_TRUE((*writer)->Write(second, {}, {}));
  EXPECT_EQ((*reader)->CountRecords(), 2);
  auto refused = (*reader)->Write(second, {}, {});
  ASSERT_FALSE(refused);
  writer->reset();
  EXPECT_EQ((*reader)->CountRecords(), 2);

  auto missing = Store::OpenReadOnly(dir_ / "missing.db");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(dir_ / "missing.db"));
}

TEST_F(StoreTest, ReadOnlyOpenWorksAfterTheWriterClosed) {
  const fs::path file = dir_ / "ledger.db";
  {
    auto writer = Store::Open(file, SyncMode::kNormal);
    ASSERT_TRUE(writer) << writer.error().message;
    const std::vector<UsageRecord> records = {Record(1), Record(2)};
    ASSERT_TRUE((*writer)->Write(records, {}, {}));
  }
  auto reader = Store::OpenReadOnly(file);
  ASSERT_TRUE(reader) << reader.error().message;
  EXPECT_EQ((*reader)->CountRecords(), 2);
}

TEST_F(StoreTest, FiltersRecordsByTimeTenantModelAndKey) {
  auto store = Store::Open(dir_ / "ledger.db", SyncMode::kNormal);
  ASSERT_TRUE(store) << store.error().message;
  std::vector<UsageRecord> records;
  for (int i = 0; i < 6; ++i) records.push_back(Record(i, 1'000 * (i + 1)));
  ASSERT_TRUE((*store)->Write(records, {}, {}));
  auto ids = [&](const Filter& f) {
    std::vector<std::string> out;
    auto records = (*store)->Records(f);
    EXPECT_TRUE(records);
    for (const auto& r : records.value_or(std::vector<UsageRecord>{})) out.push_back(r.request_id);
    return out;
  };
  Filter window;
  window.since_ns = 2'000;  // inclusive
  window.until_ns = 5'000;  // exclusive
  EXPECT_EQ(ids(window), (std::vector<std::string>{"req-1", "req-2", "req-3"}));
  Filter tenant;
  tenant.tenant = "acme";
  EXPECT_EQ(ids(tenant), (std::vector<std::string>{"req-0", "req-2", "req-4"}));
  Filter model_and_key;
  model_and_key.model = "org/model.v2";
  model_and_key.key_id = "key-0";
  EXPECT_EQ(ids(model_and_key), std::vector<std::string>{"req-3"});
}

TEST_F(StoreTest, SpentSinceSumsATenantsChargesFromAMoment) {
  auto store = Store::Open(dir_ / "ledger.db", SyncMode::kNormal);
  ASSERT_TRUE(store) << store.error().message;
  std::vector<UsageRecord> records;
  for (int i = 0; i < 6; ++i) records.push_back(Record(i, 1'000 * (i + 1)));
  ASSERT_TRUE((*store)->Write(records, {}, {}));
  // acme: records 0, 2, 4 (finished 1000, 3000, 5000); from 3000: records 2 and 4.
  EXPECT_EQ((*store)->SpentSince("acme", 3'000), records[2].cost() + records[4].cost());
  EXPECT_EQ((*store)->SpentSince("acme", 0),
            records[0].cost() + records[2].cost() + records[4].cost());
  EXPECT_EQ((*store)->SpentSince("nobody", 0), 0);
}

TEST_F(StoreTest, AFullDiskFailsRetryablyWritesNothingAndRecovers) {
  auto store = Store::Open(dir_ / "ledger.db", SyncMode::kNormal);
  ASSERT_TRUE(store) << store.error().message;
  const std::vector<UsageRecord> first = {Record(0)};
  ASSERT_TRUE((*store)->Write(first, {}, {}));
  ASSERT_TRUE((*store)->SetMaxPageCountForTest(1));  // no room to grow
  std::vector<UsageRecord> batch;
  for (int i = 1; i <= 500; ++i) batch.push_back(Record(i));
  const MachineEvent event = Event(1, "start");
  auto failed = (*store)->Write(batch, {}, {&event, 1});
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(failed.error().message, HasSubstr("full"));
  EXPECT_EQ((*store)->CountRecords(), 1);  // rolled back whole
  EXPECT_EQ((*store)->Events(0, INT64_MAX)->size(), 0u);

  ASSERT_TRUE((*store)->SetMaxPageCountForTest(1 << 30));
  auto written = (*store)->Write(batch, {}, {&event, 1});
  ASSERT_TRUE(written) << written.error().message;
  EXPECT_EQ(*written, 500);
  EXPECT_EQ((*store)->CountRecords(), 501);
  EXPECT_EQ((*store)->Events(0, INT64_MAX)->size(), 1u);
}

}  // namespace
}  // namespace ember::ledger
