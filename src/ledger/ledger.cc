// The ledger's writer thread: group commit of appended records, retry with backoff on failure,
// Flush and Close.
#include "ledger/ledger.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "common/log.h"

namespace ember::ledger {
namespace {

template <typename T>
void MoveOnto(std::vector<T>& to, std::vector<T>& from) {
  if (to.empty()) {
    to.swap(from);  // keeps both buffers' capacity: no allocation in steady state
  } else {
    to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
    from.clear();
  }
}

}  // namespace

Ledger::Ledger(std::unique_ptr<Store> store, LedgerOptions options)
    : options_(options), store_(std::move(store)) {
  writer_ = std::thread([this] { Run(); });
}

Ledger::~Ledger() { Close(std::chrono::seconds(5)); }

bool Ledger::Append(UsageRecord record, std::function<void()> on_written) {
  bool accepted = false;
  bool wake = false;
  bool first_drop = false;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    if (!closed_ && records_.size() + in_flight_records_ < options_.max_buffered) {
      records_.push_back(std::move(record));
      ++appended_seq_;
      accepted = true;
      wake = records_.size() == options_.wake_batch;
      if (on_written) {
        // Someone waits for this commit: commit now. Records appended while it runs wait for
        // the next one, so under load commits still group many records.
        on_written_.push_back(std::move(on_written));
        wake = !flush_requested_;
        flush_requested_ = true;
      }
    } else {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      first_drop = !dropping_;
      dropping_ = true;
      closed = closed_;
    }
  }
  if (wake) wake_.notify_one();
  if (!accepted && on_written) on_written();
  if (first_drop && closed) {
    log::Error("ledger: dropping usage records appended after the ledger was closed");
  } else if (first_drop) {
    log::Error("ledger: dropping usage records: ", options_.max_buffered,
               " are unwritten already; last write error: ", last_error());
  }
  return accepted;
}

void Ledger::AppendInterval(UsageInterval interval) {
  std::lock_guard lock(mu_);
  if (closed_) return;
  intervals_.push_back(std::move(interval));
  ++appended_seq_;
}

void Ledger::AppendEvent(MachineEvent event) {
  std::lock_guard lock(mu_);
  if (closed_) return;
  events_.push_back(std::move(event));
  ++appended_seq_;
}

bool Ledger::WouldOverflow() const { return Unrecorded() >= options_.max_buffered; }

std::size_t Ledger::Unrecorded() const {
  std::lock_guard lock(mu_);
  return records_.size() + in_flight_records_;
}

std::string Ledger::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

Status Ledger::Flush(std::chrono::milliseconds deadline) {
  std::unique_lock lock(mu_);
  const std::uint64_t target = appended_seq_;
  if (committed_seq_ >= target) return {};
  flush_requested_ = true;
  wake_.notify_one();
  flushed_.wait_for(lock, deadline, [&] { return committed_seq_ >= target || stop_; });
  if (committed_seq_ >= target) return {};
  return DeadlineExceeded(StrCat("ledger: ", records_.size() + in_flight_records_,
                                 " usage records still unwritten after ", deadline.count(), " ms",
                                 last_error_.empty() ? "" : StrCat(" (", last_error_, ")")));
}

void Ledger::Close(std::chrono::milliseconds deadline) {
  std::lock_guard close_lock(close_mu_);
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;  // from here Append refuses, so the flush below has an end
  }
  auto flushed = Flush(deadline);
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  flushed_.notify_all();
  writer_.join();
  if (!flushed) log::Error(flushed.error().message, "; they are lost");
}

void Ledger::TakePending(Batch& batch, Batch& taken) {
  taken.records.swap(records_);
  taken.intervals.swap(intervals_);
  taken.events.swap(events_);
  taken.on_written.swap(on_written_);
  batch.end_seq = appended_seq_;
  in_flight_records_ = batch.records.size() + taken.records.size();
}

void Ledger::Run() {
  Batch batch;
  int failures = 0;  // consecutive failed attempts
  auto backoff = options_.retry_min;
  std::unique_lock lock(mu_);
  for (;;) {
    if (failures > 0) {
      wake_.wait_for(lock, backoff, [&] { return stop_; });
    } else {
      wake_.wait_for(lock, options_.commit_interval, [&] {
        return stop_ || flush_requested_ || records_.size() >= options_.wake_batch;
      });
    }
    if (stop_) break;
    flush_requested_ = false;
    // Swapped out under the lock, moved onto the batch (which a failing disk lets grow to
    // --ledger-buffer records) outside it: an Append never waits behind a large move.
    Batch taken;
    TakePending(batch, taken);
    if (batch.empty() && taken.empty() && taken.on_written.empty()) continue;
    lock.unlock();
    MoveOnto(batch.records, taken.records);
    MoveOnto(batch.intervals, taken.intervals);
    MoveOnto(batch.events, taken.events);
    MoveOnto(batch.on_written, taken.on_written);
    const auto start = std::chrono::steady_clock::now();
    auto written = store_->Write(batch.records, batch.intervals, batch.events);
    const std::int64_t took_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now() - start)
                                     .count();
    // Whoever waits for these records hears after this attempt, committed or not.
    for (auto& done : batch.on_written) done();
    batch.on_written.clear();
    if (written) {
      records_written_.fetch_add(*written, std::memory_order_relaxed);
      commits_.fetch_add(1, std::memory_order_relaxed);
      last_commit_ns_.store(took_ns, std::memory_order_relaxed);
      healthy_.store(true, std::memory_order_relaxed);
      if (failures > 0) {
        log::Info("ledger: writing recovered after ", failures, " failed attempts; wrote ",
                  batch.records.size(), " usage records held meanwhile");
      }
      failures = 0;
      backoff = options_.retry_min;
      batch.records.clear();
      batch.intervals.clear();
      batch.events.clear();
      lock.lock();
      committed_seq_ = batch.end_seq;
      in_flight_records_ = 0;
      dropping_ = false;
      flushed_.notify_all();
    } else {
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      healthy_.store(false, std::memory_order_relaxed);
      if (failures == 0) {
        log::Error("ledger: writing ", batch.records.size(),
                   " usage records failed; holding them and retrying: ", written.error().message);
      } else {
        backoff = std::min(backoff * 2, options_.retry_max);
      }
      ++failures;
      lock.lock();
      last_error_ = written.error().message;
    }
  }
  const std::size_t lost = batch.records.size() + records_.size();
  std::vector<std::function<void()>> waiting = std::move(on_written_);
  lock.unlock();
  for (auto& done : batch.on_written) done();
  for (auto& done : waiting) done();
  flushed_.notify_all();
  if (lost > 0) log::Error("ledger: stopped with ", lost, " usage records unwritten");
}

}  // namespace ember::ledger
