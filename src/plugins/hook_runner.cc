#include "plugins/hook_runner.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "common/log.h"

namespace ember::plugins {

std::string_view HookName(Hook hook) {
  switch (hook) {
    case Hook::kRequest:
      return "request";
    case Hook::kResponseHeaders:
      return "response_headers";
    case Hook::kResponseBody:
      return "response_body";
    case Hook::kComplete:
      return "complete";
    case Hook::kTick:
      return "tick";
  }
  return "unknown";
}

struct Flow {
  std::size_t worker = 0;
  RequestData request;  // as the chain left it: what later hooks' properties answer
  std::vector<std::pair<std::string, std::uint32_t>> contexts;  // plugin, its stream context
  bool response_hooks = false;  // a plugin of contexts has a response callback
};

struct HookRunner::Impl {
  struct Job {
    std::string route;
    RequestData request;
    std::function<void(RequestVerdict)> done;
  };
  // One worker's instances, by plugin name.
  using Instances = std::map<std::string, std::unique_ptr<Instance>, std::less<>>;

  PluginsConfig config;
  HookMetrics* metrics = nullptr;
  std::map<std::string, std::size_t, std::less<>> index;  // plugin name -> config position

  // Runs `call` and reports how long it took and whether it failed.
  template <typename F>
  auto Timed(std::string_view plugin, Hook hook, F&& call) {
    const auto start = std::chrono::steady_clock::now();
    auto result = call();
    if (metrics) {
      const auto took = std::chrono::steady_clock::now() - start;
      metrics->Call(index.find(plugin)->second, hook,
                    std::chrono::duration_cast<std::chrono::nanoseconds>(took),
                    result ? nullptr : &result.error());
    }
    return result;
  }
  void Count(std::string_view plugin, bool rejected) {
    if (!metrics) return;
    const std::size_t i = index.find(plugin)->second;
    rejected ? metrics->Rejected(i) : metrics->StreamClosed(i);
  }
  std::map<std::string, std::shared_ptr<const Plugin>, std::less<>> compiled;
  std::vector<Instances> instances;  // one per worker, touched only by that worker
  std::vector<std::thread> workers;

  std::mutex mu;
  std::condition_variable ready;
  std::deque<Job> queue;  // GUARDED_BY(mu)
  // Per worker: a request's later hooks, for the instances holding its contexts, in order.
  std::vector<std::deque<std::function<void()>>> pinned;  // GUARDED_BY(mu)
  bool stopping = false;                                  // GUARDED_BY(mu)

  // Runs the ticks of this worker's instances that are due (proxy_on_tick: each worker ticks
  // its own instances, as each of Envoy's worker threads does) and returns when the next is.
  using TimePoint = std::chrono::steady_clock::time_point;
  TimePoint Tick(std::size_t worker, std::map<std::string, TimePoint, std::less<>>& next_tick) {
    const TimePoint now = std::chrono::steady_clock::now();
    TimePoint next = TimePoint::max();
    for (auto& [name, instance] : instances[worker]) {
      const std::chrono::milliseconds period = instance->TickPeriod();
      if (period.count() == 0) {
        next_tick.erase(name);
        continue;
      }
      auto [it, first] = next_tick.try_emplace(name, now + period);
      if (!first && it->second <= now) {
        auto ticked = Timed(name, Hook::kTick, [&] { return instance->OnTick(); });
        if (!ticked) {
          log::Warn(ticked.error().message, " [", FailureKindName(ticked.error().kind), "]");
        }
        // Late ticks are not made up: the next is a period from now.
        it->second = std::chrono::steady_clock::now() + period;
      }
      next = std::min(next, it->second);
    }
    return next;
  }

