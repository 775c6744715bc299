// The models one server serves (--model, repeated) and their lifecycle: each is loaded on
// first use or at start-up (--preload), unloaded after --idle-unload without requests, and
// evicted least-recently-used first when another model needs room in --memory-budget.
//
// Threads: Acquire/Load/Unload/List/Snapshots are called from HTTP threads and never block on
// a load; loads run on a loader thread, one at a time, and unloads on the manager's thread.
// A request holds a ModelLease from the moment its model is loaded for it until its response
// ends; a model with a lease or a waiting request is never unloaded.
//
// Switching (ManagerOptions::switch_after): when the oldest request for an unloaded model has
// waited that long and busy models hold the memory it needs, those models are *closed*: new
// requests for them wait in the manager (within their queue timeout) instead of starting,
// their running requests finish, and they are evicted for the waiting model. Their held-back
// requests then wait their turn the same way, so under steady traffic to every model each
// gets the memory in turn instead of the loaded one starving the rest. A model is not closed
// before it has been loaded for switch_after, so each switch buys at least that long. Callbacks run
// on the manager's or the loader's thread (or at once on the caller's when the answer is known);
// they must only hand the result over (post to a strand), never block.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/error.h"
#include "engine/llama/llama_engine.h"
#include "scheduler/scheduler.h"
#include "server/server_metrics.h"

namespace ember::server {

// One --model value: "PATH" (id: the file name without .gguf) or "ID=PATH".
struct ModelSpec {
  std::string id;
  std::string path;
};
// Parses every --model value; `model_id` (--model-id) names the model when there is one.
// Errors: an empty value, id or path, an id with '/' or whitespace, duplicate ids,
// --model-id with several models.
[[nodiscard]] Result<std::vector<ModelSpec>> ParseModelSpecs(const std::vector<std::string>& values,
                                                             const std::string& model_id);

// A loaded model as far as the budget is concerned. Pure data for PlanEviction.
struct ResidentModel {
  std::string id;
  std::uint64_t bytes = 0;
  SteadyTime last_used{};
  bool busy = false;  // requests running, queued or waiting for it, or loading/unloading
};
// Which models to unload so that `need` more bytes fit in `budget` when `used` are already
// held: idle ones only, least recently used first, no more than necessary. Empty when it
// already fits; nullopt when even unloading every idle model would not make room.
// budget 0 = unlimited.
[[nodiscard]] std::optional<std::vector<std::string>> PlanEviction(
    std::vector<ResidentModel> resident, std::uint64_t used, std::uint64_t need,
    std::uint64_t budget);

enum class ModelState { kUnloaded, kLoading, kLoaded, kUnloading };
std::string_view ModelStateName(ModelState state);

// What the manager needs to know about one model before loading it.
struct ModelConfig {
  std::string id;
  engine::LlamaOptions llama;
  // engine::EstimateLlamaMemory(llama).total() + prefix_cache_bytes
  std::uint64_t estimate_bytes = 0;
  std::uint64_t prefix_cache_bytes = 0;  // the RAM tier's bound, reserved in the budget
  int ctx_per_seq = 0;                   // for /v1/models while not loaded
  bool preload = false;
};

// What a load produces: the running scheduler and the bytes it holds (measured once loaded).
struct LoadedModel {
  std::unique_ptr<scheduler::Scheduler> scheduler;
  std::uint64_t bytes = 0;
};
// Loads one model (on the loader thread). Injected: server.cc loads with libllama, tests with
// the fake engine.
using LoadFn = std::function<Result<LoadedModel>(const ModelConfig&, ModelMetrics&)>;

struct ManagerOptions {
  std::uint64_t memory_budget = 0;            // 0 = unlimited
  std::chrono::milliseconds idle_unload{0};   // 0 = never
  std::chrono::milliseconds switch_after{0};  // 0 = never close a busy model (see above)
};

class ModelManager;

// Keeps a loaded model loaded; move-only. Destroying it ends the request's claim.
class ModelLease {
 public:
  ModelLease(ModelLease&& other) noexcept;
  ModelLease& operator=(ModelLease&&) = delete;
  ~ModelLease();
  scheduler::Scheduler& scheduler() const { return *scheduler_; }
  // Seconds this request waited for its model to load; nullopt when it was loaded already.
  std::optional<double> cold_start_seconds() const { return cold_start_; }

