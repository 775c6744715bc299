// `ember cost advise`: reads what the ledger recorded over a window (the machine's busy, cold-
// start and idle intervals and aggregates of the usage records) and suggests what would cost
// less or serve better -- scale to zero, a smaller or larger instance, spot, thread count, more
// replicas -- each with its monthly saving (730 hours) and the numbers behind it. Pure
// functions over plain data, called once by the CLI; every number in a recommendation's text is
// derived from the input.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/money.h"
#include "ledger/prices.h"
#include "ledger/record.h"

namespace ember::ledger {

// One machine type the user could run on, from their instances.toml ([[instance]] tables;
// docs/examples/instances.toml).
struct InstanceOffer {
  std::string name = {};
  std::int64_t vcpus = 0;
  std::int64_t memory_gib = 0;
  Microdollars price_per_hour = 0;  // on-demand
  std::optional<Microdollars> spot_price_per_hour = std::nullopt;

  bool operator==(const InstanceOffer&) const = default;
};

// [[instance]] tables with name, vcpus, memory_gib, price_per_hour (all required) and
// spot_price_per_hour; names must be unique. kInvalidArgument "FILE:LINE: ..." otherwise.
[[nodiscard]] Result<std::vector<InstanceOffer>> ParseInstanceTable(std::string_view text,
                                                                    std::string_view file_name);
[[nodiscard]] Result<std::vector<InstanceOffer>> LoadInstanceTable(
    const std::filesystem::path& path);

inline constexpr std::int64_t kHoursPerMonth = 730;
inline constexpr std::int64_t kNsPerMinute = 60'000'000'000;

struct AdviseInput {
  std::int64_t window_ns = 0;                 // the period asked about (--window 7d)
  std::vector<UsageInterval> intervals = {};  // the machine over that period, any order
  // Aggregates of the period's usage records (tokens and concurrency are passed through to
  // every recommendation's numbers).
  std::int64_t requests = 0;
  std::int64_t queue_ns_p50 = 0;  // arrival -> admitted
  std::int64_t queue_ns_p95 = 0;
  std::int64_t latency_ns_p95 = 0;  // arrival -> finished
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t max_concurrent_seen = 0;
  Prices prices = {};                      // [instance]: the machine in use (name, price, spot)
  std::vector<InstanceOffer> offers = {};  // what it could run on instead
  std::int64_t threads = 0;                // --threads; 0 = take it from the intervals
  bool idle_unload_enabled = false;        // --idle-unload set
  int replicas = 1;
  std::int64_t drain_timeout_ns = 30'000'000'000;  // what a spot interruption notice allows
  std::int64_t long_idle_ns = 15 * kNsPerMinute;   // idle stretches worth stopping for
};

struct Recommendation {
  // "idle_unload", "smaller_instance", "larger_instance", "spot", "threads", "replicas", "none"
  std::string kind = {};
  std::string text = {};  // one paragraph for people, with the numbers behind it
  // What the change saves in a month of 730 hours at the observed rate; negative for a change
  // that costs more (a larger instance, another replica).
  Microdollars monthly_saving = 0;
  std::map<std::string, double> numbers = {};  // utilization, idle_fraction, ... for JSON

  bool operator==(const Recommendation&) const = default;
};

// The recommendations that apply, by monthly_saving (largest first); a single "none" when none
// does. Rules (utilization = busy / wall time of the intervals):
//  - idle_unload: idle >= 50% of the time, --idle-unload not set, and some idle stretches of at
//    least long_idle_ns: saving = those stretches' idle cost, scaled to a month.
//  - smaller_instance: utilization < 30% and an offer with >= half the vCPUs costs less:
//    saving = the price difference x 730 (the cheapest such offer).
//  - larger_instance / replicas: queue p95 > 1 s or utilization > 85%: the cheapest offer with
//    more vCPUs, else one more replica; the saving is negative (the extra cost).
//  - spot: not on spot, the current instance's offer has a spot price, and the p95 request
//    finishes within the drain timeout: saving = (price - spot price) x 730.
//  - threads: more engine threads than the instance has vCPUs (saving 0).
std::vector<Recommendation> Advise(const AdviseInput& input);

// For the terminal: one block per recommendation.
std::string AdviceText(const std::vector<Recommendation>& recommendations);
// {"recommendations": [{"kind", "text", "monthly_saving" ("12.34", exact dollars),
// "monthly_saving_microdollars", "numbers": {...}}]}
std::string AdviceJson(const std::vector<Recommendation>& recommendations);

}  // namespace ember::ledger