  void Work(std::size_t worker) {
    std::map<std::string, TimePoint, std::less<>> next_tick;
    for (;;) {
      Job job;
      std::function<void()> later;
      const TimePoint tick = Tick(worker, next_tick);
      {
        std::unique_lock lock(mu);
        auto woken = [&] { return stopping || !queue.empty() || !pinned[worker].empty(); };
        if (tick == TimePoint::max()) {
          ready.wait(lock, woken);
        } else if (!ready.wait_until(lock, tick, woken)) {
          continue;  // a tick is due
        }
        // A started request's hooks first: they hold a client's answer or its usage export.
        if (!pinned[worker].empty()) {
          later = std::move(pinned[worker].front());
          pinned[worker].pop_front();
        } else if (!queue.empty()) {
          job = std::move(queue.front());
          queue.pop_front();
        } else {
          return;
        }
      }
      if (later) {
        later();
        continue;
      }
      RequestVerdict verdict = Run(worker, job.route, std::move(job.request));
      job.done(std::move(verdict));
    }
  }

  void Pin(std::size_t worker, std::function<void()> task) {
    {
      std::lock_guard lock(mu);
      pinned[worker].push_back(std::move(task));
    }
    ready.notify_all();  // only `worker` may take it; the others go back to sleep
  }

  ResponseVerdict RunResponse(Flow& flow, ResponseData response, bool headers, bool body) {
    ResponseVerdict verdict;
    for (auto it = flow.contexts.rbegin(); it != flow.contexts.rend(); ++it) {
      const auto& [name, context] = *it;
      Instance& instance = *instances[flow.worker].find(name)->second;
      ResponseData before = response;
      PluginResult<ResponseOutcome> outcome = ResponseOutcome{};
      if (headers) {
        outcome = Timed(name, Hook::kResponseHeaders, [&] {
          return instance.OnResponseHeaders(context, flow.request, response);
        });
      }
      if (outcome && body) {
        auto body_outcome = Timed(name, Hook::kResponseBody, [&] {
          return instance.OnResponseBody(context, flow.request, response);
        });
        if (body_outcome) {
          body_outcome->headers_changed |= outcome->headers_changed;
          body_outcome->close_stream |= outcome->close_stream;
        }
        outcome = std::move(body_outcome);
      }
      if (outcome) {
        verdict.changed |= outcome->body_changed || outcome->headers_changed;
        if (outcome->close_stream && !verdict.close_stream) {
          verdict.close_stream = true;
          verdict.decided_by = name;
          Count(name, false);
        }
        continue;
      }
      log::Warn(outcome.error().message, " [", FailureKindName(outcome.error().kind), "]");
      response = std::move(before);  // what the failed call had changed is undone
      if (config.Find(name)->failure == FailurePolicy::kFailOpen) continue;
      verdict.failure = std::move(outcome.error());
      verdict.decided_by = name;
      break;
    }
    verdict.response = std::move(response);
    return verdict;
  }

  void RunComplete(Flow& flow, CompletionData completion) {
    flow.request.completion = std::move(completion);
    for (const auto& [name, context] : flow.contexts) {
      Instance& instance = *instances[flow.worker].find(name)->second;
      auto done =
          Timed(name, Hook::kComplete, [&] { return instance.OnComplete(context, flow.request); });
      if (!done) log::Warn(done.error().message, " [", FailureKindName(done.error().kind), "]");
    }
  }

  RequestVerdict Run(std::size_t worker, std::string_view route, RequestData request) {
    Instances& mine = instances[worker];
    RequestVerdict verdict;
    auto flow = std::make_shared<Flow>();
    flow->worker = worker;
    const Chain* chain = config.ChainFor(route, request.tenant);
    if (chain) {
      for (const std::string& name : chain->plugins) {
        const PluginEntry& entry = *config.Find(name);
        Instance& instance = *mine.find(name)->second;
        // A failed call's half-done changes are undone: fail-open goes on with the request as
        // the previous plugin left it.
        RequestData before = request;
        auto outcome = Timed(name, Hook::kRequest, [&] { return instance.OnRequest(request); });
        if (outcome) {
          flow->contexts.emplace_back(name, outcome->context_id);
          flow->response_hooks |= instance.HasResponseHooks();
          verdict.body_changed |= outcome->body_changed;
          if (outcome->local_response) {
            verdict.local_response = std::move(outcome->local_response);
            verdict.decided_by = name;
            Count(name, true);
            break;
          }
          continue;
        }
        log::Warn(outcome.error().message, " [", FailureKindName(outcome.error().kind), "]");
        request = std::move(before);
        if (entry.failure == FailurePolicy::kFailOpen) {
          ++verdict.failed_open;
          continue;
        }
        verdict.failure = std::move(outcome.error());
        verdict.decided_by = name;
        break;
      }
    }
    if (!flow->contexts.empty()) {
      flow->request = request;
      verdict.flow = std::move(flow);
    }
    verdict.request = std::move(request);
    return verdict;
  }
};

HookRunner::HookRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HookRunner::~HookRunner() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->ready.notify_all();
  for (std::thread& t : impl_->workers) t.join();
}

