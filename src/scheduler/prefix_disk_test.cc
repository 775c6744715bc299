// The prefix cache's disk tier: the file format (round trip, damage detected), the store
// (another key never reads a file, the cap holds) and, through the scheduler with the fake
// engine, a restart that restores a reused prompt from disk within its tenancy scope.
#include "scheduler/prefix_disk.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "engine/fake/fake_engine.h"
#include "scheduler/collect_test_util.h"
#include "scheduler/scheduler.h"

namespace ember::scheduler {
namespace {

namespace fs = std::filesystem;
using engine::Token;
using namespace std::chrono_literals;

struct BlobCells final : engine::CellsSnapshot {
  std::vector<std::uint8_t> blob;
  int positions = 0;
  bool all_invariant = false;
  std::size_t bytes() const override { return blob.size(); }
  int n_pos() const override { return positions; }
  bool invariant() const override { return all_invariant; }
  std::span<const std::uint8_t> data() const override { return blob; }
};

std::shared_ptr<BlobCells> Cells(std::size_t bytes, int n_pos, std::uint8_t fill = 7) {
  auto c = std::make_shared<BlobCells>();
  c->blob.assign(bytes, fill);
  c->positions = n_pos;
  return c;
}

std::vector<Token> Tokens(int first, int n) {
  std::vector<Token> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = first + i;
  return t;
}

std::string FileBytes(std::string_view key, std::string_view scope, bool invariant,
                      const std::vector<Token>& tokens, const std::vector<std::uint8_t>& blob) {
  std::string out =
      EncodePrefixHeader(key, scope, invariant, tokens, static_cast<int>(tokens.size()), blob);
  out.append(blob.begin(), blob.end());
  return out;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("ember_prefix_disk_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::vector<fs::path> PfxFiles(const fs::path& root) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.path().extension() == ".pfx") out.push_back(e.path());
  }
  return out;
}

TEST(PrefixFileTest, RoundTrip) {
  const std::vector<Token> tokens = Tokens(5, 40);
  const std::vector<std::uint8_t> blob = {1, 2, 3, 4, 5, 6};
  const std::string name = PrefixFileName("key", "tenant:acme", true, tokens);
  auto rec = DecodePrefixFile(FileBytes("key", "tenant:acme", true, tokens, blob), name, "key");
  ASSERT_TRUE(rec.has_value()) << rec.error().message;
  EXPECT_EQ(rec->scope, "tenant:acme");
  EXPECT_TRUE(rec->invariant);
  EXPECT_EQ(rec->tokens, tokens);
  EXPECT_EQ(rec->n_pos, 40);
  EXPECT_EQ(rec->blob, blob);
}

TEST(PrefixFileTest, DamageAnotherKeyOrATruncationIsDetected) {
  const std::vector<Token> tokens = Tokens(5, 40);
  const std::vector<std::uint8_t> blob(64, 9);
  const std::string name = PrefixFileName("key", "all:", false, tokens);
  const std::string good = FileBytes("key", "all:", false, tokens, blob);
  ASSERT_TRUE(DecodePrefixFile(good, name, "key").has_value());
  // Another model, build or context shape.
  EXPECT_FALSE(DecodePrefixFile(good, name, "other key").has_value());
  // A flipped bit in the blob, in a token, in the invariant flag; a truncation; a rename.
  std::string bad = good;
  bad.back() ^= 1;
  EXPECT_FALSE(DecodePrefixFile(bad, name, "key").has_value());
  const std::size_t token_at = good.find(std::string(reinterpret_cast<const char*>(&tokens[3]), 4));
  ASSERT_NE(token_at, std::string::npos);
  bad = good;
  bad[token_at] ^= 1;
  EXPECT_FALSE(DecodePrefixFile(bad, name, "key").has_value());
  bad = good;
  bad[12] ^= 1;  // flags
  EXPECT_FALSE(DecodePrefixFile(bad, name, "key").has_value());
  EXPECT_FALSE(DecodePrefixFile(good.substr(0, good.size() - 1), name, "key").has_value());
  EXPECT_FALSE(DecodePrefixFile(good.substr(0, 20), name, "key").has_value());
  EXPECT_FALSE(DecodePrefixFile(good, PrefixFileName("key", "all:", false, Tokens(6, 40)), "key")
                   .has_value());
}

TEST(PrefixDiskTest, WhatIsWrittenIsReadBackByTheSameKeyOnly) {
  TempDir dir;
  {
    auto disk = PrefixDisk::Open({.root = dir.path(),
                                  .key = "k1",
                                  .max_bytes = 1 << 20,
                                  .min_free_bytes = 0,
                                  .load_bytes = 1 << 20})
                    .value();
    EXPECT_TRUE(disk->Write("all:", Tokens(1, 40), Cells(1000, 40)));
    disk->Flush();
    EXPECT_EQ(disk->stats().writes, 1u);
    EXPECT_EQ(disk->stats().entries, 1);
    EXPECT_GT(disk->stats().bytes, 1000u);
    // Written again: the file exists, nothing new is written.
    EXPECT_TRUE(disk->Write("all:", Tokens(1, 40), Cells(1000, 40)));
    disk->Flush();
    EXPECT_EQ(disk->stats().writes, 1u);
  }
  auto same = PrefixDisk::Open({.root = dir.path(),
                                .key = "k1",
                                .max_bytes = 1 << 20,
                                .min_free_bytes = 0,
                                .load_bytes = 1 << 20})
                  .value();
  same->Flush();
  std::vector<PrefixRecord> loaded = same->TakeLoaded();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].tokens, Tokens(1, 40));
  EXPECT_EQ(loaded[0].blob.size(), 1000u);
  EXPECT_EQ(same->stats().reads, 1u);
  auto other = PrefixDisk::Open({.root = dir.path(),
                                 .key = "k2",
                                 .max_bytes = 1 << 20,
                                 .min_free_bytes = 0,
                                 .load_bytes = 1 << 20})
                   .value();
  other->Flush();
  EXPECT_TRUE(other->TakeLoaded().empty());
  EXPECT_EQ(other->stats().reads, 0u);
  EXPECT_EQ(other->stats().errors, 0u);
}

