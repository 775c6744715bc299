// Tests of the ledger's writer thread: concurrent appends written exactly once, Flush, group
// commit, holding and retrying records through a full disk, overflow, and Close.
#include "ledger/ledger.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"  // StrCat

namespace ember::ledger {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "ember_ledger_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    file_ = dir_ / "ledger.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Store> OpenStore() {
    auto store = Store::Open(file_, SyncMode::kNormal);
    EXPECT_TRUE(store) << store.error().message;
    return store ? std::move(*store) : nullptr;
  }
  // What a report would see: the file, through its own read-only connection.
  std::vector<UsageRecord> Stored() {
    auto reader = Store::OpenReadOnly(file_);
    EXPECT_TRUE(reader) << reader.error().message;
    if (!reader) return {};
    return (*reader)->Records(Filter{}).value();
  }

  fs::path dir_;
  fs::path file_;
};

// BIG: a model name long enough that each record needs pages of its own (to fill a capped db).
UsageRecord Record(const std::string& id, bool big = false) {
  UsageRecord r;
  r.request_id = id;
  r.tenant = "acme";
  r.key_id = "key-1";
  r.model = big ? std::string(3000, 'm') : "stories260K";
  r.endpoint = "/v1/chat/completions";
  r.outcome = "finished";
  r.finish_reason = "stop";
  r.http_status = 200;
  r.finished_ns = 1'800'000'000'000'000'000;
  r.prompt_tokens = 120;
  r.completion_tokens = 40;
  r.input_cost = 120;
  r.output_cost = 80;
  return r;
}

std::set<std::string> Ids(const std::vector<UsageRecord>& records) {
  std::set<std::string> ids;
  for (const auto& r : records) ids.insert(r.request_id);
  return ids;
}

