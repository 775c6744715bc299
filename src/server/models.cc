#include "server/models.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "common/log.h"

namespace ember::server {
namespace {

double Seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

std::string MiB(std::uint64_t bytes) {
  return StrCat(bytes / (1024 * 1024), " MiB (", bytes, " bytes)");
}

}  // namespace

ModelLease::ModelLease(ModelLease&& other) noexcept
    : manager_(std::exchange(other.manager_, nullptr)),
      index_(other.index_),
      scheduler_(other.scheduler_),
      cold_start_(other.cold_start_) {}

ModelLease::~ModelLease() {
  if (manager_ != nullptr) manager_->Release(index_);
}

ModelManager::ModelManager(ManagerOptions options, std::vector<ModelConfig> models, LoadFn load,
                           ServerMetrics& metrics, Clock& clock)
    : options_(options), load_(std::move(load)), clock_(clock) {
  metrics.SetMemoryBudget(options_.memory_budget);
  for (ModelConfig& config : models) {
    auto entry = std::make_unique<Entry>();
    entry->metrics = &metrics.ForModel(config.id);
    entry->metrics->SetEstimateBytes(config.estimate_bytes);
    entry->metrics->SetLoaded(false);
    entry->need = config.estimate_bytes;
    entry->config = std::move(config);
    entries_.push_back(std::move(entry));
  }
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    entries_[i]->metrics->BindSnapshot(
        [this, id = entries_[i]->config.id] { return Snapshot(id); });
  }
  thread_ = std::thread([this] { Run(); });
}

void ModelManager::FailWaiters(std::vector<Waiter>& waiters, const Error& error, Pending& pending) {
  for (Waiter& w : waiters) {
    if (w.done) {
      pending.push_back([done = std::move(w.done), error] { done(std::unexpected(error)); });
    }
    if (w.loaded) {
      pending.push_back([done = std::move(w.loaded), error] { done(std::unexpected(error)); });
    }
  }
  waiters.clear();
}

ModelManager::~ModelManager() {
  Pending pending;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    draining_ = true;
    const Error error{ErrorCode::kUnavailable, "server stopped before the model was loaded", ""};
    for (auto& e : entries_) FailWaiters(e->waiters, error, pending);
  }
  wake_.notify_all();
  for (auto& fn : pending) fn();
  if (thread_.joinable()) thread_.join();
  if (loader_.joinable()) loader_.join();
  for (auto& e : entries_) e->scheduler.reset();
}

const std::string& ModelManager::default_model() const { return entries_.front()->config.id; }

int ModelManager::Find(const std::string& id) const {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i]->config.id == id) return static_cast<int>(i);
  }
  return -1;
}

bool ModelManager::Has(const std::string& id) const { return Find(id) >= 0; }

Status ModelManager::CheckFits(const std::string& id) const {
  const int i = Find(id);
  if (i < 0)
    return NotFound(StrCat("model '", id, "' does not exist (see GET /v1/models)"), "model");
  const std::uint64_t estimate = entries_[i]->config.estimate_bytes;
  if (options_.memory_budget > 0 && estimate > options_.memory_budget) {
    return InvalidArgument(
        StrCat("model '", id, "' needs an estimated ", MiB(estimate),
               " (weights + KV cache + compute), more than the whole --memory-budget of ",
               MiB(options_.memory_budget), "; it can never be loaded on this server"),
        "model");
  }
  return {};
}

std::uint64_t ModelManager::Acquire(const std::string& id, SteadyTime deadline,
                                    LeaseCallback done) {
  if (Status fits = CheckFits(id); !fits) {
    done(std::unexpected(fits.error()));
    return 0;
  }
  const std::size_t i = static_cast<std::size_t>(Find(id));
  std::unique_lock lock(mu_);
  if (draining_) {
    lock.unlock();
    done(Unavailable("server is shutting down; retry on another replica"));
    return 0;
  }
  Entry& e = *entries_[i];
  const SteadyTime now = clock_.Now();
  if (e.state == ModelState::kLoaded && !e.closed) {
    ++e.leases;
    e.last_used = now;
    scheduler::Scheduler* s = e.scheduler.get();
    lock.unlock();
    done(ModelLease(this, i, s, std::nullopt));
    return 0;
  }
  const std::uint64_t ticket = next_ticket_++;
  e.waiters.push_back({ticket, now, deadline, std::move(done), nullptr});
  lock.unlock();
  wake_.notify_all();
  return ticket;
}

