// The tenancy configuration as data: tenants (weight, priority class, limits, enabled) and
// their API keys (SHA-256 hashes only). Read from and written to DIR/tenants.toml by store.h;
// turned into a live, lock-free-to-read table by tenancy.h. No I/O here.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/money.h"

namespace ember::tenancy {

// Strict order: every waiting `interactive` request is admitted before any `batch` one.
enum class Priority { kInteractive = 0, kBatch = 1 };

std::string_view PriorityName(Priority p);  // "interactive" | "batch"
std::optional<Priority> ParsePriority(std::string_view name);

// BudgetWindow (day, month, total) and its name: common/money.h.

// Unset = unlimited. Rates are per minute, refilled continuously (token buckets).
struct Limits {
  std::optional<std::int64_t> rpm;             // requests per minute
  std::optional<std::int64_t> input_tpm;       // prompt tokens per minute
  std::optional<std::int64_t> output_tpm;      // completion tokens per minute
  std::optional<std::int64_t> max_concurrent;  // requests in flight (waiting or running)
  std::optional<std::int64_t> max_queued;      // requests waiting (for their model or a slot)
  std::optional<std::int64_t> max_tokens;      // cap on a request's max_tokens

  bool operator==(const Limits&) const = default;
  bool empty() const { return *this == Limits{}; }
};

// Every limit with its name in the tenants file and JSON (the CLI flag is the name with '-' for
// '_'), so the store, the JSON writer and the CLI walk one list instead of six fields each.
struct LimitField {
  std::string_view key;
  std::optional<std::int64_t> Limits::* member;
};
inline constexpr std::array<LimitField, 6> kLimitFields = {{
    {"rpm", &Limits::rpm},
    {"input_tpm", &Limits::input_tpm},
    {"output_tpm", &Limits::output_tpm},
    {"max_concurrent", &Limits::max_concurrent},
    {"max_queued", &Limits::max_queued},
    {"max_tokens", &Limits::max_tokens},
}};

// [a-z0-9][a-z0-9._-]{0,62}: safe as a metric label, a log field and a file name.
bool IsValidTenantName(std::string_view name);

struct Tenant {
  std::string name;          // [a-z0-9][a-z0-9._-]{0,62}: the id in metrics, logs, the ledger
  std::string display_name;  // free text; empty = name
  double weight = 1.0;       // fair share relative to other tenants; > 0
  Priority priority = Priority::kInteractive;
  bool enabled = true;
  Limits limits;
  std::map<std::string, Limits> model_limits;  // model id -> limits on top of `limits`
  // Spend budgets at list price, integer micro-dollars (docs/finops.md); unset = none. The
  // ledger enforces them: hard refuses with 402, soft only warns (log, metric, webhook).
  std::optional<std::int64_t> hard_budget;
  std::optional<std::int64_t> soft_budget;
  BudgetWindow budget_window = BudgetWindow::kMonth;

  bool operator==(const Tenant&) const = default;
};

struct ApiKey {
  std::string id;            // "key_" + 12 lowercase hex digits; safe to show and log
  std::string tenant;        // a Tenant::name
  std::string sha256_hex;    // 64 lowercase hex digits of SHA-256(key)
  std::int64_t created = 0;  // unix seconds

  bool operator==(const ApiKey&) const = default;
};

struct Config {
  std::vector<Tenant> tenants;  // unique names
  std::vector<ApiKey> keys;     // unique ids and hashes; every tenant exists

  bool empty() const { return tenants.empty(); }
  const Tenant* FindTenant(std::string_view name) const;
  Tenant* FindTenant(std::string_view name);
  bool operator==(const Config&) const = default;
};

}  // namespace ember::tenancy