TEST(PrefixDiskTest, ADamagedFileIsDeletedCountedAndNeverUsed) {
  TempDir dir;
  {
    auto disk = PrefixDisk::Open({.root = dir.path(),
                                  .key = "k",
                                  .max_bytes = 1 << 20,
                                  .min_free_bytes = 0,
                                  .load_bytes = 1 << 20})
                    .value();
    disk->Write("all:", Tokens(1, 40), Cells(1000, 40));
    disk->Flush();
  }
  const std::vector<fs::path> files = PfxFiles(dir.path());
  ASSERT_EQ(files.size(), 1u);
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-10, std::ios::end);
    f.put('x');
  }
  auto disk = PrefixDisk::Open({.root = dir.path(),
                                .key = "k",
                                .max_bytes = 1 << 20,
                                .min_free_bytes = 0,
                                .load_bytes = 1 << 20})
                  .value();
  disk->Flush();
  EXPECT_TRUE(disk->TakeLoaded().empty());
  EXPECT_EQ(disk->stats().errors, 1u);
  EXPECT_EQ(disk->stats().reads, 0u);
  EXPECT_FALSE(fs::exists(files[0]));
}

TEST(PrefixDiskTest, TheCapHoldsAndTheLeastRecentlyUsedFilesGoFirst) {
  TempDir dir;
  // Room for three files of 1000 blob bytes, not four.
  const std::uint64_t per_file =
      EncodePrefixHeader("k", "all:", false, Tokens(0, 40), 40, Cells(1000, 40)->blob).size() +
      1000;
  const std::uint64_t cap = 3 * per_file + per_file / 2;
  PrefixDiskOptions options{
      .root = dir.path(), .key = "k", .max_bytes = cap, .min_free_bytes = 0, .load_bytes = 1 << 20};
  auto disk = PrefixDisk::Open(options).value();
  for (int i = 0; i < 3; ++i) {
    disk->Write("all:", Tokens(100 * i, 40), Cells(1000, 40));
    disk->Flush();
    std::this_thread::sleep_for(20ms);  // distinct mtimes
  }
  // Entry 0 is used again: its mtime is refreshed, so entry 1 is now the oldest.
  disk->Write("all:", Tokens(0, 40), Cells(1000, 40));
  disk->Flush();
  std::this_thread::sleep_for(20ms);
  disk->Write("all:", Tokens(300, 40), Cells(1000, 40));
  disk->Flush();
  std::uint64_t total = 0;
  for (const fs::path& f : PfxFiles(dir.path())) total += fs::file_size(f);
  EXPECT_LE(total, cap);
  EXPECT_EQ(disk->stats().entries, 3);
  const fs::path sub = PfxFiles(dir.path())[0].parent_path();
  auto exists = [&](int first) {
    return fs::exists(sub / (PrefixFileName("k", "all:", false, Tokens(first, 40)) + ".pfx"));
  };
  EXPECT_TRUE(exists(0));
  EXPECT_FALSE(exists(100));
  EXPECT_TRUE(exists(200));
  EXPECT_TRUE(exists(300));
  // An entry larger than the cap is never written.
  disk->Write("all:", Tokens(400, 40), Cells(4 * per_file, 40));
  disk->Flush();
  EXPECT_EQ(disk->stats().writes, 4u);
}

