// The ledger's writer: the server appends a UsageRecord at each request's completion point (on
// its HTTP threads) and one writer thread commits everything pending to the Store in one
// transaction per commit interval (group commit), so the request path never waits on disk.
//
// When a write fails (disk full or failing) the batch is kept, in order and ahead of newer
// records, and retried with exponential backoff until it succeeds: nothing is lost while the
// buffer has room, and nothing counts twice (the Store ignores a request id it already has).
// Only records beyond max_buffered unwritten ones are dropped, and counted.
//
// Thread-safe. The server owns the Ledger and calls Close in its ordered shutdown.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "ledger/record.h"
#include "ledger/store.h"

namespace ember::ledger {

struct LedgerOptions {
  // The longest a record waits before the writer commits it, under light load.
  std::chrono::milliseconds commit_interval{100};
  // Unwritten records held before Append refuses more (while the disk fails).
  std::size_t max_buffered = 100'000;
  // Pending records that wake the writer before commit_interval is up.
  std::size_t wake_batch = 4096;
  // Backoff between retries of a failed write, doubling from retry_min up to retry_max.
  std::chrono::milliseconds retry_min{100};
  std::chrono::milliseconds retry_max{5000};
};

class Ledger {
 public:
  // Starts the writer thread.
  Ledger(std::unique_ptr<Store> store, LedgerOptions options = {});
  // Closes (with a 5 s deadline) unless Close was called.
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Queues a record for the writer: no I/O. Returns false, and counts it in dropped_total, when
  // max_buffered records are already unwritten or the ledger is closed.
  //
  // `on_written`, when given, runs exactly once: on the writer thread right after the commit
  // holding the record (the writer then commits at once instead of waiting out the commit
  // interval), after a failed attempt to commit it (a failing disk must not hold the caller
  // back; the record stays queued and is retried), or here, at once, when the record is refused.
  // It must not block or call back into the ledger.
  bool Append(UsageRecord record, std::function<void()> on_written = nullptr);
  // Queues an interval or an event: never refused while open (they are few).
  void AppendInterval(UsageInterval interval);
  void AppendEvent(MachineEvent event);

  // Whether the next Append would be refused.
  bool WouldOverflow() const;
  // Records appended but not yet committed (ember_ledger_unrecorded_records).
  std::size_t Unrecorded() const;
  // False while the last write attempt failed.
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  // Why the last failed write failed ("" if none has).
  std::string last_error() const;

  // Waits until everything appended before the call is committed, or until DEADLINE has passed
  // (kDeadlineExceeded, naming how many records are still unwritten).
  [[nodiscard]] Status Flush(std::chrono::milliseconds deadline);
  // Flushes (up to DEADLINE), then stops the writer; what is still unwritten is logged as lost.
  // Later Appends are refused. Idempotent.
  void Close(std::chrono::milliseconds deadline);

  // Counters for /metrics.
  std::int64_t records_written_total() const { return records_written_.load(); }
  std::int64_t commits_total() const { return commits_.load(); }
  std::int64_t write_errors_total() const { return write_errors_.load(); }
  std::int64_t dropped_total() const { return dropped_.load(); }
  std::int64_t last_commit_duration_ns() const { return last_commit_ns_.load(); }

 private:
  // What the writer takes from the queue; kept across failed attempts.
  struct Batch {
    std::vector<UsageRecord> records;
    std::vector<UsageInterval> intervals;
    std::vector<MachineEvent> events;
    std::vector<std::function<void()>> on_written;  // run once after the next attempt
    std::uint64_t end_seq = 0;  // every item appended up to this sequence number is in here
    bool empty() const { return records.empty() && intervals.empty() && events.empty(); }
  };

  void Run();
  // Swaps the queue into TAKEN (BATCH keeps what an earlier attempt could not write) and
  // notes where BATCH + TAKEN end. Requires mu_.
  void TakePending(Batch& batch, Batch& taken);

  const LedgerOptions options_;
  const std::unique_ptr<Store> store_;  // used by the writer thread (Store is thread-safe)

  mutable std::mutex mu_;
  std::condition_variable wake_;          // the writer waits here
  std::condition_variable flushed_;       // Flush waits here
  std::vector<UsageRecord> records_;      // GUARDED_BY(mu_): appended, not yet taken by the writer
  std::vector<UsageInterval> intervals_;  // GUARDED_BY(mu_)
  std::vector<MachineEvent> events_;      // GUARDED_BY(mu_)
  std::vector<std::function<void()>> on_written_;  // GUARDED_BY(mu_)
  std::size_t in_flight_records_ = 0;  // GUARDED_BY(mu_): records taken, not yet committed
  std::uint64_t appended_seq_ = 0;     // GUARDED_BY(mu_): items appended, ever
  std::uint64_t committed_seq_ = 0;    // GUARDED_BY(mu_): items committed, ever
  bool flush_requested_ = false;       // GUARDED_BY(mu_)
  bool stop_ = false;                  // GUARDED_BY(mu_)
  bool closed_ = false;                // GUARDED_BY(mu_): Append refuses
  bool dropping_ = false;              // GUARDED_BY(mu_): in an episode of dropped records
  std::string last_error_;             // GUARDED_BY(mu_)

  std::atomic<bool> healthy_{true};
  std::atomic<std::int64_t> records_written_{0};
  std::atomic<std::int64_t> commits_{0};
  std::atomic<std::int64_t> write_errors_{0};
  std::atomic<std::int64_t> dropped_{0};
  std::atomic<std::int64_t> last_commit_ns_{0};

  std::mutex close_mu_;  // serializes Close
  std::thread writer_;   // last: starts after everything above is initialized
};

}  // namespace ember::ledger