Result<std::unique_ptr<HookRunner>> HookRunner::Create(PluginsConfig config,
                                                       const std::string& base_dir, int threads,
                                                       HookMetrics* metrics) {
  auto runtime = Runtime::Create();
  if (!runtime) return std::unexpected(runtime.error());
  auto impl = std::make_unique<Impl>();
  for (std::size_t index = 0; index < config.plugins.size(); ++index) {
    const PluginEntry& entry = config.plugins[index];
    const std::string path =
        entry.path.starts_with('/') || base_dir.empty() ? entry.path : base_dir + "/" + entry.path;
    std::ifstream in(path, std::ios::binary);
    if (!in) return NotFound("plugin '" + entry.name + "': cannot read " + path);
    std::stringstream bytes;
    bytes << in.rdbuf();
    auto plugin = Plugin::Compile(
        *runtime, PluginSpec{.name = entry.name,
                             .wasm = bytes.str(),
                             .configuration = entry.configuration,
                             .vm_configuration = entry.vm_configuration,
                             .limits = entry.limits,
                             .metrics = metrics != nullptr ? metrics->Sink(index) : nullptr});
    if (!plugin) return InvalidArgument(plugin.error().message);
    impl->compiled.emplace(entry.name, std::move(*plugin));
  }
  impl->instances.resize(static_cast<std::size_t>(std::max(threads, 1)));
  impl->pinned.resize(impl->instances.size());
  for (Impl::Instances& mine : impl->instances) {
    for (const auto& [name, plugin] : impl->compiled) {
      auto instance = Instance::Create(plugin);
      if (!instance) return InvalidArgument(instance.error().message);
      mine.emplace(name, std::move(*instance));
    }
  }
  for (std::size_t i = 0; i < config.plugins.size(); ++i) {
    impl->index.emplace(config.plugins[i].name, i);
  }
  impl->metrics = metrics;
  impl->config = std::move(config);
  Impl* raw = impl.get();
  for (std::size_t i = 0; i < raw->instances.size(); ++i) {
    raw->workers.emplace_back([raw, i] { raw->Work(i); });
  }
  return std::unique_ptr<HookRunner>(new HookRunner(std::move(impl)));
}

bool HookRunner::Applies(std::string_view route, std::string_view tenant) const {
  const Chain* chain = impl_->config.ChainFor(route, tenant);
  return chain && !chain->plugins.empty();
}

void HookRunner::RunRequest(std::string route, RequestData request,
                            std::function<void(RequestVerdict)> done) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->queue.push_back(Impl::Job{std::move(route), std::move(request), std::move(done)});
  }
  impl_->ready.notify_one();
}

bool HookRunner::HasResponseHooks(const std::shared_ptr<Flow>& flow) const {
  return flow && flow->response_hooks;
}

void HookRunner::RunResponse(std::shared_ptr<Flow> flow, ResponseData response, bool headers,
                             bool body, std::function<void(ResponseVerdict)> done) {
  const std::size_t worker = flow->worker;
  impl_->Pin(worker, [impl = impl_.get(), flow = std::move(flow), response = std::move(response),
                      headers, body, done = std::move(done)]() mutable {
    done(impl->RunResponse(*flow, std::move(response), headers, body));
  });
}

void HookRunner::Complete(std::shared_ptr<Flow> flow, CompletionData completion) {
  if (!flow) return;
  const std::size_t worker = flow->worker;
  impl_->Pin(worker, [impl = impl_.get(), flow = std::move(flow),
                      completion = std::move(completion)]() mutable {
    impl->RunComplete(*flow, std::move(completion));
  });
}

}  // namespace ember::plugins