// Polls COND for up to 10 s.
template <typename Cond>
bool Eventually(Cond cond) {
  for (int i = 0; i < 1000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

TEST_F(LedgerTest, RecordsAppendedFromFourThreadsAreAllWrittenExactlyOnce) {
  Ledger ledger(OpenStore(), LedgerOptions{});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2500; ++i) {
        EXPECT_TRUE(ledger.Append(Record(StrCat("t", t, "-", i))));
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(ledger.Flush(30s));
  EXPECT_EQ(ledger.Unrecorded(), 0u);
  EXPECT_EQ(ledger.records_written_total(), 10'000);
  EXPECT_EQ(ledger.dropped_total(), 0);
  EXPECT_TRUE(ledger.healthy());
  const auto stored = Stored();
  EXPECT_EQ(stored.size(), 10'000u);
  EXPECT_EQ(Ids(stored).size(), 10'000u);
}

TEST_F(LedgerTest, FlushCommitsEverythingAppendedBeforeIt) {
  LedgerOptions options;
  options.commit_interval = std::chrono::hours(1);  // only Flush makes it write
  Ledger ledger(OpenStore(), options);
  EXPECT_TRUE(ledger.Flush(1s));  // nothing to do
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ledger.Append(Record("r" + std::to_string(i))));
  UsageInterval interval;
  interval.start_ns = 10;
  interval.end_ns = 20;
  ledger.AppendInterval(interval);
  MachineEvent event;
  event.at_ns = 15;
  event.kind = "start";
  ledger.AppendEvent(event);
  EXPECT_EQ(ledger.Unrecorded(), 5u);
  EXPECT_TRUE(Stored().empty());
  ASSERT_TRUE(ledger.Flush(10s));
  EXPECT_EQ(ledger.Unrecorded(), 0u);
  EXPECT_EQ(Stored().size(), 5u);
  EXPECT_EQ(ledger.commits_total(), 1);
  auto reader = Store::OpenReadOnly(file_);
  ASSERT_TRUE(reader);
  EXPECT_EQ((*reader)->Intervals(0, 100), std::vector<UsageInterval>{interval});
  EXPECT_EQ((*reader)->Events(0, 100), std::vector<MachineEvent>{event});
}

TEST_F(LedgerTest, CommitsAtMostOncePerIntervalUnderSteadyLoad) {
  LedgerOptions options;
  options.commit_interval = 100ms;
  Ledger ledger(OpenStore(), options);
  const auto start = std::chrono::steady_clock::now();
  int appended = 0;
  for (int tick = 0; tick < 100; ++tick) {  // ~1 s at 20,000 records/s
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(ledger.Append(Record(std::to_string(appended++))));
    std::this_thread::sleep_for(10ms);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(ledger.Flush(30s));
  EXPECT_EQ(ledger.records_written_total(), appended);
  // One commit per interval elapsed, plus the Flush and the partial interval at each end.
  const auto intervals = elapsed / options.commit_interval;
  EXPECT_LE(ledger.commits_total(), intervals + 3);
  EXPECT_GE(ledger.commits_total(), 2);
  EXPECT_GT(ledger.last_commit_duration_ns(), 0);
}

TEST_F(LedgerTest, HoldsRecordsThroughAFullDiskAndWritesThemOnceWhenItRecovers) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  Store* disk = store.get();  // Store is thread-safe; the test plays the disk filling and freeing
  ASSERT_TRUE(disk->SetMaxPageCountForTest(1));
  LedgerOptions options;
  options.commit_interval = std::chrono::hours(1);
  options.retry_min = 10ms;
  options.retry_max = 40ms;
  Ledger ledger(std::move(store), options);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(ledger.Append(Record("a" + std::to_string(i), true)));
  auto flushed = ledger.Flush(300ms);
  ASSERT_FALSE(flushed);
  EXPECT_EQ(flushed.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_THAT(flushed.error().message, HasSubstr("200 usage records still unwritten"));
  ASSERT_TRUE(Eventually([&] { return !ledger.healthy(); }));
  EXPECT_THAT(ledger.last_error(), HasSubstr("full"));
  ASSERT_TRUE(Eventually([&] { return ledger.write_errors_total() >= 3; }));  // it retries

  for (int i = 0; i < 50; ++i) ASSERT_TRUE(ledger.Append(Record("b" + std::to_string(i), true)));
  EXPECT_EQ(ledger.Unrecorded(), 250u);
  EXPECT_FALSE(ledger.healthy());
  EXPECT_TRUE(Stored().empty());

  ASSERT_TRUE(disk->SetMaxPageCountForTest(1 << 30));
  ASSERT_TRUE(ledger.Flush(30s));
  EXPECT_TRUE(ledger.healthy());
  EXPECT_EQ(ledger.Unrecorded(), 0u);
  EXPECT_EQ(ledger.records_written_total(), 250);
  EXPECT_EQ(ledger.dropped_total(), 0);
  const auto stored = Stored();
  EXPECT_EQ(stored.size(), 250u);
  EXPECT_EQ(Ids(stored).size(), 250u);
}

TEST_F(LedgerTest, RefusesAndCountsRecordsPastMaxBufferedWhileTheDiskFails) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  Store* disk = store.get();
  ASSERT_TRUE(disk->SetMaxPageCountForTest(1));
  LedgerOptions options;
  options.commit_interval = std::chrono::hours(1);
  options.max_buffered = 10;
  options.retry_min = 10ms;
  options.retry_max = 20ms;
  Ledger ledger(std::move(store), options);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(ledger.Append(Record(std::to_string(i), true)));
  EXPECT_TRUE(ledger.WouldOverflow());
  EXPECT_FALSE(ledger.Flush(100ms));
  ASSERT_TRUE(Eventually([&] { return !ledger.healthy(); }));
  EXPECT_FALSE(ledger.Append(Record("10", true)));
  EXPECT_FALSE(ledger.Append(Record("11", true)));
  EXPECT_EQ(ledger.dropped_total(), 2);
  EXPECT_EQ(ledger.Unrecorded(), 10u);

  ASSERT_TRUE(disk->SetMaxPageCountForTest(1 << 30));
  ASSERT_TRUE(ledger.Flush(30s));
  EXPECT_FALSE(ledger.WouldOverflow());
  EXPECT_TRUE(ledger.Append(Record("12", true)));
  ASSERT_TRUE(ledger.Flush(30s));
  EXPECT_EQ(Ids(Stored()),
            (std::set<std::string>{"0", "1", "12", "2", "3", "4", "5", "6", "7", "8", "9"}));
}

TEST_F(LedgerTest, CloseWritesWhatIsPendingAndRefusesLaterAppends) {
  LedgerOptions options;
  options.commit_interval = std::chrono::hours(1);
  Ledger ledger(OpenStore(), options);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(ledger.Append(Record(std::to_string(i))));
  ledger.Close(10s);
  EXPECT_EQ(Stored().size(), 100u);
  EXPECT_FALSE(ledger.Append(Record("late")));
  EXPECT_EQ(ledger.dropped_total(), 1);
  ledger.Close(10s);  // idempotent
}

TEST_F(LedgerTest, DestructorWritesWhatIsPending) {
  {
    LedgerOptions options;
    options.commit_interval = std::chrono::hours(1);
    Ledger ledger(OpenStore(), options);
    for (int i = 0; i < 7; ++i) ASSERT_TRUE(ledger.Append(Record(std::to_string(i))));
  }
  EXPECT_EQ(Stored().size(), 7u);
}

}  // namespace
}  // namespace ember::ledger