void ModelManager::Abandon(std::uint64_t ticket) {
  if (ticket == 0) return;
  LeaseCallback done;
  {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      auto it = std::find_if(e->waiters.begin(), e->waiters.end(),
                             [ticket](const Waiter& w) { return w.ticket == ticket; });
      if (it == e->waiters.end()) continue;
      done = std::move(it->done);
      e->waiters.erase(it);
      break;
    }
  }
  if (!done) return;
  wake_.notify_all();
  idle_.notify_all();
  done(Unavailable("the client left while it waited for its model"));
}

void ModelManager::Load(const std::string& id, StatusCallback done) {
  if (Status fits = CheckFits(id); !fits) return done(fits);
  const std::size_t i = static_cast<std::size_t>(Find(id));
  std::unique_lock lock(mu_);
  if (draining_) {
    lock.unlock();
    return done(Unavailable("server is shutting down"));
  }
  Entry& e = *entries_[i];
  if (e.state == ModelState::kLoaded) {
    e.last_used = clock_.Now();
    lock.unlock();
    return done({});
  }
  e.waiters.push_back({0, clock_.Now(), SteadyTime::max(), nullptr, std::move(done)});
  lock.unlock();
  wake_.notify_all();
}

void ModelManager::Unload(const std::string& id, StatusCallback done) {
  const int i = Find(id);
  if (i < 0) {
    return done(NotFound(StrCat("model '", id, "' does not exist (see GET /v1/models)"), "model"));
  }
  std::unique_lock lock(mu_);
  Entry& e = *entries_[i];
  if (e.state == ModelState::kUnloaded && e.waiters.empty()) {
    lock.unlock();
    return done({});
  }
  if (e.leases > 0 || !e.waiters.empty() || e.state == ModelState::kLoading) {
    const int n = e.leases + static_cast<int>(e.waiters.size());
    lock.unlock();
    return done(ResourceExhausted(
        StrCat("model '", id, "' is busy (", n,
               " requests running, queued or waiting for it to load); retry when it is idle")));
  }
  e.unload_waiters.push_back(std::move(done));
  lock.unlock();
  wake_.notify_all();
}

void ModelManager::Release(std::size_t index) {
  {
    std::lock_guard lock(mu_);
    Entry& e = *entries_[index];
    --e.leases;
    e.last_used = clock_.Now();
  }
  wake_.notify_all();
  idle_.notify_all();
}

std::uint64_t ModelManager::UsedLocked() const {
  std::uint64_t used = 0;
  for (const auto& e : entries_) used += e->bytes;
  return used;
}

std::optional<std::vector<std::string>> ModelManager::PlanEvictionLocked(std::uint64_t need,
                                                                         bool evict_busy) const {
  std::vector<ResidentModel> resident;
  for (const auto& r : entries_) {
    if (r->bytes == 0) continue;
    const bool pinned = r->state != ModelState::kLoaded || (!evict_busy && r->busy());
    resident.push_back({r->config.id, r->bytes, r->last_used, pinned});
  }
  return PlanEviction(std::move(resident), UsedLocked(), need, options_.memory_budget);
}

void ModelManager::ExpireWaitersLocked(SteadyTime now, Pending& pending) {
  for (auto& e : entries_) {
    std::erase_if(e->waiters, [&](Waiter& w) {
      if (w.deadline > now) return false;
      Error error{ErrorCode::kDeadlineExceeded,
                  StrCat("request waited longer than the queue timeout for model '", e->config.id,
                         e->state == ModelState::kLoaded
                             ? "' (held back while another model takes its memory)"
                             : "' to load",
                         "; retry later"),
                  ""};
      pending.push_back([done = std::move(w.done), error] { done(std::unexpected(error)); });
      return true;
    });
  }
}

