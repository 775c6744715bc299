// Usage and cost reports over the ledger, for `ember cost report` and GET /v1/usage: the usage
// records of a time window grouped by tenant, model, key and/or day, with a total that equals
// the sum of the rows to the micro-dollar, and a summary of the machine's time and cost in the
// window. Also the parsing of the --by/--since/--until arguments. Pure functions over a Store;
// callable from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/money.h"
#include "ledger/store.h"

namespace ember::ledger {

enum class GroupKey { kTenant, kModel, kKey, kDay };

// "tenant,model,key,day" (any subset, in the order wanted; spaces around names are allowed).
// "" groups nothing: one row. Unknown or repeated names are kInvalidArgument.
[[nodiscard]] Result<std::vector<GroupKey>> ParseGroupBy(std::string_view csv);
// "tenant", "model", "key", "day".
std::string_view GroupKeyName(GroupKey key);

// "2026-12-01" (midnight UTC), "2026-12-01T10:00:00Z", unix seconds "1733000000", or an age
// before NOW_NS: "7d", "24h", "30m", "45s". Returns unix nanoseconds; kInvalidArgument else.
[[nodiscard]] Result<std::int64_t> ParseTimeArg(std::string_view text, std::int64_t now_ns);

struct ReportRow {
  std::vector<std::string> keys;  // in group_by order; day is "YYYY-MM-DD" (UTC, of finished_ns)
  std::int64_t requests = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t cached_prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  Microdollars cost = 0;  // UsageRecord::cost: input + cached input + output
  Microdollars input_cost = 0;
  Microdollars cached_input_cost = 0;
  Microdollars output_cost = 0;
  Microdollars infra_cost = 0;
  std::int64_t engine_ns = 0;
  std::int64_t queue_ns = 0;

  void Add(const ReportRow& other);  // the counters; keys are left alone
  bool operator==(const ReportRow&) const = default;
};

// The machine's intervals that started in the window (each whole, so that the reports of
// adjacent windows add up), and its spot interruptions in the window. Not filtered by tenant,
// model or key: the machine is shared.
struct MachineSummary {
  std::int64_t wall_ns = 0;  // sum of end_ns - start_ns
  std::int64_t busy_ns = 0;
  std::int64_t cold_start_ns = 0;
  std::int64_t idle_ns = 0;
  std::int64_t spot_ns = 0;  // wall time on spot instances
  Microdollars busy_cost = 0;
  Microdollars cold_start_cost = 0;
  Microdollars idle_cost = 0;
  Microdollars machine_cost = 0;  // busy + cold start + idle
  Microdollars spot_cost = 0;     // machine cost of the spot intervals
  // The spot intervals priced at their on_demand_price_per_hour.
  Microdollars on_demand_equivalent_cost = 0;
  std::int64_t spot_interruptions = 0;

  bool operator==(const MachineSummary&) const = default;
};

struct Report {
  std::vector<GroupKey> group_by;
  std::vector<ReportRow> rows;  // sorted by keys; exactly one (keys empty) when group_by is
  ReportRow total;              // the sum of rows; keys empty
  MachineSummary machine;
};

// Reads FILTER's records and the machine's intervals and events in [since_ns, until_ns).
[[nodiscard]] Result<Report> BuildReport(Store& store, const Filter& filter,
                                         std::vector<GroupKey> group_by);
// The same, over records and intervals already read (BuildReport's arithmetic).
Report Aggregate(const std::vector<UsageRecord>& records,
                 const std::vector<UsageInterval>& intervals,
                 const std::vector<MachineEvent>& events, std::vector<GroupKey> group_by);

// {"rows": [{<the group_by keys>, "requests": N, ..., "queue_seconds": S}], "total": {<the same
// counters>}, "machine": {"wall_seconds": S, ..., "spot_interruptions": N}}: scripts depend on
// its names, which report.cc lists in one place.
std::string ReportJson(const Report& report);
// A header line, a line per row and, when grouped, a final line whose keys are "TOTAL".
std::string ReportCsv(const Report& report);
// Aligned columns for people, a total line and a summary of the machine.
std::string ReportTable(const Report& report);

}  // namespace ember::ledger
