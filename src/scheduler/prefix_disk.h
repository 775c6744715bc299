// The prefix cache's disk tier (docs/prefix_cache.md): RAM-tier entries that were reused are
// written to files under --data-dir, and read back when the same model starts again, so a
// replica that starts from zero does not recompute its system prompts.
//
// On disk, in `root` (DATA_DIR/prefix):
//   <dir>/<name>.pfx   one entry. <dir>: the first 32 hex digits of the SHA-256 of the key
//                      (the model's numerics id, CPU variant, slots and cells per slot), so
//                      another model, llama.cpp build, CPU variant or context shape never
//                      reads it. <name>: 40 hex digits of the SHA-256 of the key, scope, invariant
//                      flag and tokens (PrefixFileName).
//   <dir>/*.tmp.<pid>  a write in progress; another process's is removed when read.
// A file is a header (magic, format version, flags, key, scope, tokens, positions, blob size,
// SHA-256 of the blob) and the blob, a libllama sequence state (EncodePrefixHeader). A read
// checks the magic, version, key, that the file's name is the hash of what its header says
// (so a damaged scope, flag or token is caught too), the size and the blob's hash; a file that
// fails is deleted and counted as an error, and never used. Writes go to a temporary file, are
// fsynced and renamed into place.
//
// Disk use: a write never leaves the filesystem with less than `min_free_bytes` free, nor the
// .pfx files under `root` (every model's) above `max_bytes`; to make room it deletes the least
// recently used files first (a hit or a repeated write refreshes a file's mtime). When even
// that cannot make room the write is skipped.
//
// Threads: Write and TakeLoaded on the engine thread, neither waits on the disk. A loader
// thread, started by Open, reads this key's files (most recently used first, up to
// `load_bytes`); a writer thread writes. The destructor finishes the queued writes and joins
// both.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/error.h"
#include "engine/engine.h"

namespace ember::scheduler {

// One entry as a file holds it.
struct PrefixRecord {
  std::string key;    // PrefixDiskOptions::key of the engine that computed it
  std::string scope;  // the disk scope (the share mode and the RAM tier's scope)
  bool invariant = false;
  std::vector<engine::Token> tokens;
  int n_pos = 0;  // positions the blob holds
  std::vector<std::uint8_t> blob;
};

// The file's name (without .pfx) for an entry: a hash of everything its header says but the
// blob, whose own hash the header holds.
std::string PrefixFileName(std::string_view key, std::string_view scope, bool invariant,
                           std::span<const engine::Token> tokens);
// The header that precedes `blob` in the file.
std::string EncodePrefixHeader(std::string_view key, std::string_view scope, bool invariant,
                               std::span<const engine::Token> tokens, int n_pos,
                               std::span<const std::uint8_t> blob);
// Parses and verifies a whole file's bytes, named `name` (without .pfx), against the expected
// key. Any mismatch is an error saying which.
Result<PrefixRecord> DecodePrefixFile(std::string_view bytes, std::string_view name,
                                      std::string_view key);

struct PrefixDiskOptions {
  std::filesystem::path root{};  // DATA_DIR/prefix
  // What a blob can be restored into: the numerics id, CPU variant, slot count, cells per slot
  // (libllama refuses a sequence state from a context with another stream count).
  std::string key{};
  std::uint64_t max_bytes = 0;                // all .pfx files under root; 0: no disk tier
  std::uint64_t min_free_bytes = 1ull << 30;  // free space a write must leave
  std::uint64_t load_bytes = 0;               // at most this many blob bytes are read at start
};

struct PrefixDiskStats {
  std::uint64_t writes = 0;  // files written
  std::uint64_t reads = 0;   // files read and verified
  std::uint64_t errors = 0;  // files that failed verification (deleted), failed writes
  std::uint64_t hits = 0;    // restores of entries read from disk (the scheduler counts them)
  std::uint64_t bytes = 0;   // bytes of this key's files
  int entries = 0;           // this key's files
};

class PrefixDisk {
 public:
  // Creates the directory and starts the loader. An error when it cannot be created.
  static Result<std::unique_ptr<PrefixDisk>> Open(PrefixDiskOptions options);
  ~PrefixDisk();
  PrefixDisk(const PrefixDisk&) = delete;
  PrefixDisk& operator=(const PrefixDisk&) = delete;

  // Queues the entry for writing (the writer reads `cells`' bytes, which never change; the
  // snapshot lives until then). When its file exists already, refreshes its mtime instead.
  // Skipped (false) when writes are already queued for more than `max_bytes` in all.
  bool Write(std::string scope, std::vector<engine::Token> tokens,
             std::shared_ptr<const engine::CellsSnapshot> cells);
  // The entries the loader has read since the last call; never waits for the disk.
  std::vector<PrefixRecord> TakeLoaded();
  // Whether the loader has finished (every entry it read was taken or is in TakeLoaded).
  bool loaded() const { return load_done_.load(); }
  // Blocks until the queue is written and the loader has finished (tests).
  void Flush();
  PrefixDiskStats stats() const;

 private:
  struct Job {
    std::string scope;
    std::vector<engine::Token> tokens;
    std::shared_ptr<const engine::CellsSnapshot> cells;
  };
  explicit PrefixDisk(PrefixDiskOptions options, std::filesystem::path dir);
  void Load();
  void WriteLoop();
  void WriteOne(const Job& job);
  // Deletes least recently used files under root until `need` more bytes fit the cap and the
  // floor; false (nothing deleted) when they cannot.
  bool MakeRoom(std::uint64_t need);
  void Recount();

  const PrefixDiskOptions options_;
  const std::filesystem::path dir_;
  std::atomic<bool> load_done_{false};
  std::atomic<std::uint64_t> writes_{0}, reads_{0}, errors_{0}, bytes_{0};
  std::atomic<int> entries_{0};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::deque<Job> queue_;             // GUARDED_BY(mu_)
  std::uint64_t queued_bytes_ = 0;    // GUARDED_BY(mu_)
  bool writing_ = false;              // GUARDED_BY(mu_)
  bool stop_ = false;                 // GUARDED_BY(mu_)
  std::vector<PrefixRecord> loaded_;  // GUARDED_BY(mu_)
  std::mutex files_mu_;               // the loader's and writer's deletions and counts
  std::thread loader_;
  std::thread writer_;
};

}  // namespace ember::scheduler
