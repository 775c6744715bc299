// The repacked-weight cache (docs/coldstart.md). Loading a quantized model on the CPU
// converts its weight matrices into interleaved blocks ("repack"); the result depends only on
// the model's bytes, the CPU features and the ggml build. RepackCache supplies the memory for
// those buffers: on a hit it maps a verified cache file (zero-copy, from the page cache) and
// the conversion is skipped; on a miss it hands out fresh memory and, once the model has
// loaded, persists what was written into it.
//
// On disk, in `dir`:
//   repack-<key>-<n>.bin   the n-th repack buffer of one (model content, identity) key:
//                          a 4 KiB header (magic, format, identity, model hash, sizes, the
//                          payload's hash) and the payload, page-aligned so it maps directly.
//   models/<path-hash>     the content hash of a model file, valid while the file's
//                          (device, inode, size, mtime, ctime) are unchanged.
//   verified/<file name>   a stamp: that cache file's payload hash was checked during this
//                          boot of the machine, and its (device, inode, size, mtime, ctime)
//                          then. A file whose stamp matches is mapped without hashing it
//                          again (unless RepackCacheSettings::verify_every_start); any write
//                          to it, a truncation or a reboot voids the stamp.
//   *.tmp.<pid>.<n>        a write in progress; removed at start when its process is gone.
// A file with the wrong size, magic, identity or payload hash is never used: it is reported,
// ignored, and replaced by the next write. Writes go to a temporary file, are fsynced and
// renamed into place, so racing processes and full disks never leave a partial file behind.
//
// Disk use (RepackCacheSettings): a write never leaves the filesystem with less than
// `min_free_bytes` free, nor the directory's cache files above `max_bytes`. To make room it
// deletes the files of other model paths, least recently used first (a hit refreshes a
// file's mtime); when even deleting all of them would not be enough it deletes nothing and
// skips the write (the model is served, uncached). Files mapped by a running process stay
// valid for it when deleted.
//
// Threads: Alloc/Free run on the loading thread (ggml calls them during the load) and Free
// again when the model is freed; Persist starts one writer thread, joined by the destructor.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"

namespace ember::engine {

struct RepackCacheSettings {
  std::uint64_t max_bytes = 0;                // all cache files in the directory; 0 = no cap
  std::uint64_t min_free_bytes = 1ull << 30;  // free space a write must leave on the filesystem
  // Hash every file at every start, stamps or not (--cache-verify always): a file changed
  // behind the filesystem's back (bit rot after it left the page cache) is caught then too.
  bool verify_every_start = false;
  // A file is stamped only once unchanged for this long: file times come from a coarse clock
  // (a few milliseconds), so a write just after the stamp's stat could leave them as stamped.
  // Tests shorten it.
  std::chrono::milliseconds stamp_settle{2000};
};

struct RepackCacheStats {
  int hits = 0;      // buffers mapped from a verified file
  int misses = 0;    // buffers repacked now (no usable file)
  int rejected = 0;  // files found but refused (corrupt, truncated, foreign, stale)
  int trusted = 0;   // hits not hashed again: their stamp says they were, this boot
  std::size_t mapped_bytes = 0;
  double verify_seconds = 0;  // hashing the mapped files
};

class RepackCache {
 public:
  // `dir` is created if missing. `identity` names everything besides the model's bytes that
  // the repacked layout depends on (ggml build, CPU features); files with another identity
  // are foreign. `threads` hash and verify in parallel.
  static Result<std::unique_ptr<RepackCache>> Open(std::string dir, std::string model_path,
                                                   std::string identity, int threads,
                                                   RepackCacheSettings settings = {});
  // No directory: nothing is looked up or persisted; Alloc still hands out memory that a
  // second thread pre-faults (the faster way to repack without a cache, docs/coldstart.md).
  static std::unique_ptr<RepackCache> MemoryOnly();
  ~RepackCache();
  RepackCache(const RepackCache&) = delete;
  RepackCache& operator=(const RepackCache&) = delete;

  // Starts mapping and verifying the cached files of this model on a background thread, so
  // that it overlaps the tokenizer build that precedes the first Alloc. Optional.
  void Prefetch();