void ModelManager::UnloadLocked(std::unique_lock<std::mutex>& lock, Entry& e,
                                ModelMetrics::UnloadReason reason) {
  e.state = ModelState::kUnloading;
  std::unique_ptr<scheduler::Scheduler> doomed = std::move(e.scheduler);
  if (doomed) retired_busy_ns_ += doomed->busy_ns();  // idle: no step runs any more
  lock.unlock();
  const SteadyTime start = clock_.Now();
  doomed.reset();  // joins the engine thread, frees the llama model and context
  const auto took = clock_.Now() - start;
  lock.lock();
  e.state = ModelState::kUnloaded;
  e.closed = false;
  const std::uint64_t freed = e.bytes;
  e.bytes = 0;
  e.metrics->SetLoaded(false);
  e.metrics->SetMemoryBytes(0);
  e.metrics->CountUnload(reason);
  const char* why = reason == ModelMetrics::UnloadReason::kIdle      ? "idle"
                    : reason == ModelMetrics::UnloadReason::kEvicted ? "evicted"
                                                                     : "admin";
  log::Info("unloaded model '", e.config.id, "' (", why, "), freed ", MiB(freed), " in ",
            static_cast<long long>(Seconds(took) * 1000), " ms");
}

void ModelManager::UnloadIdleLocked(std::unique_lock<std::mutex>& lock, SteadyTime now) {
  if (options_.idle_unload.count() <= 0 || draining_) return;
  for (auto& e : entries_) {
    if (e->state == ModelState::kLoaded && !e->busy() &&
        now - e->last_used >= options_.idle_unload) {
      UnloadLocked(lock, *e, ModelMetrics::UnloadReason::kIdle);
    }
  }
}

// Starts loading the model whose request has waited longest, among those that fit (after
// evicting idle models, least recently used first). Models that do not fit yet wait for a
// running request to end.
bool ModelManager::StartLoadLocked(std::unique_lock<std::mutex>& lock) {
  if (loading_ || stop_) return false;
  if (loader_.joinable()) {
    // The last load's thread may still be running its grants, which take this lock (a lease
    // released): join it with the lock released, never under it, then start over.
    std::thread last = std::move(loader_);
    lock.unlock();
    last.join();
    lock.lock();
    return true;
  }
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i]->state == ModelState::kUnloaded && !entries_[i]->waiters.empty()) {
      candidates.push_back(i);
    }
  }
  std::sort(candidates.begin(), candidates.end(), [this](std::size_t a, std::size_t b) {
    return entries_[a]->waiters.front().since < entries_[b]->waiters.front().since;
  });
  const SteadyTime now = clock_.Now();
  for (std::size_t i : candidates) {
    Entry& e = *entries_[i];
    auto victims = PlanEvictionLocked(e.need, /*evict_busy=*/false);
    if (!victims) {
      // Only the longest-waiting model may close others, so switches happen one at a time.
      if (i == candidates.front() && options_.switch_after.count() > 0 &&
          now - e.waiters.front().since >= options_.switch_after) {
        CloseForLocked(e, now);
      }
      continue;
    }
    for (const std::string& id : *victims) {
      log::Info("evicting model '", id, "' (least recently used) to make room for '", e.config.id,
                "'");
      UnloadLocked(lock, *entries_[Find(id)], ModelMetrics::UnloadReason::kEvicted);
    }
    // The lock was released while unloading: start over with what holds now.
    if (!victims->empty()) return true;
    e.state = ModelState::kLoading;
    e.bytes = e.need;
    e.metrics->SetMemoryBytes(e.bytes);
    loading_ = true;
    const SteadyTime started = clock_.Now();
    load_started_ = started;
    log::Info("loading model '", e.config.id, "' (needs ", MiB(e.need), ", ", MiB(UsedLocked()),
              " of the budget in use with it)");
    loader_ = std::thread([this, i, started] {
      Entry& entry = *entries_[i];
      FinishLoad(i, load_(entry.config, *entry.metrics), started);
    });
    return false;
  }
  return false;
}

void ModelManager::FinishLoad(std::size_t index, Result<LoadedModel> loaded, SteadyTime started) {
  Pending pending;
  {
    std::lock_guard lock(mu_);
    loading_ = false;
    Entry& e = *entries_[index];
    const SteadyTime now = clock_.Now();
    loaded_ns_ += (now - started).count();
    load_started_.reset();
    e.metrics->RecordLoad(loaded.has_value(), Seconds(now - started));
    if (loaded) {
      e.state = ModelState::kLoaded;
      e.scheduler = std::move(loaded->scheduler);
      e.bytes = loaded->bytes > 0 ? loaded->bytes : e.config.estimate_bytes;
      e.need = e.bytes;
      e.last_used = now;
      e.loaded_at = now;
      e.metrics->SetLoaded(true);
      e.metrics->SetMemoryBytes(e.bytes);
      log::Info("model '", e.config.id, "' loaded in ",
                static_cast<long long>(Seconds(now - started) * 1000), " ms, holding ",
                MiB(e.bytes));
      GrantWaitersLocked(index, now, /*cold=*/true, pending);
    } else {
      e.state = ModelState::kUnloaded;
      e.bytes = 0;
      e.metrics->SetMemoryBytes(0);
      log::Error("cannot load model '", e.config.id, "': ", loaded.error().message);
      Error error{ErrorCode::kUnavailable,
                  StrCat("cannot load model '", e.config.id, "': ", loaded.error().message,
                         " (the next request retries)"),
                  ""};
      FailWaiters(e.waiters, error, pending);
    }
    e.waiters.clear();
  }
  wake_.notify_all();
  idle_.notify_all();
  for (auto& fn : pending) fn();
}

