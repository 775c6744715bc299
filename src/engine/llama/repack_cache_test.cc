#include "engine/llama/repack_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace ember::engine {
namespace {

namespace fs = std::filesystem;

class RepackCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("ember-repack-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    model_ = (root_ / "model.gguf").string();
    WriteModel("model bytes v1");
    dir_ = (root_ / "cache").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  void WriteModel(const std::string& text) {
    std::ofstream(model_, std::ios::binary | std::ios::trunc) << text;
  }

  std::unique_ptr<RepackCache> Open(const std::string& identity = "ggml-A|avx2",
                                    RepackCacheSettings settings = {}) {
    auto cache = RepackCache::Open(dir_, model_, identity, 2, settings);
    EXPECT_TRUE(cache.has_value()) << cache.error().message;
    return std::move(*cache);
  }
  // Stamps files as soon as they are verified (the default waits 2 s after their last change).
  std::unique_ptr<RepackCache> OpenStamping(bool verify_every_start = false) {
    return Open("ggml-A|avx2", RepackCacheSettings{.verify_every_start = verify_every_start,
                                                   .stamp_settle = std::chrono::milliseconds(0)});
  }
  std::string StampOf(const std::string& file) const {
    return (fs::path(dir_) / "verified" / fs::path(file).filename()).string();
  }
  // Two loads: the first writes the files (too fresh to stamp), the second verifies and stamps
  // them. Returns buffer 0's file.
  std::string WriteAndStamp(const std::vector<std::size_t>& sizes) {
    std::string path;
    for (int i = 0; i < 2; ++i) {
      auto c = OpenStamping();
      Load(*c, sizes);
      path = c->FilePath(0);
    }
    return path;
  }

  // One load: allocates the buffers, "repacks" into the fresh ones, persists them. Returns
  // whether each buffer came prefilled and checks the bytes a prefilled one holds.
  std::vector<bool> Load(RepackCache& cache, std::vector<std::size_t> sizes) {
    std::vector<bool> prefilled;
    std::vector<std::pair<void*, std::size_t>> bufs;
    for (std::size_t b = 0; b < sizes.size(); ++b) {
      bool pre = false;
      auto* p = static_cast<unsigned char*>(cache.Alloc(sizes[b], &pre));
      EXPECT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
      for (std::size_t i = 0; i < sizes[b]; ++i) {
        const auto want = static_cast<unsigned char>(i * 31 + b);
        if (pre) {
          if (p[i] != want) {
            ADD_FAILURE() << "buffer " << b << " byte " << i << " differs";
            break;
          }
        } else {
          p[i] = want;
        }
      }
      prefilled.push_back(pre);
      bufs.emplace_back(p, sizes[b]);
    }
    cache.Persist();
    cache.WaitPersisted();
    for (auto [p, n] : bufs) cache.Free(p, n);
    return prefilled;
  }

  int Temporaries() const {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      n += e.path().filename().string().find(".tmp.") != std::string::npos;
    }
    return n;
  }

  fs::path root_;
  std::string model_, dir_;
};

const std::vector<std::size_t> kSizes = {3 * 4096 + 5, 777};

TEST_F(RepackCacheTest, MissThenHitWithTheSameBytes) {
  {
    auto cache = Open();
    EXPECT_FALSE(cache->ExpectsHit());
    EXPECT_EQ(Load(*cache, kSizes), (std::vector<bool>{false, false}));
    EXPECT_EQ(cache->stats().misses, 2);
    EXPECT_TRUE(fs::exists(cache->FilePath(0)));
    EXPECT_TRUE(fs::exists(cache->FilePath(1)));
  }
  auto cache = Open();
  ASSERT_TRUE(cache->model_hash().has_value()) << "the memo gives the hash without reading";
  EXPECT_TRUE(cache->ExpectsHit());
  EXPECT_FALSE(RepackCache::MemoryOnly()->ExpectsHit());
  EXPECT_EQ(Load(*cache, kSizes), (std::vector<bool>{true, true}));
  EXPECT_EQ(cache->stats().hits, 2);
  EXPECT_EQ(cache->stats().rejected, 0);
  EXPECT_EQ(Temporaries(), 0);
}