class DiskObserver final : public SchedulerObserver {
 public:
  void OnPrefixDisk(const PrefixDiskStats& change) override {
    std::lock_guard lock(mu_);
    totals_.writes += change.writes;
    totals_.reads += change.reads;
    totals_.hits += change.hits;
    totals_.errors += change.errors;
  }
  PrefixDiskStats totals() const {
    std::lock_guard lock(mu_);
    return totals_;
  }

 private:
  mutable std::mutex mu_;
  PrefixDiskStats totals_;
};

// Prompt i of 41 tokens: 40 that differ from every other prompt's at the first, then "?".
std::string Prompt(int i) {
  return std::string(1, static_cast<char>('A' + i)) + std::string(39, '.') + "?";
}

class PrefixDiskRestartTest : public ::testing::Test {
 protected:
  void Start(std::string numerics = "fake", PrefixShare share = PrefixShare::kTenant) {
    auto engine = std::make_unique<engine::FakeEngine>(engine::FakeEngineOptions{
        .parallel = 2, .step_delay = 1ms, .cell_bytes = 100, .numerics_id = numerics});
    engine_ = engine.get();
    observer_ = std::make_unique<DiskObserver>();
    scheduler_ = Scheduler::Create({.prefix_share = share,
                                    .prefix_cache_bytes = 1 << 20,
                                    .prefix_disk_root = dir_.path().string(),
                                    .prefix_disk_bytes = 1 << 20,
                                    .prefix_disk_min_free_bytes = 0},
                                   std::move(engine), observer_.get(), clock_)
                     .value();
  }
  void Stop() {
    scheduler_.reset();  // finishes the queued writes
    observer_.reset();
  }
  Collected Run(int i, std::string tenant = "", bool deterministic = false) {
    return Run(Prompt(i), std::move(tenant), deterministic);
  }
  Collected Run(const std::string& prompt, std::string tenant = "", bool deterministic = false) {
    GenerateRequest r = MakeRequest(*engine_, prompt, 3, clock_.Now());
    r.tenant.id = std::move(tenant);
    r.sampling.deterministic = deterministic;
    return Wait(*SubmitAccepted(*scheduler_, std::move(r)));
  }
  // Waits until the scheduler has taken `n` entries from disk into its RAM tier.
  void WaitReads(std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (observer_->totals().reads < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    EXPECT_EQ(observer_->totals().reads, n);
  }
  // Two slots: prompts 0 and 1 go to the RAM tier when 2 and 3 overwrite them; prompt 0 comes
  // back from it (reused: written to disk).
  void ReuseFirstPrompt(const std::string& tenant) {
    for (int i = 0; i < 4; ++i) Run(i, tenant);
    EXPECT_EQ(Run(0, tenant).finished->usage.cached_tokens, 40);
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<DiskObserver> observer_;
  engine::FakeEngine* engine_ = nullptr;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(PrefixDiskRestartTest, AReusedPromptIsRestoredFromDiskAfterARestart) {
  Start();
  ReuseFirstPrompt("acme");
  const std::string first = Run(0, "acme").text;
  Stop();
  // Prompt 1 was saved to the RAM tier but never reused: not written.
  EXPECT_EQ(PfxFiles(dir_.path()).size(), 1u);
  Start();
  WaitReads(1);
  Collected c = Run(0, "acme");
  ASSERT_FALSE(c.finished->error);
  EXPECT_EQ(c.finished->usage.cached_tokens, 40);
  EXPECT_EQ(c.text, first);
  EXPECT_EQ(Run(1, "acme").finished->usage.cached_tokens, 0);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (observer_->totals().hits < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(observer_->totals().hits, 1u);
}

// 40 tokens of "system prompt" shared by every i, then 40 of their own and "?".
std::string Branching(int i) {
  return std::string(40, 'S') + std::string(1, static_cast<char>('a' + i)) + std::string(39, '.') +
         "?";
}

TEST_F(PrefixDiskRestartTest, ASharedBeginningHeldInASlotIsWrittenOnceAndRestoredAfterARestart) {
  Start();
  // Each prompt lands on slot 0, keeps its 40 shared tokens and drops the rest: the slot holds
  // exactly the shared beginning, which is written once. Nothing reaches the disk through the
  // RAM tier here (no entry is restored from it).
  EXPECT_EQ(Run(Branching(0), "acme").finished->usage.cached_tokens, 0);
  EXPECT_EQ(Run(Branching(1), "acme").finished->usage.cached_tokens, 40);
  EXPECT_EQ(Run(Branching(2), "acme").finished->usage.cached_tokens, 40);
  Stop();
  const auto files = PfxFiles(dir_.path());
  ASSERT_EQ(files.size(), 1u);
  // 40 cells of 100 bytes and a header, not the 84 cells the slot held before (prompt 0 and
  // its 3 output tokens).
  EXPECT_GT(fs::file_size(files[0]), 40u * 100);
  EXPECT_LT(fs::file_size(files[0]), 60u * 100);
  Start();
  WaitReads(1);
  // A restarted server's first request with that beginning reuses it; another tenant's does not.
  EXPECT_EQ(Run(Branching(3), "globex").finished->usage.cached_tokens, 0);
  EXPECT_EQ(Run(Branching(4), "acme").finished->usage.cached_tokens, 40);
}

TEST_F(PrefixDiskRestartTest, AContinuedConversationIsNotWrittenAsABranch) {
  Start();
  // The next turn keeps the previous prompt (41 tokens) and drops only its 3 output tokens'
  // cells: no branch, no file.
  const std::string turn = Prompt(0);
  Run(turn, "acme");
  EXPECT_EQ(Run(turn + std::string(40, '+'), "acme").finished->usage.cached_tokens, 41);
  Stop();
  EXPECT_EQ(PfxFiles(dir_.path()).size(), 0u);
}

TEST_F(PrefixDiskRestartTest, AnotherTenantsEntryIsNotRestored) {
  Start();
  ReuseFirstPrompt("acme");
  Stop();
  Start();
  WaitReads(1);
  EXPECT_EQ(Run(0, "globex").finished->usage.cached_tokens, 0);
  EXPECT_EQ(Run(0, "acme").finished->usage.cached_tokens, 40);
}

TEST_F(PrefixDiskRestartTest, TheInvariantFlagSurvivesTheRestart) {
  Start();
  ReuseFirstPrompt("");  // computed in batch-dependent steps: not invariant
  Stop();
  Start();
  WaitReads(1);
  // A deterministic request never restores cells that were not computed batch-invariantly.
  EXPECT_EQ(Run(0, "", /*deterministic=*/true).finished->usage.cached_tokens, 0);
  Stop();
  Start();
  WaitReads(1);
  EXPECT_EQ(Run(0, "").finished->usage.cached_tokens, 40);
}

TEST_F(PrefixDiskRestartTest, AnotherShareModeDoesNotRestoreTheEntry) {
  Start();
  ReuseFirstPrompt("");
  Stop();
  Start("fake", PrefixShare::kAll);
  WaitReads(1);
  EXPECT_EQ(Run(0, "").finished->usage.cached_tokens, 0);
}

TEST_F(PrefixDiskRestartTest, AnotherNumericsIdNeverReadsTheEntry) {
  Start();
  ReuseFirstPrompt("acme");
  Stop();
  Start("another build");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(observer_->totals().reads, 0u);
  EXPECT_EQ(Run(0, "acme").finished->usage.cached_tokens, 0);
}

}  // namespace
}  // namespace ember::scheduler