void ModelManager::GrantWaitersLocked(std::size_t index, SteadyTime now, bool cold,
                                      Pending& pending) {
  Entry& e = *entries_[index];
  for (Waiter& w : e.waiters) {
    if (w.done) {
      ++e.leases;
      std::optional<double> cold_start;
      if (cold) cold_start = Seconds(now - w.since);
      pending.push_back([this, index, s = e.scheduler.get(), done = std::move(w.done), cold_start] {
        done(ModelLease(this, index, s, cold_start));
      });
    } else {
      pending.push_back([done = std::move(w.loaded)] { done({}); });
    }
  }
  e.waiters.clear();
}

void ModelManager::CloseForLocked(const Entry& waiting, SteadyTime now) {
  // Which models would have to go if every loaded one were idle.
  auto victims = PlanEvictionLocked(waiting.need, /*evict_busy=*/true);
  if (!victims) return;  // a load or unload in progress holds the room: try again later
  for (const std::string& id : *victims) {
    Entry& v = *entries_[Find(id)];
    if (v.closed || !v.busy() || now - v.loaded_at < options_.switch_after) continue;
    v.closed = true;
    log::Info("closing model '", id, "' to new requests: '", waiting.config.id, "' has waited ",
              static_cast<long long>(Seconds(now - waiting.waiters.front().since) * 1000),
              " ms for its memory; ", v.leases, " running request(s) finish first");
  }
}

void ModelManager::ReopenLocked(Pending& pending) {
  for (const auto& e : entries_) {
    if (e->state == ModelState::kUnloaded && !e->waiters.empty() && !draining_) return;
  }
  const SteadyTime now = clock_.Now();
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = *entries_[i];
    if (!e.closed || e.state != ModelState::kLoaded) continue;
    e.closed = false;
    log::Info("reopening model '", e.config.id, "': no other model waits for its memory now");
    GrantWaitersLocked(i, now, /*cold=*/false, pending);
  }
}

std::optional<SteadyTime> ModelManager::NextWakeLocked() const {
  std::optional<SteadyTime> next;
  auto consider = [&next](SteadyTime t) {
    if (!next || t < *next) next = t;
  };
  const SteadyTime now = clock_.Now();
  bool someone_waits = false;
  for (const auto& e : entries_) {
    someone_waits |= e->state == ModelState::kUnloaded && !e->waiters.empty();
  }
  for (const auto& e : entries_) {
    for (const Waiter& w : e->waiters) consider(w.deadline);
    if (options_.switch_after.count() > 0 && someone_waits && e->state == ModelState::kLoaded &&
        !e->closed && e->loaded_at + options_.switch_after > now) {
      consider(e->loaded_at + options_.switch_after);  // when it may be closed
    }
    // When a waiting model may start closing others (only a future instant: a switch already
    // due waits for a lease to end, which wakes the manager).
    if (options_.switch_after.count() > 0 && e->state == ModelState::kUnloaded &&
        !e->waiters.empty() && e->waiters.front().since + options_.switch_after > now) {
      consider(e->waiters.front().since + options_.switch_after);
    }
    if (options_.idle_unload.count() > 0 && e->state == ModelState::kLoaded && !e->busy()) {
      consider(e->last_used + options_.idle_unload);
    }
  }
  return next;
}