  // Whether this model's first cache file is there to be mapped (it may still be refused once
  // verified): the loader then need not pre-fault the source weights it will not read.
  bool ExpectsHit() const;

  // Memory for the next repack buffer of `size` bytes, 64-byte aligned (page-aligned in
  // fact); *prefilled = it already holds the repacked data. nullptr = use ggml's default.
  void* Alloc(std::size_t size, bool* prefilled);
  void Free(void* base, std::size_t size);

  // Call once the model has loaded: writes the buffers repacked in this load (and the model's
  // content hash, if it was unknown) on a background thread. The buffers must stay alive
  // until the destructor (which stops and joins the writer) or WaitPersisted returns.
  void Persist();
  // Blocks until the writer is done; returns how many cache files it wrote.
  int WaitPersisted();

  const RepackCacheStats& stats() const { return stats_; }
  // What the writer did to stay within the limits (valid once WaitPersisted returns).
  int evicted() const { return evicted_.load(); }  // other models' files deleted
  bool skipped_for_space() const { return skipped_for_space_.load(); }  // nothing written
  bool persistent() const { return !dir_.empty(); }
  // Where buffer `index` of the current model version is cached (tests corrupt it).
  std::string FilePath(int index) const;
  // The model file's content hash when known without reading it (from the memo).
  const std::optional<std::uint64_t>& model_hash() const { return model_hash_; }

 private:
  struct Region {
    void* base;  // what Alloc returned
    void* map;   // what to munmap
    std::size_t map_len;
    std::size_t size;
    int index;
    bool from_file;
  };

  RepackCache(std::string dir, std::string model_path, std::string identity, int threads,
              RepackCacheSettings settings);
  // Maps and verifies cache file `index` (hashing on `hash_threads`); nullopt (with a
  // warning) if absent or unusable. The caller checks the size it needs.
  std::optional<Region> MapFile(int index, int hash_threads);
  void UnmapPrefetched();
  void WriteAll();
  // Deletes this model path's files of other versions, then other models' files (least
  // recently used first) until `need` more bytes fit the limits; false (nothing of other
  // models deleted) when they cannot.
  bool MakeRoom(std::uint64_t need);
  bool WriteFile(const Region& region);
  std::string PathPrefix() const;  // "repack-<model path tag>-"
  std::string KeyPrefix() const;   // PathPrefix() + "<identity and model hash tag>-"
  std::string MemoPath() const;
  std::string StampPath(const std::string& file) const;
  // Whether `file`'s stamp vouches for it as it is now (`stat_identity`, StatIdentity of its
  // fstat) with this payload hash.
  bool Stamped(const std::string& file, const std::string& stat_identity,
               std::uint64_t payload_hash) const;
  // Stamps `file` as verified with this payload hash when it was as `stat_identity` says,
  // unless it had changed less than settings_.stamp_settle before now (`changed`: its ctime).
  void WriteStamp(const std::string& file, const std::string& stat_identity,
                  std::chrono::system_clock::time_point changed, std::uint64_t payload_hash) const;
  // Deletes a cache file and its stamp; whether the file was there to delete.
  bool RemoveFileAndStamp(const std::filesystem::path& file) const;
  std::optional<std::uint64_t> ReadMemo() const;
  void WriteMemo(std::uint64_t hash) const;
  void RemoveStaleTemporaries() const;

  const std::string dir_;
  const std::string model_path_;
  const std::string identity_;
  const int threads_;
  const RepackCacheSettings settings_;
  std::optional<std::uint64_t> model_hash_;
  int next_index_ = 0;
  std::mutex mu_;  // regions_ (Free may run on another thread than Alloc)
  std::vector<Region> regions_;
  RepackCacheStats stats_;
  std::thread prefetcher_;
  std::thread prefaulter_;
  std::vector<std::optional<Region>> prefetched_;  // by index; written by prefetcher_
  std::thread writer_;
  std::atomic<bool> stop_{false};
  std::atomic<int> written_{0};
  std::atomic<int> evicted_{0};
  std::atomic<bool> skipped_for_space_{false};
};

}  // namespace ember::engine