TEST_F(RepackCacheTest, PrefetchedFilesAreVerifiedAndUsed) {
  {
    auto c = Open();
    Load(*c, kSizes);
  }
  auto cache = Open();
  cache->Prefetch();  // maps and verifies both files while "the tokenizer builds"
  EXPECT_EQ(Load(*cache, kSizes), (std::vector<bool>{true, true}));
  EXPECT_EQ(cache->stats().hits, 2);
}

TEST_F(RepackCacheTest, AFileOfAnotherSizeIsRejected) {
  {
    auto c = Open();
    Load(*c, kSizes);
  }
  auto cache = Open();
  cache->Prefetch();
  EXPECT_EQ(Load(*cache, {kSizes[0] + 64, kSizes[1]}), (std::vector<bool>{false, true}));
  EXPECT_EQ(cache->stats().rejected, 1);
}

TEST_F(RepackCacheTest, CorruptPayloadIsRejectedAndRebuilt) {
  {
    auto c = Open();
    Load(*c, kSizes);
  }
  std::string path;
  {
    auto c = Open();
    path = c->FilePath(0);
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 + 100);
    f.put('\x7f');
  }
  {
    auto c = Open();
    EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{false, true}));
    EXPECT_EQ(c->stats().rejected, 1);
  }
  auto c = Open();
  EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{true, true})) << "rebuilt after rejection";
}

TEST_F(RepackCacheTest, CorruptHeaderAndTruncatedFilesAreRejected) {
  {
    auto c = Open();
    Load(*c, kSizes);
  }
  auto probe = Open();
  const std::string first = probe->FilePath(0), second = probe->FilePath(1);
  probe.reset();
  fs::resize_file(first, fs::file_size(first) - 1);
  {
    std::fstream f(second, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x01');
  }
  auto c = Open();
  EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{false, false}));
  EXPECT_EQ(c->stats().rejected, 2);
}

TEST_F(RepackCacheTest, ForeignIdentityIsRejected) {
  std::string written;
  {
    auto c = Open("ggml-A|avx2");
    Load(*c, kSizes);
    written = c->FilePath(0);
  }
  auto other = Open("ggml-B|avx512");
  // A file under the other identity's name but written for ggml-A (copied by hand, or a
  // name collision): the header must catch it.
  fs::copy_file(written, other->FilePath(0), fs::copy_options::overwrite_existing);
  EXPECT_EQ(Load(*other, {kSizes[0]}), (std::vector<bool>{false}));
  EXPECT_EQ(other->stats().rejected, 1);
}

TEST_F(RepackCacheTest, ChangedModelFileIsNotServedFromTheOldCache) {
  std::string old_file;
  {
    auto c = Open();
    Load(*c, kSizes);
    old_file = c->FilePath(0);
  }
  sleep(0);  // ctime granularity is fine-grained; the rewrite changes size anyway
  WriteModel("model bytes v2, different");
  {
    auto c = Open();
    EXPECT_FALSE(c->model_hash().has_value()) << "the memo must not vouch for a changed file";
    EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{false, false}));
  }
  EXPECT_FALSE(fs::exists(old_file)) << "the old version's files are removed, not piled up";
  auto c = Open();
  EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{true, true}));
}

TEST_F(RepackCacheTest, RacingWritersLeaveOneValidFile) {
  auto a = Open();
  auto b = Open();
  std::thread ta([&] { Load(*a, kSizes); });
  std::thread tb([&] { Load(*b, kSizes); });
  ta.join();
  tb.join();
  EXPECT_EQ(Temporaries(), 0);
  auto c = Open();
  EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{true, true}));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.path().extension() == ".bin";
  EXPECT_EQ(files, 2);
}

