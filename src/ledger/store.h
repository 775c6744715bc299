// The usage ledger on disk: one SQLite file in WAL mode holding the usage records, the machine's
// intervals and its events (ledger/record.h). The server's Ledger (ledger.h) owns the one
// writable Store and writes through it from its writer thread; `ember cost report` and
// GET /v1/usage open their own read-only Store, which works while the server writes.
//
// Open refuses, and never writes to, a file that is not an ember ledger (another application's
// SQLite database, a file that is not SQLite at all, a corrupt one) or one written by a newer
// ember. The schema is versioned with PRAGMA user_version and migrated forward on open.
//
// Thread-safe: an internal mutex serializes the calls on one Store.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/money.h"
#include "ledger/record.h"

namespace ember::ledger {

// PRAGMA synchronous: kNormal may lose the last commits on power loss (never on a crash of the
// process) and is much faster; kFull fsyncs every commit.
enum class SyncMode { kNormal, kFull };

// Which usage records to read: finished_ns in [since_ns, until_ns), and the fields given.
struct Filter {
  std::int64_t since_ns = 0;
  std::int64_t until_ns = std::numeric_limits<std::int64_t>::max();
  std::optional<std::string> tenant;
  std::optional<std::string> model;
  std::optional<std::string> key_id;
};

class Store {
 public:
  // PRAGMA application_id of an ember ledger: 'EMBR'.
  static constexpr std::int32_t kApplicationId = 0x454D4252;
  // PRAGMA user_version this binary writes (and the newest it can read).
  static constexpr int kSchemaVersion = 1;

  // Opens FILE for writing, creating it (and its directory) if missing and migrating its schema
  // forward. Errors: kInvalidArgument for a file that is not an ember ledger, is corrupt or was
  // written by a newer ember (the file is left untouched); kUnavailable when it cannot be
  // opened or created.
  [[nodiscard]] static Result<std::unique_ptr<Store>> Open(const std::filesystem::path& file,
                                                           SyncMode sync);
  // Opens an existing ledger read-only (reports), also while a server writes to it. A missing
  // file is kNotFound; the other errors are those of Open, except that the integrity scan is
  // left to the writer (a corrupt page fails the read that meets it).
  [[nodiscard]] static Result<std::unique_ptr<Store>> OpenReadOnly(
      const std::filesystem::path& file);

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Writes everything in one transaction: all of it or, on error, none of it. A record whose
  // request_id is already stored is skipped (a retried batch never counts twice); an interval
  // replaces the one with the same start_ns. Returns the number of usage records inserted.
  // Errors: kUnavailable when the disk is full or failing, locked or read-only (worth retrying
  // later; the Store stays usable), kInternal otherwise.
  [[nodiscard]] Result<int> Write(std::span<const UsageRecord> records,
                                  std::span<const UsageInterval> intervals,
                                  std::span<const MachineEvent> events);

  // Records matching FILTER, by finished_ns then request_id.
  [[nodiscard]] Result<std::vector<UsageRecord>> Records(const Filter& filter);
  // Intervals with start_ns in [since_ns, until_ns), by start_ns.
  [[nodiscard]] Result<std::vector<UsageInterval>> Intervals(std::int64_t since_ns,
                                                             std::int64_t until_ns);
  // Events with at_ns in [since_ns, until_ns), in the order they were written.
  [[nodiscard]] Result<std::vector<MachineEvent>> Events(std::int64_t since_ns,
                                                         std::int64_t until_ns);
  // What TENANT was charged (UsageRecord::cost) for requests finished at or after SINCE_NS: a
  // restarted server restores its budgets from this.
  [[nodiscard]] Result<Microdollars> SpentSince(const std::string& tenant, std::int64_t since_ns);
  [[nodiscard]] Result<std::int64_t> CountRecords();

  // Caps the database at PAGES pages (at least its current size), so that a write needing more
  // fails as on a full disk (SQLITE_FULL). Tests only.
  [[nodiscard]] Status SetMaxPageCountForTest(std::int64_t pages);

 private:
  class Impl;
  Store(std::filesystem::path path, std::unique_ptr<Impl> impl);

  const std::filesystem::path path_;
  std::unique_ptr<Impl> impl_;  // holds the connection, the cached statements and the mutex
};

// Heap bytes SQLite holds in this process: every open ledger connection's page cache (SQLite's
// default, at most 2,000 KiB each, fills as the file grows) and its statements. Bounded, but it
// fills over thousands of requests: RSS watchers (the soak test) tell it apart from a leak.
[[nodiscard]] std::int64_t SqliteMemoryBytes();

}  // namespace ember::ledger
