// What the ledger stores, as plain data: one UsageRecord per admitted request (written at the
// server's completion point, whatever the request's end), one UsageInterval per sampling period
// of the machine (busy, cold-start and idle time and their cost), and MachineEvents (start,
// stop, spot interruption). Money is integer micro-dollars (common/money.h); times are unix
// nanoseconds (wall clock, for reports) or nanosecond durations.
#pragma once

#include <cstdint>
#include <string>

#include "common/money.h"

namespace ember::ledger {

struct UsageRecord {
  std::string request_id;  // primary key: a retried write never counts twice
  std::string tenant;      // "" = anonymous (open mode)
  std::string key_id;      // "" = none
  std::string model;
  std::string endpoint;       // "/v1/chat/completions", "/v1/completions"
  std::string outcome;        // server::OutcomeName: finished, client_gone, aborted, error, ...
  std::string finish_reason;  // stop, length, cancelled, error; "" when it never ran
  int http_status = 0;        // 0 when no response was sent (the client left first)
  // Wall-clock unix nanoseconds; 0 = did not happen (never admitted, no token).
  std::int64_t arrival_ns = 0;
  std::int64_t admitted_ns = 0;
  std::int64_t first_token_ns = 0;
  std::int64_t finished_ns = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t cached_prompt_tokens = 0;  // of prompt_tokens, reused from the KV cache
  std::int64_t completion_tokens = 0;
  std::int64_t queue_ns = 0;       // arrival -> admitted into a slot
  std::int64_t cold_start_ns = 0;  // the model load it waited for
  std::int64_t engine_ns = 0;      // its share of engine step time (see docs/finops.md)
  // Cost at list price (prices.toml [models."ID"]): what the tenant is charged and budgets count.
  Microdollars input_cost = 0;         // (prompt - cached) tokens x input_per_mtok
  Microdollars cached_input_cost = 0;  // cached tokens x cached_input_per_mtok
  Microdollars output_cost = 0;        // completion tokens x output_per_mtok
  // The machine's cost apportioned by engine time ([instance] price_per_hour): showback.
  Microdollars infra_cost = 0;
  bool spot = false;  // served on a spot instance

  Microdollars cost() const { return input_cost + cached_input_cost + output_cost; }
  bool operator==(const UsageRecord&) const = default;
};

// The machine over one sampling period [start_ns, end_ns): wall = busy + cold_start + idle.
struct UsageInterval {
  std::int64_t start_ns = 0;  // unix ns; primary key
  std::int64_t end_ns = 0;
  std::int64_t busy_ns = 0;        // engine step time, weighted by each model's share of threads
  std::int64_t cold_start_ns = 0;  // loading models
  std::int64_t idle_ns = 0;        // the rest
  std::int64_t requests = 0;       // usage records finished in the period
  std::int64_t queue_ns = 0;       // their summed queue time
  std::int64_t kv_used_permille_max = 0;      // peak KV cache use, 0..1000
  std::int64_t threads = 0;                   // engine threads configured
  Microdollars price_per_hour = 0;            // the instance price in force
  Microdollars on_demand_price_per_hour = 0;  // what on-demand would cost (= price if not spot)
  bool spot = false;
  Microdollars busy_cost = 0;  // price x busy time
  Microdollars cold_start_cost = 0;
  Microdollars idle_cost = 0;  // price x wall - busy_cost - cold_start_cost (exact remainder)

  bool operator==(const UsageInterval&) const = default;
};

// Something that happened to the machine: "start", "stop", "spot_interruption".
struct MachineEvent {
  std::int64_t at_ns = 0;
  std::string kind;
  std::string detail;

  bool operator==(const MachineEvent&) const = default;
};

}  // namespace ember::ledger