 private:
  friend class ModelManager;
  ModelLease(ModelManager* manager, std::size_t index, scheduler::Scheduler* scheduler,
             std::optional<double> cold_start)
      : manager_(manager), index_(index), scheduler_(scheduler), cold_start_(cold_start) {}
  ModelManager* manager_;
  std::size_t index_;
  scheduler::Scheduler* scheduler_;
  std::optional<double> cold_start_;
};

struct ModelStatus {
  std::string id;
  ModelState state = ModelState::kUnloaded;
  std::optional<engine::ModelInfo> info;  // set while loaded
  int ctx_per_seq = 0;                    // from the options when not loaded
  std::uint64_t bytes = 0;                // held against the budget now
  std::uint64_t estimate_bytes = 0;
};

class ModelManager {
 public:
  ModelManager(ManagerOptions options, std::vector<ModelConfig> models, LoadFn load,
               ServerMetrics& metrics, Clock& clock);
  ~ModelManager();  // fails waiting requests, waits for a load in progress, unloads everything

  using LeaseCallback = std::function<void(Result<ModelLease>)>;
  using StatusCallback = std::function<void(Status)>;

  // The id requests get when they name no model: the first --model.
  const std::string& default_model() const;
  bool Has(const std::string& id) const;
  // Error (InvalidArgument, param "model") when the model's estimate exceeds the budget: it can
  // never be loaded, whatever is unloaded.
  [[nodiscard]] Status CheckFits(const std::string& id) const;

  // Calls `done` with a lease once `id` is loaded: at once when it is, else after a load (and
  // any evictions it needs). Fails with NotFound, with DeadlineExceeded when `deadline` passes
  // first, with Unavailable when the load fails or the server drains. Returns a ticket for
  // Abandon while the request waits; 0 when `done` ran before Acquire returned.
  std::uint64_t Acquire(const std::string& id, SteadyTime deadline, LeaseCallback done);
  // The client of a waiting request left: the request stops waiting (its callback runs with
  // Unavailable), so it neither keeps its model loaded nor asks for a load. A load already
  // running goes on. No-op once the request was answered.
  void Abandon(std::uint64_t ticket);
  // Admin: load ahead of traffic / unload now. Unload fails (ResourceExhausted) while the
  // model has requests.
  void Load(const std::string& id, StatusCallback done);
  void Unload(const std::string& id, StatusCallback done);

  std::vector<ModelStatus> List() const;
  // Scheduler snapshots of the loaded models.
  std::vector<scheduler::SchedulerSnapshot> Snapshots() const;
  std::optional<scheduler::SchedulerSnapshot> Snapshot(const std::string& id) const;

  // Machine time since start, for the ledger's intervals: engine step time of every model
  // (loaded now or before), and time spent loading models (a load in progress included).
  std::int64_t BusyNs() const;
  std::int64_t LoadingNs() const;

  // Drain: refuse new requests and loads; requests already waiting for a model still get it.
  void BeginDrain();
  // Waits until no request holds or waits for a model and no load runs; false at `deadline`.
  bool WaitIdle(SteadyTime deadline);
  // Cancels every running and queued request and fails every waiting one.
  void AbortAll();

