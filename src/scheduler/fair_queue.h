// The scheduler's wait queue: weighted fair queuing over tokens served, the Virtual Token
// Counter (VTC) of Sheng et al., "Fairness in Serving Large Language Models" (OSDI 2024),
// under strict priority classes.
//
// Work is grouped into flows, one per (priority class, tenant id). A flow's counter is the
// service it has received in weighted tokens: serving it adds
// (kPromptTokenCost * prompt tokens computed + kOutputTokenCost * tokens generated) / weight.
// The next item to admit is the oldest item of the flow with the lowest class, then the
// smallest counter, then the oldest head item. A flow exists while it has waiting or running
// work and is forgotten when it has neither, so memory grows with active tenants only.
//
// Counters are compared only within a class (a lower class is served strictly first, so a
// comparison across classes would never decide anything), and so a flow is lifted relative to
// its own class: see Lift.
//
// Used by the scheduler's engine thread only; no locking.
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "scheduler/request.h"

namespace ember::scheduler {

// Counter units per token. An output token costs twice a prompt token, the paper's
// w_p = 1, w_q = 2: a prompt token is one row of a wide, compute-bound prefill chunk, while
// each output token needs a memory-bound pass over the weights shared only with the other
// decoding sequences and holds its KV cells for the rest of the request, so it occupies the
// engine longer. Hosted APIs price output at 2-4x input for the same reason; 2, the low end,
// keeps long prompts (which hold the step's budget while they prefill) from being nearly free.
inline constexpr double kPromptTokenCost = 1.0;
inline constexpr double kOutputTokenCost = 2.0;

template <typename T>
class FairQueue {
 public:
  // Adds new work for `tenant`, behind that flow's items with a smaller `order` (the caller's
  // arrival sequence number). A flow with nothing waiting is first lifted to its class's
  // current virtual time (Lift), so a tenant cannot bank credit while it asks for nothing.
  void Push(const TenantTag& tenant, std::uint64_t order, T item) {
    Flow& flow = FlowFor(tenant);
    if (flow.waiting.empty()) Lift(flow);
    flow.weight = tenant.weight;  // the latest request's: a reload may change it
    Insert(flow, order, std::move(item));
  }

  // Puts preempted work back without lifting: it was taken from its flow, not newly asked
  // for, and its original `order` puts it ahead of the tenant's later requests.
  void Requeue(const TenantTag& tenant, std::uint64_t order, T item) {
    Flow& flow = FlowFor(tenant);
    if (flow.running > 0) {
      --flow.running;
    } else if (flow.waiting.empty()) {  // not taken by Pop after all: new to the queue
      Lift(flow);
      flow.weight = tenant.weight;
    }
    Insert(flow, order, std::move(item));
  }

  // The item Pop would take; nullptr when nothing waits.
  T* Peek() { return ready_.empty() ? nullptr : &ready_.begin()->flow->waiting.front().second; }

  // Takes the next item (Peek's); it counts as running in its flow until Done. Not empty().
  T Pop() {
    assert(!ready_.empty());
    Flow& flow = *ready_.begin()->flow;
    ready_.erase(ready_.begin());
    T item = std::move(flow.waiting.front().second);
    flow.waiting.pop_front();
    if (!flow.waiting.empty()) ready_.insert(Rank(flow));
    --size_;
    ++flow.running;
    double& now = classes_[flow.priority].time;
    now = std::max(now, flow.counter);
    return item;
  }

  // Work of `tenant` that starts running without passing through the queue (the further
  // choices of a request admitted by Pop): it counts as running until its own Done.
  void AddRunning(const TenantTag& tenant) { ++FlowFor(tenant).running; }

  // Running work of `tenant` ended (finished, failed or cancelled).
  void Done(const TenantTag& tenant) {
    auto it = flows_.find(Key{tenant.priority, tenant.id});
    if (it == flows_.end()) return;
    if (it->second.running > 0) --it->second.running;
    ForgetIfIdle(it);
  }

  // Adds served tokens to `tenant`'s counter.
  void Charge(const TenantTag& tenant, int prompt_tokens, int output_tokens) {
    auto it = flows_.find(Key{tenant.priority, tenant.id});
    if (it == flows_.end()) return;
    Flow& flow = it->second;
    Update(flow, [&] {
      flow.counter +=
          (kPromptTokenCost * prompt_tokens + kOutputTokenCost * output_tokens) / flow.weight;
    });
  }