TEST_F(RepackCacheTest, TemporariesOfDeadProcessesAreRemoved) {
  fs::create_directories(dir_);
  // pid 2^22 + 1 is above Linux's pid_max limit: no such process can exist.
  const std::string stale = dir_ + "/repack-x-y-0.bin.tmp.4194305.0";
  const std::string live = dir_ + "/repack-x-y-0.bin.tmp." + std::to_string(getpid()) + ".0";
  std::ofstream(stale) << "partial";
  std::ofstream(live) << "partial";
  auto c = Open();
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live)) << "a live process may still be writing it";
}

// A cache file of another model path, `bytes` long, last used `age` ago (only its name and
// mtime matter to the eviction).
void WriteOtherModelFile(const std::string& dir, const std::string& tag, std::size_t bytes,
                         std::chrono::hours age) {
  const fs::path path = fs::path(dir) / ("repack-" + tag + "-000000000000-0.bin");
  std::ofstream(path, std::ios::binary) << std::string(bytes, 'x');
  fs::last_write_time(path, fs::file_time_type::clock::now() - age);
}

TEST_F(RepackCacheTest, SizeCapDeletesOtherModelsLeastRecentlyUsedFirst) {
  fs::create_directories(dir_);
  WriteOtherModelFile(dir_, "aaaaaaaaaaaa", 200'000, std::chrono::hours(48));  // oldest
  WriteOtherModelFile(dir_, "bbbbbbbbbbbb", 200'000, std::chrono::hours(1));
  // Room for one other model beside this one's ~150 kB (2 x 64 KiB + headers).
  auto cache =
      RepackCache::Open(dir_, model_, "id", 1, {.max_bytes = 400'000, .min_free_bytes = 0});
  ASSERT_TRUE(cache.has_value()) << cache.error().message;
  Load(**cache, {65536, 65536});
  EXPECT_EQ((*cache)->WaitPersisted(), 2);
  EXPECT_EQ((*cache)->evicted(), 1);
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "repack-aaaaaaaaaaaa-000000000000-0.bin"));
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "repack-bbbbbbbbbbbb-000000000000-0.bin"));
  EXPECT_TRUE(fs::exists((*cache)->FilePath(1)));
}

TEST_F(RepackCacheTest, AWriteThatCannotFitDeletesNothing) {
  fs::create_directories(dir_);
  WriteOtherModelFile(dir_, "aaaaaaaaaaaa", 100'000, std::chrono::hours(48));
  // Over the cap on its own: nothing is written and the other model keeps its file.
  auto capped =
      RepackCache::Open(dir_, model_, "id", 1, {.max_bytes = 50'000, .min_free_bytes = 0});
  ASSERT_TRUE(capped.has_value());
  Load(**capped, {65536});
  EXPECT_EQ((*capped)->WaitPersisted(), 0);
  EXPECT_TRUE((*capped)->skipped_for_space());
  EXPECT_EQ((*capped)->evicted(), 0);
  // A free-space floor no filesystem here can meet: the same.
  auto floor = RepackCache::Open(dir_, model_, "id", 1,
                                 {.max_bytes = 0, .min_free_bytes = std::uint64_t{1} << 62});
  ASSERT_TRUE(floor.has_value());
  Load(**floor, {65536});
  EXPECT_EQ((*floor)->WaitPersisted(), 0);
  EXPECT_TRUE((*floor)->skipped_for_space());
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "repack-aaaaaaaaaaaa-000000000000-0.bin"));
  EXPECT_FALSE(fs::exists((*floor)->FilePath(0)));
}

TEST_F(RepackCacheTest, AHitRefreshesTheFilesLastUse) {
  {
    auto c = Open();
    Load(*c, {4096});
    c->WaitPersisted();
  }
  auto c = Open();
  const fs::path file = c->FilePath(0);
  fs::last_write_time(file, fs::file_time_type::clock::now() - std::chrono::hours(48));
  EXPECT_EQ(Load(*c, {4096}), std::vector<bool>{true});
  EXPECT_GT(fs::last_write_time(file), fs::file_time_type::clock::now() - std::chrono::hours(1));
}

bool HaveBootId() { return fs::exists("/proc/sys/kernel/random/boot_id"); }

TEST_F(RepackCacheTest, AFileVerifiedThisBootIsMappedWithoutHashingItAgain) {
  if (!HaveBootId()) GTEST_SKIP() << "no /proc/sys/kernel/random/boot_id: nothing is stamped";
  {
    auto c = OpenStamping();
    Load(*c, kSizes);  // written: too fresh to stamp
    EXPECT_FALSE(fs::exists(StampOf(c->FilePath(0))));
  }
  {
    auto c = OpenStamping();
    EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{true, true}));
    EXPECT_EQ(c->stats().trusted, 0) << "hashed, then stamped";
    EXPECT_TRUE(fs::exists(StampOf(c->FilePath(0))));
  }
  auto c = OpenStamping();
  c->Prefetch();
  EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{true, true})) << "the same bytes, unhashed";
  EXPECT_EQ(c->stats().hits, 2);
  EXPECT_EQ(c->stats().trusted, 2);
  EXPECT_EQ(c->stats().verify_seconds, 0);
}