 private:
  friend class ModelLease;
  struct Waiter {
    std::uint64_t ticket = 0;  // for Abandon; 0 for an admin load
    SteadyTime since;
    SteadyTime deadline;
    LeaseCallback done;  // null for an admin load
    StatusCallback loaded;
  };
  struct Entry {
    ModelConfig config;
    ModelMetrics* metrics = nullptr;
    ModelState state = ModelState::kUnloaded;
    std::unique_ptr<scheduler::Scheduler> scheduler;
    std::uint64_t bytes = 0;  // held against the budget
    // What a load needs: the estimate, then what the last load measured (a load that held
    // more than estimated, e.g. repacked weights beside the mapped file, is planned for
    // as it really is next time).
    std::uint64_t need = 0;
    int leases = 0;
    SteadyTime last_used{};
    std::vector<Waiter> waiters;
    std::vector<StatusCallback> unload_waiters;
    // Loaded but closed to new requests so that another model can have its memory (they
    // wait in `waiters`, which then do not keep it loaded).
    bool closed = false;
    SteadyTime loaded_at{};  // a model keeps its memory at least switch_after once loaded
    bool busy() const {
      return leases > 0 || (!waiters.empty() && !closed) || state == ModelState::kLoading ||
             state == ModelState::kUnloading;
    }
  };
  using Pending = std::vector<std::function<void()>>;  // callbacks to run after unlocking
  // Fails every waiter in `waiters` with `error` (callbacks into `pending`) and clears it.
  static void FailWaiters(std::vector<Waiter>& waiters, const Error& error, Pending& pending);

  void Run();
  void Release(std::size_t index);
  int Find(const std::string& id) const;  // -1 when unknown
  std::uint64_t UsedLocked() const;
  // PlanEviction over the loaded models for `need` more bytes. Models loading or unloading are
  // never victims; busy ones only when `evict_busy` (planning a switch).
  std::optional<std::vector<std::string>> PlanEvictionLocked(std::uint64_t need,
                                                             bool evict_busy) const;
  void ExpireWaitersLocked(SteadyTime now, Pending& pending);
  void UnloadIdleLocked(std::unique_lock<std::mutex>& lock, SteadyTime now);
  // Returns true when it released the lock (it evicted models, or joined the last load's
  // thread): plan again.
  bool StartLoadLocked(std::unique_lock<std::mutex>& lock);
  // Closes the busy models standing in the way of `waiting` (see Switching above).
  void CloseForLocked(const Entry& waiting, SteadyTime now);
  // Reopens closed models no unloaded model waits for any more; their held-back requests get
  // leases (callbacks into `pending`).
  void ReopenLocked(Pending& pending);
  // Leases for every request waiting on a loaded model; `cold` = they waited for its load.
  void GrantWaitersLocked(std::size_t index, SteadyTime now, bool cold, Pending& pending);
  void UnloadLocked(std::unique_lock<std::mutex>& lock, Entry& entry,
                    ModelMetrics::UnloadReason reason);
  void FinishLoad(std::size_t index, Result<LoadedModel> loaded, SteadyTime started);
  std::optional<SteadyTime> NextWakeLocked() const;

  ManagerOptions options_;
  LoadFn load_;
  Clock& clock_;
  std::vector<std::unique_ptr<Entry>> entries_;  // fixed after construction

  mutable std::mutex mu_;
  std::condition_variable wake_;            // the manager thread
  std::condition_variable idle_;            // WaitIdle
  bool stop_ = false;                       // GUARDED_BY(mu_)
  bool draining_ = false;                   // GUARDED_BY(mu_)
  bool loading_ = false;                    // GUARDED_BY(mu_): a load thread runs
  std::uint64_t next_ticket_ = 1;           // GUARDED_BY(mu_)
  std::int64_t retired_busy_ns_ = 0;        // GUARDED_BY(mu_): of unloaded schedulers
  std::int64_t loaded_ns_ = 0;              // GUARDED_BY(mu_): finished loads
  std::optional<SteadyTime> load_started_;  // GUARDED_BY(mu_): the load running
  std::thread loader_;  // the current (or last) load; joined by Run, never under mu_
  std::thread thread_;  // Run()
};

}  // namespace ember::server