  // `tenant`'s counter; 0 for a flow with no work.
  double Counter(const TenantTag& tenant) const {
    auto it = flows_.find(Key{tenant.priority, tenant.id});
    return it != flows_.end() ? it->second.counter : 0.0;
  }

  // Calls `remove(item)` for every waiting item, in no particular order, and drops those for
  // which it returns true (it has dealt with them).
  template <typename F>
  void RemoveIf(F remove) {
    for (auto it = flows_.begin(); it != flows_.end();) {
      Flow& flow = it->second;
      const std::size_t before = flow.waiting.size();
      Update(flow, [&] {
        flow.waiting.erase(std::remove_if(flow.waiting.begin(), flow.waiting.end(),
                                          [&](auto& entry) { return remove(entry.second); }),
                           flow.waiting.end());
      });
      size_ -= before - flow.waiting.size();
      it = ForgetIfIdle(it);
    }
  }

  // Calls `f(item)` for every waiting item.
  template <typename F>
  void ForEach(F f) {
    for (auto& [key, flow] : flows_) {
      for (auto& entry : flow.waiting) f(entry.second);
    }
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Flows with waiting or running work.
  std::size_t tenants() const { return flows_.size(); }

 private:
  struct Key {
    int priority;
    std::string id;
    bool operator<(const Key& other) const {
      return priority != other.priority ? priority < other.priority : id < other.id;
    }
  };
  struct Flow {
    int priority = 0;
    double counter = 0;
    double weight = 1;
    int running = 0;
    std::deque<std::pair<std::uint64_t, T>> waiting;  // ascending order
  };
  // A flow with waiting work, ranked as admission takes them: class, counter, head's order.
  struct Ready {
    int priority;
    double counter;
    std::uint64_t head;
    Flow* flow;
    bool operator<(const Ready& o) const {
      if (priority != o.priority) return priority < o.priority;
      if (counter != o.counter) return counter < o.counter;
      return head < o.head;  // orders are unique: no two flows tie here
    }
  };
  struct Class {
    double time = 0;  // the counter of the last flow served
    int flows = 0;
  };

  Flow& FlowFor(const TenantTag& tenant) {
    auto [it, added] = flows_.try_emplace(Key{tenant.priority, tenant.id});
    if (added) {
      it->second.priority = tenant.priority;
      ++classes_[tenant.priority].flows;
    }
    return it->second;
  }

  // Applies `change` to a flow's counter or waiting items, keeping ready_ in step: a flow is
  // in it exactly when it has waiting items, under its current rank.
  template <typename F>
  void Update(Flow& flow, F change) {
    if (!flow.waiting.empty()) ready_.erase(Rank(flow));
    change();
    if (!flow.waiting.empty()) ready_.insert(Rank(flow));
  }
  static Ready Rank(Flow& flow) {
    return Ready{flow.priority, flow.counter, flow.waiting.front().first, &flow};
  }

  // The class's virtual time: the smallest counter among its flows with waiting work (the
  // next to be served), or when none waits, the counter of the last flow served. The paper
  // lifts a client that has nothing in the wait queue, whether or not it has requests
  // running: a tenant whose one long request was all it asked for received less service
  // because it asked for less, not because it was denied, so it gets no credit for it.
  // `flow` has nothing waiting, so it is not in ready_.
  void Lift(Flow& flow) {
    double floor = classes_[flow.priority].time;
    auto first = ready_.lower_bound(Ready{flow.priority, -HUGE_VAL, 0, nullptr});
    if (first != ready_.end() && first->priority == flow.priority) floor = first->counter;
    flow.counter = std::max(flow.counter, floor);
  }

  void Insert(Flow& flow, std::uint64_t order, T item) {
    Update(flow, [&] {
      auto pos = flow.waiting.end();
      while (pos != flow.waiting.begin() && std::prev(pos)->first > order) --pos;
      flow.waiting.emplace(pos, order, std::move(item));
    });
    ++size_;
  }

  typename std::map<Key, Flow>::iterator ForgetIfIdle(typename std::map<Key, Flow>::iterator it) {
    if (!it->second.waiting.empty() || it->second.running > 0) return std::next(it);
    auto cls = classes_.find(it->second.priority);
    if (--cls->second.flows == 0) classes_.erase(cls);
    return flows_.erase(it);
  }

  std::map<Key, Flow> flows_;  // every flow with work
  std::set<Ready> ready_;      // flows with waiting work, best first
  std::map<int, Class> classes_;
  std::size_t size_ = 0;
};

}  // namespace ember::scheduler