TEST_F(RepackCacheTest, AFileChangedAfterItsStampIsHashedAndRejected) {
  if (!HaveBootId()) GTEST_SKIP() << "no /proc/sys/kernel/random/boot_id: nothing is stamped";
  const std::string path = WriteAndStamp(kSizes);
  ASSERT_TRUE(fs::exists(StampOf(path)));
  // Past the coarse clock's tick, so the write moves ctime (the default settle time does this).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 + 7);
    f.put('\x5a');
  }
  auto c = OpenStamping();
  EXPECT_EQ(Load(*c, kSizes), (std::vector<bool>{false, true}));
  EXPECT_EQ(c->stats().rejected, 1);
  EXPECT_EQ(c->stats().trusted, 1) << "the untouched second file keeps its stamp";
}

TEST_F(RepackCacheTest, StampsOfAnotherBootOrWithVerifyEveryStartAreNotTrusted) {
  if (!HaveBootId()) GTEST_SKIP() << "no /proc/sys/kernel/random/boot_id: nothing is stamped";
  const std::string path = WriteAndStamp({4096});
  {
    auto c = OpenStamping(/*verify_every_start=*/true);
    EXPECT_EQ(Load(*c, {4096}), std::vector<bool>{true});
    EXPECT_EQ(c->stats().trusted, 0);
  }
  std::string stamp;
  std::getline(std::ifstream(StampOf(path)), stamp);
  ASSERT_GT(stamp.size(), 40u);
  stamp.replace(3, 36, std::string(36, '0'));  // "v1 " + another boot's id
  std::ofstream(StampOf(path), std::ios::trunc) << stamp << "\n";
  auto c = OpenStamping();
  EXPECT_EQ(Load(*c, {4096}), std::vector<bool>{true});
  EXPECT_EQ(c->stats().trusted, 0);
}

TEST_F(RepackCacheTest, DeletedFilesTakeTheirStampsWithThem) {
  if (!HaveBootId()) GTEST_SKIP() << "no /proc/sys/kernel/random/boot_id: nothing is stamped";
  const std::string path = WriteAndStamp({4096});
  ASSERT_TRUE(fs::exists(StampOf(path)));
  fs::remove(path);
  OpenStamping();
  EXPECT_FALSE(fs::exists(StampOf(path))) << "an orphan stamp is removed at the next open";
}

TEST_F(RepackCacheTest, UnwritableDirectoryIsAnError) {
  std::ofstream(root_ / "file") << "x";
  auto cache = RepackCache::Open((root_ / "file" / "cache").string(), model_, "id", 1);
  ASSERT_FALSE(cache.has_value());
  EXPECT_NE(cache.error().message.find("cache directory"), std::string::npos);
}

}  // namespace
}  // namespace ember::engine