void ModelManager::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    Pending pending;
    ExpireWaitersLocked(clock_.Now(), pending);
    for (auto& e : entries_) {
      if (e->unload_waiters.empty()) continue;
      if (e->state == ModelState::kLoaded && !e->busy()) {
        UnloadLocked(lock, *e, ModelMetrics::UnloadReason::kAdmin);
      }
      Status result = e->state == ModelState::kUnloaded
                          ? Status{}
                          : Status(ResourceExhausted(StrCat(
                                "model '", e->config.id,
                                "' got requests before it could be unloaded; retry when idle")));
      for (auto& done : e->unload_waiters) {
        pending.push_back([done = std::move(done), result] { done(result); });
      }
      e->unload_waiters.clear();
    }
    ReopenLocked(pending);
    UnloadIdleLocked(lock, clock_.Now());
    const bool again = !draining_ && StartLoadLocked(lock);
    if (!pending.empty() || again) {
      lock.unlock();
      for (auto& fn : pending) fn();
      lock.lock();
      continue;
    }
    idle_.notify_all();
    const auto next = NextWakeLocked();
    const SteadyTime now = clock_.Now();
    auto wait = std::chrono::nanoseconds(std::chrono::seconds(1));
    if (next)
      wait = std::clamp<std::chrono::nanoseconds>(*next - now, std::chrono::milliseconds(1), wait);
    wake_.wait_for(lock, wait);
  }
}

std::vector<ModelStatus> ModelManager::List() const {
  std::lock_guard lock(mu_);
  std::vector<ModelStatus> out;
  for (const auto& e : entries_) {
    ModelStatus s;
    s.id = e->config.id;
    s.state = e->state;
    if (e->state == ModelState::kLoaded) s.info = e->scheduler->model();
    s.ctx_per_seq = s.info ? s.info->n_ctx_per_seq : e->config.ctx_per_seq;
    s.bytes = e->bytes;
    s.estimate_bytes = e->config.estimate_bytes;
    out.push_back(std::move(s));
  }
  return out;
}

std::int64_t ModelManager::BusyNs() const {
  std::lock_guard lock(mu_);
  std::int64_t busy = retired_busy_ns_;
  for (const auto& e : entries_) {
    if (e->state == ModelState::kLoaded && e->scheduler) busy += e->scheduler->busy_ns();
  }
  return busy;
}

std::int64_t ModelManager::LoadingNs() const {
  std::lock_guard lock(mu_);
  return loaded_ns_ + (load_started_ ? (clock_.Now() - *load_started_).count() : 0);
}

std::vector<scheduler::SchedulerSnapshot> ModelManager::Snapshots() const {
  std::lock_guard lock(mu_);
  std::vector<scheduler::SchedulerSnapshot> out;
  for (const auto& e : entries_) {
    if (e->state == ModelState::kLoaded) out.push_back(e->scheduler->Snapshot());
  }
  return out;
}

std::optional<scheduler::SchedulerSnapshot> ModelManager::Snapshot(const std::string& id) const {
  const int i = Find(id);
  if (i < 0) return std::nullopt;
  std::lock_guard lock(mu_);
  const Entry& e = *entries_[i];
  if (e.state != ModelState::kLoaded) return std::nullopt;
  return e.scheduler->Snapshot();
}

void ModelManager::BeginDrain() {
  Pending pending;
  {
    std::lock_guard lock(mu_);
    draining_ = true;
    ReopenLocked(pending);  // requests held back by a switch are served, not failed
    for (auto& e : entries_) {
      if (e->state == ModelState::kLoading) continue;  // its waiters get the model
      FailWaiters(
          e->waiters,
          {ErrorCode::kUnavailable, "server is shutting down; retry on another replica", ""},
          pending);
    }
  }
  for (auto& fn : pending) fn();
  wake_.notify_all();
  idle_.notify_all();
}

bool ModelManager::WaitIdle(SteadyTime deadline) {
  std::unique_lock lock(mu_);
  auto busy = [this] {
    if (loading_) return true;
    for (const auto& e : entries_) {
      if (e->leases > 0 || !e->waiters.empty()) return true;
    }
    return false;
  };
  while (busy()) {
    const SteadyTime now = clock_.Now();
    if (now >= deadline) return false;
    idle_.wait_for(
        lock, std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(50)));
  }
  return true;
}

void ModelManager::AbortAll() {
  Pending pending;
  {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      if (e->state == ModelState::kLoaded) e->scheduler->AbortAll();
      FailWaiters(e->waiters,
                  {ErrorCode::kUnavailable, "server is shutting down; the request was stopped", ""},
                  pending);
    }
  }
  for (auto& fn : pending) fn();
  idle_.notify_all();
}

}  // namespace ember::server
