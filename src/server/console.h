// What the console (GET /admin/requests, /admin/events) sees: the ring of recent requests
// (request_log.h), the requests in flight now, and the live event feed (event_feed.h) with a
// ticker that publishes a snapshot of models, slots, KV use, in-flight requests and queues.
// Owned by App; the ticker thread runs only between Start and Stop, and builds a snapshot only
// while someone is subscribed.
//
// Threads: Begin/End and LiveRequest's atomics from HTTP strands; Snapshot from the ticker
// thread or a strand; all locking is in here and in its parts.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "server/event_feed.h"
#include "server/history.h"
#include "server/request_log.h"

namespace ember::server {

class ModelManager;

struct ConsoleOptions {
  std::size_t ring_size = 2000;              // requests kept for GET /admin/requests
  bool keep_text = false;                    // --console-keep-text: prompts and outputs in the ring
  int trace_steps = 128;                     // steps kept per request timeline (0: none)
  std::chrono::milliseconds interval{1000};  // snapshot period of /admin/events
  std::size_t client_buffer_bytes = 1 << 20;  // per feed client; beyond it the client is dropped
};

enum class LiveState { kStarting, kWaitingModel, kQueued, kRunning, kDecoding };
std::string_view LiveStateName(LiveState state);

// One request in flight, as the live view shows it. The owning Generation writes; snapshots
// read (relaxed atomics: a snapshot may be a step behind).
struct LiveRequest {
  std::string id;
  std::string tenant;
  std::string model;
  std::string endpoint;
  int priority = 0;
  SteadyTime arrival{};
  std::atomic<LiveState> state{LiveState::kStarting};
  std::atomic<std::int64_t> prompt_tokens{0};
  std::atomic<int> prefilled{0};        // prompt tokens in the KV cache: the scheduler stores it
  std::atomic<std::int64_t> tokens{0};  // output tokens so far
  std::atomic<std::int64_t> first_token_ns{-1};  // since arrival; -1 before the first
};

class Console {
 public:
  // `history` (the charts' points; may be null) gets a sample of the queues and KV use at
  // every tick, and is rolled by it.
  explicit Console(ConsoleOptions options, History* history = nullptr);
  ~Console();  // Stop()s

  const ConsoleOptions& options() const { return options_; }
  RequestLog& log() { return log_; }
  EventFeed& feed() { return feed_; }

  // A request in flight from now until End.
  std::shared_ptr<LiveRequest> Begin(LiveRequest init);
  void End(const std::shared_ptr<LiveRequest>& live);

  // GET /admin/requests/{id} of a request still in flight: what the HTTP side knows so far
  // (its steps come with its record, at completion); "" when no request in flight has the id.
  std::string LiveRecordJson(const std::string& id) const;

  // The current state as one JSON object (the "snapshot" event); `models` may be null.
  std::string Snapshot(const ModelManager* models) const;

  // Publishes a snapshot every interval while anyone subscribes, and "model" events when a
  // model's state changes between two of them. `models` is read only between Start and Stop.
  void Start(std::function<const ModelManager*()> models);
  void Stop();

 private:
  void Tick(const ModelManager* models);

  // The history's sample at a tick: requests waiting for a model or a slot, and the fullest
  // KV cache.
  void SampleHistory(const ModelManager* models);

  const ConsoleOptions options_;
  History* const history_;
  RequestLog log_;
  EventFeed feed_;
  mutable std::mutex live_mu_;
  std::map<const LiveRequest*, std::shared_ptr<LiveRequest>> live_;  // GUARDED_BY(live_mu_)
  std::map<std::string, std::string> model_states_;  // ticker thread only: last seen
  std::mutex ticker_mu_;
  std::condition_variable ticker_wake_;
  bool stop_ = false;  // GUARDED_BY(ticker_mu_)
  std::thread ticker_;
};

}  // namespace ember::server
