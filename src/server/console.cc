#include "server/console.h"

#include <algorithm>
#include <charconv>
#include <utility>
#include <vector>

#include "api/openai.h"
#include "common/log.h"
#include "server/models.h"

namespace ember::server {

std::string_view LiveStateName(LiveState state) {
  switch (state) {
    case LiveState::kStarting:
      return "starting";
    case LiveState::kWaitingModel:
      return "waiting_for_model";
    case LiveState::kQueued:
      return "queued";
    case LiveState::kRunning:
      return "prefill";
    case LiveState::kDecoding:
      return "decoding";
  }
  return "starting";
}

Console::Console(ConsoleOptions options, History* history)
    : options_(options),
      history_(history),
      log_(options.ring_size),
      feed_(options.client_buffer_bytes) {}

Console::~Console() { Stop(); }

std::shared_ptr<LiveRequest> Console::Begin(LiveRequest init) {
  auto live = std::make_shared<LiveRequest>();
  live->id = std::move(init.id);
  live->tenant = std::move(init.tenant);
  live->model = std::move(init.model);
  live->endpoint = std::move(init.endpoint);
  live->priority = init.priority;
  live->arrival = init.arrival;
  std::lock_guard lock(live_mu_);
  live_.emplace(live.get(), live);
  return live;
}

void Console::End(const std::shared_ptr<LiveRequest>& live) {
  if (!live) return;
  std::lock_guard lock(live_mu_);
  live_.erase(live.get());
}

namespace {

void Quoted(std::string& out, std::string_view text) {
  out += '"';
  api::AppendJsonEscaped(out, text);
  out += '"';
}

}  // namespace

std::string Console::Snapshot(const ModelManager* models) const {
  const SteadyTime now = Clock::Real().Now();
  const auto unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  std::string out = StrCat("{\"time_unix_ms\":", unix_ms, ",\"models\":[");
  if (models != nullptr) {
    bool first = true;
    for (const ModelStatus& m : models->List()) {
      out += first ? "{" : ",{";
      first = false;
      out += "\"id\":";
      Quoted(out, m.id);
      out += StrCat(",\"state\":\"", ModelStateName(m.state), "\",\"memory_bytes\":", m.bytes);
      if (auto snap = models->Snapshot(m.id)) {
        out += StrCat(",\"slots_total\":", m.info ? m.info->n_parallel : 0,
                      ",\"running\":", snap->running, ",\"waiting\":", snap->waiting,
                      ",\"kv_cells_used\":", snap->kv_cells_used,
                      ",\"kv_cells_total\":", snap->kv_cells_total);
      }
      out += '}';
    }
  }
  out += "],\"requests\":[";
  // (tenant, priority) -> requests waiting for their model or a slot.
  std::map<std::pair<std::string, int>, int> queues;
  {
    std::lock_guard lock(live_mu_);
    bool first = true;
    for (const auto& [key, r] : live_) {
      const LiveState state = r->state.load(std::memory_order_relaxed);
      const std::int64_t tokens = r->tokens.load(std::memory_order_relaxed);
      const std::int64_t ttft = r->first_token_ns.load(std::memory_order_relaxed);
      const std::int64_t age_ns = (now - r->arrival).count();
      if (state == LiveState::kWaitingModel || state == LiveState::kQueued) {
        ++queues[{r->tenant, r->priority}];
      }
      out += first ? "{" : ",{";
      first = false;
      out += "\"id\":";
      Quoted(out, r->id);
      out += ",\"tenant\":";
      Quoted(out, r->tenant);
      out += ",\"model\":";
      Quoted(out, r->model);
      out += StrCat(",\"endpoint\":\"", r->endpoint, "\",\"state\":\"", LiveStateName(state),
                    "\",\"age_ms\":", age_ns / 1'000'000,
                    ",\"prompt_tokens\":", r->prompt_tokens.load(std::memory_order_relaxed),
                    ",\"prefilled\":", r->prefilled.load(std::memory_order_relaxed),
                    ",\"tokens\":", tokens, ",\"ttft_ms\":");
      if (ttft >= 0) {
        out += StrCat(ttft / 1'000'000);
        // Output tokens per second since the first one.
        const std::int64_t decoding_ns = age_ns - ttft;
        out += StrCat(",\"tokens_per_s\":",
                      tokens > 1 && decoding_ns > 0
                          ? static_cast<std::int64_t>((tokens - 1) * 1e9 / decoding_ns)
                          : 0);
      } else {
        out += "null,\"tokens_per_s\":null";
      }
      out += '}';
    }
  }
  out += "],\"queues\":[";
  bool first = true;
  for (const auto& [key, waiting] : queues) {
    out += first ? "{" : ",{";
    first = false;
    out += "\"tenant\":";
    Quoted(out, key.first);
    out += StrCat(",\"priority\":", key.second, ",\"waiting\":", waiting, "}");
  }
  out += StrCat("],\"feed\":{\"subscribers\":", feed_.subscribers(),
                ",\"dropped_total\":", feed_.dropped_total(), "}}");
  return out;
}

std::string Console::LiveRecordJson(const std::string& id) const {
  std::shared_ptr<LiveRequest> r;
  {
    std::lock_guard lock(live_mu_);
    for (const auto& [key, live] : live_) {
      if (live->id == id) r = live;
    }
  }
  if (!r) return "";
  const std::int64_t age_us = (Clock::Real().Now() - r->arrival).count() / 1000;
  const std::int64_t ttft = r->first_token_ns.load(std::memory_order_relaxed);
  std::string out = "{\"id\":";
  Quoted(out, r->id);
  out += ",\"in_flight\":true,\"tenant\":";
  Quoted(out, r->tenant);
  out += ",\"model\":";
  Quoted(out, r->model);
  out += StrCat(",\"endpoint\":\"", r->endpoint, "\",\"state\":\"",
                LiveStateName(r->state.load(std::memory_order_relaxed)), "\",\"outcome\":null",
                ",\"duration_us\":", age_us,
                ",\"usage\":{\"prompt_tokens\":", r->prompt_tokens.load(std::memory_order_relaxed),
                ",\"completion_tokens\":", r->tokens.load(std::memory_order_relaxed),
                "},\"timeline\":[{\"event\":\"arrival\",\"at_us\":0}");
  if (ttft >= 0) out += StrCat(",{\"event\":\"first_token\",\"at_us\":", ttft / 1000, "}");
  out += StrCat(",{\"event\":\"now\",\"at_us\":", age_us, "}]}");
  return out;
}

void Console::SampleHistory(const ModelManager* models) {
  int queued = 0;
  {
    std::lock_guard lock(live_mu_);
    for (const auto& [key, r] : live_) {
      const LiveState state = r->state.load(std::memory_order_relaxed);
      if (state == LiveState::kWaitingModel || state == LiveState::kQueued) ++queued;
    }
  }
  double kv_used = 0;
  if (models != nullptr) {
    for (const ModelStatus& m : models->List()) {
      if (auto snap = models->Snapshot(m.id); snap && snap->kv_cells_total > 0) {
        kv_used = std::max(kv_used, static_cast<double>(snap->kv_cells_used) /
                                        static_cast<double>(snap->kv_cells_total));
      }
    }
  }
  history_->Sample(queued, kv_used);
  history_->Roll(std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count());
}

void Console::Tick(const ModelManager* models) {
  if (history_ != nullptr) SampleHistory(models);
  if (models == nullptr) return;
  const bool watched = feed_.subscribers() > 0;
  // Model state changes since the last tick: load, eviction, unload as they happen (to the
  // tick's resolution). Tracked while nobody watches too, so a change right after a client
  // subscribes is compared with the state before it.
  for (const ModelStatus& m : models->List()) {
    const std::string state(ModelStateName(m.state));
    auto [it, fresh] = model_states_.try_emplace(m.id, state);
    if (!fresh && it->second != state) {
      std::string event = "{\"model\":";
      Quoted(event, m.id);
      event += StrCat(",\"from\":\"", it->second, "\",\"to\":\"", state, "\"}");
      if (watched) feed_.Publish("model", event);
      it->second = state;
    }
  }
  if (watched) feed_.Publish("snapshot", Snapshot(models));
}

void Console::Start(std::function<const ModelManager*()> models) {
  {
    std::lock_guard lock(ticker_mu_);
    stop_ = false;
  }
  ticker_ = std::thread([this, models = std::move(models)] {
    std::unique_lock lock(ticker_mu_);
    while (!stop_) {
      lock.unlock();
      Tick(models());
      lock.lock();
      ticker_wake_.wait_for(lock, options_.interval);
    }
  });
}

void Console::Stop() {
  {
    std::lock_guard lock(ticker_mu_);
    stop_ = true;
  }
  ticker_wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

}  // namespace ember::server
