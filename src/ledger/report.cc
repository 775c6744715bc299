// Usage reports: grouping and summing the ledger's records (integers only, so totals are exact),
// the machine summary, and the JSON, CSV and table renderings; --by and --since parsing.
#include "ledger/report.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "common/json_text.h"
#include "common/log.h"  // StrCat

namespace ember::ledger {
namespace {

constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
constexpr std::int64_t kNanosPerHour = 3'600 * kNanosPerSecond;
constexpr GroupKey kAllKeys[] = {GroupKey::kTenant, GroupKey::kModel, GroupKey::kKey,
                                 GroupKey::kDay};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Days since the epoch (floor) as "YYYY-MM-DD".
std::string DayOf(std::int64_t unix_ns) {
  using namespace std::chrono;
  const auto day = floor<days>(sys_time<nanoseconds>(nanoseconds(unix_ns)));
  const year_month_day ymd(day);
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return text;
}

std::string KeyOf(const UsageRecord& r, GroupKey key) {
  switch (key) {
    case GroupKey::kTenant:
      return r.tenant;
    case GroupKey::kModel:
      return r.model;
    case GroupKey::kKey:
      return r.key_id;
    case GroupKey::kDay:
      return DayOf(r.finished_ns);
  }
  return {};
}

ReportRow RowOf(const UsageRecord& r) {
  ReportRow row;
  row.requests = 1;
  row.prompt_tokens = r.prompt_tokens;
  row.cached_prompt_tokens = r.cached_prompt_tokens;
  row.completion_tokens = r.completion_tokens;
  row.cost = r.cost();
  row.input_cost = r.input_cost;
  row.cached_input_cost = r.cached_input_cost;
  row.output_cost = r.output_cost;
  row.infra_cost = r.infra_cost;
  row.engine_ns = r.engine_ns;
  row.queue_ns = r.queue_ns;
  return row;
}

MachineSummary Summarize(const std::vector<UsageInterval>& intervals,
                         const std::vector<MachineEvent>& events) {
  MachineSummary m;
  for (const auto& i : intervals) {
    const std::int64_t wall = std::max<std::int64_t>(0, i.end_ns - i.start_ns);
    m.wall_ns += wall;
    m.busy_ns += i.busy_ns;
    m.cold_start_ns += i.cold_start_ns;
    m.idle_ns += i.idle_ns;
    m.busy_cost += i.busy_cost;
    m.cold_start_cost += i.cold_start_cost;
    m.idle_cost += i.idle_cost;
    if (i.spot) {
      m.spot_ns += wall;
      m.spot_cost += i.busy_cost + i.cold_start_cost + i.idle_cost;
      m.on_demand_equivalent_cost +=
          MulDivRound(wall, std::max<Microdollars>(0, i.on_demand_price_per_hour), kNanosPerHour);
    }
  }
  m.machine_cost = m.busy_cost + m.cold_start_cost + m.idle_cost;
  m.spot_interruptions = std::count_if(events.begin(), events.end(), [](const MachineEvent& e) {
    return e.kind == "spot_interruption";
  });
  return m;
}

double Seconds(std::int64_t ns) { return static_cast<double>(ns) / kNanosPerSecond; }

// Exact decimal seconds with at least three fraction digits: 1500000000 -> "1.500".
std::string SecondsText(std::int64_t ns) {
  const bool negative = ns < 0;
  const std::uint64_t abs = negative ? 0 - static_cast<std::uint64_t>(ns) : ns;
  char frac[16];
  std::snprintf(frac, sizeof frac, "%09" PRIu64, abs % kNanosPerSecond);
  std::string f = frac;
  while (f.size() > 3 && f.back() == '0') f.pop_back();
  return StrCat(negative ? "-" : "", abs / kNanosPerSecond, ".", f);
}

// The counters of a row, named as ReportJson and ReportCsv print them: `"key": value` pairs.
std::string CountersJson(const ReportRow& row) {
  return StrCat(
      "\"requests\":", row.requests, ",\"prompt_tokens\":", row.prompt_tokens,
      ",\"cached_prompt_tokens\":", row.cached_prompt_tokens,
      ",\"completion_tokens\":", row.completion_tokens, ",\"cost_microdollars\":", row.cost,
      ",\"input_cost_microdollars\":", row.input_cost,
      ",\"cached_input_cost_microdollars\":", row.cached_input_cost,
      ",\"output_cost_microdollars\":", row.output_cost, ",\"infra_microdollars\":", row.infra_cost,
      ",\"engine_seconds\":", FormatDouble(Seconds(row.engine_ns)),
      ",\"queue_seconds\":", FormatDouble(Seconds(row.queue_ns)));
}

std::string CsvField(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::vector<std::string> CsvCounters(const ReportRow& row) {
  return {std::to_string(row.requests),
          std::to_string(row.prompt_tokens),
          std::to_string(row.cached_prompt_tokens),
          std::to_string(row.completion_tokens),
          FormatDollars(row.cost),
          FormatDollars(row.input_cost),
          FormatDollars(row.cached_input_cost),
          FormatDollars(row.output_cost),
          FormatDollars(row.infra_cost),
          SecondsText(row.engine_ns),
          SecondsText(row.queue_ns)};
}

void CsvLine(const std::vector<std::string>& fields, std::string& out) {
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += ',';
    out += CsvField(fields[i]);
  }
  out += '\n';
}

std::vector<std::string> TableCounters(const ReportRow& row) {
  return {std::to_string(row.requests),
          std::to_string(row.prompt_tokens),
          std::to_string(row.cached_prompt_tokens),
          std::to_string(row.completion_tokens),
          FormatDollars(row.cost),
          FormatDollars(row.infra_cost),
          SecondsText(row.engine_ns),
          SecondsText(row.queue_ns)};
}

std::string TableKey(GroupKey key, const std::string& value) {
  if (!value.empty()) return value;
  return key == GroupKey::kTenant ? "(anonymous)" : "(none)";
}

// Left-aligns the first KEY_COLUMNS columns and right-aligns the rest; a rule before the last
// line when RULE_BEFORE_LAST.
std::string Align(const std::vector<std::vector<std::string>>& lines, std::size_t key_columns,
                  bool rule_before_last) {
  std::vector<std::size_t> widths;
  for (const auto& line : lines) {
    widths.resize(std::max(widths.size(), line.size()));
    for (std::size_t i = 0; i < line.size(); ++i) widths[i] = std::max(widths[i], line[i].size());
  }
  std::size_t total_width = 0;
  for (auto w : widths) total_width += w + 2;
  std::string out;
  for (std::size_t n = 0; n < lines.size(); ++n) {
    if (rule_before_last && n + 1 == lines.size() && n > 0) {
      out += std::string(total_width > 2 ? total_width - 2 : 0, '-') + "\n";
    }
    std::string text;
    for (std::size_t i = 0; i < lines[n].size(); ++i) {
      const std::string& cell = lines[n][i];
      const std::string pad(widths[i] - cell.size(), ' ');
      if (i > 0) text += "  ";
      text += i < key_columns ? cell + pad : pad + cell;
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  }
  return out;
}

// N fixed digits of S at POS.
std::optional<int> Digits(std::string_view s, std::size_t pos, std::size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

std::optional<std::int64_t> ParseDate(std::string_view s) {
  using namespace std::chrono;
  if (s.size() < 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  auto y = Digits(s, 0, 4), m = Digits(s, 5, 2), d = Digits(s, 8, 2);
  if (!y || !m || !d) return std::nullopt;
  const year_month_day ymd{year(*y), month(static_cast<unsigned>(*m)),
                           day(static_cast<unsigned>(*d))};
  if (!ymd.ok()) return std::nullopt;
  std::int64_t ns = duration_cast<nanoseconds>(sys_days(ymd).time_since_epoch()).count();
  if (s.size() == 10) return ns;
  if (s.size() != 20 || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z') {
    return std::nullopt;
  }
  auto hh = Digits(s, 11, 2), mm = Digits(s, 14, 2), ss = Digits(s, 17, 2);
  if (!hh || !mm || !ss || *hh > 23 || *mm > 59 || *ss > 59) return std::nullopt;
  return ns + ((*hh * 60 + *mm) * 60 + *ss) * kNanosPerSecond;
}

}  // namespace

std::string_view GroupKeyName(GroupKey key) {
  switch (key) {
    case GroupKey::kTenant:
      return "tenant";
    case GroupKey::kModel:
      return "model";
    case GroupKey::kKey:
      return "key";
    case GroupKey::kDay:
      return "day";
  }
  return "?";
}

Result<std::vector<GroupKey>> ParseGroupBy(std::string_view csv) {
  std::vector<GroupKey> keys;
  if (Trim(csv).empty()) return keys;
  for (std::size_t start = 0;;) {
    const std::size_t comma = std::min(csv.find(',', start), csv.size());
    const std::string_view name = Trim(csv.substr(start, comma - start));
    const auto* found = std::find_if(std::begin(kAllKeys), std::end(kAllKeys),
                                     [&](GroupKey k) { return GroupKeyName(k) == name; });
    if (found == std::end(kAllKeys)) {
      return InvalidArgument(
          StrCat("cannot group by \"", name, "\":the choices are tenant, model, key and day"),
          "by");
    }
    if (std::find(keys.begin(), keys.end(), *found) != keys.end()) {
      return InvalidArgument(StrCat("\"", name, "\" is named twice in the grouping"), "by");
    }
    keys.push_back(*found);
    if (comma == csv.size()) return keys;
    start = comma + 1;
  }
}

Result<std::int64_t> ParseTimeArg(std::string_view text, std::int64_t now_ns) {
  auto fail = [&] {
    return InvalidArgument(StrCat("time \"", text,
                                  "\":expected a date (2026-12-01), a UTC time "
                                  "(2026-12-01T10:00:00Z), unix seconds (1733000000) or an age "
                                  "such as 7d, 24h, 30m or 45s"));
  };
  if (text.empty()) return fail();
  const auto digits_end =
      std::find_if(text.begin(), text.end(), [](char c) { return c < '0' || c > '9'; });
  const std::size_t n_digits = static_cast<std::size_t>(digits_end - text.begin());
  std::int64_t unit = 0;
  if (n_digits == text.size()) {
    unit = kNanosPerSecond;
  } else if (n_digits > 0 && n_digits + 1 == text.size()) {
    switch (text.back()) {
      case 'd':
        unit = 24 * kNanosPerHour;
        break;
      case 'h':
        unit = kNanosPerHour;
        break;
      case 'm':
        unit = 60 * kNanosPerSecond;
        break;
      case 's':
        unit = kNanosPerSecond;
        break;
      default:
        break;
    }
  }
  if (unit == 0) {
    if (auto ns = ParseDate(text)) return *ns;
    return fail();
  }
  std::int64_t count = 0;
  const auto parsed = std::from_chars(text.data(), text.data() + n_digits, count);
  if (parsed.ec != std::errc() || count > std::numeric_limits<std::int64_t>::max() / unit) {
    return InvalidArgument(StrCat("time \"", text, "\" is out of range"));
  }
  if (n_digits == text.size()) return count * unit;  // unix seconds
  return now_ns - count * unit;
}

void ReportRow::Add(const ReportRow& o) {
  requests += o.requests;
  prompt_tokens += o.prompt_tokens;
  cached_prompt_tokens += o.cached_prompt_tokens;
  completion_tokens += o.completion_tokens;
  cost += o.cost;
  input_cost += o.input_cost;
  cached_input_cost += o.cached_input_cost;
  output_cost += o.output_cost;
  infra_cost += o.infra_cost;
  engine_ns += o.engine_ns;
  queue_ns += o.queue_ns;
}

Report Aggregate(const std::vector<UsageRecord>& records,
                 const std::vector<UsageInterval>& intervals,
                 const std::vector<MachineEvent>& events, std::vector<GroupKey> group_by) {
  std::map<std::vector<std::string>, ReportRow> groups;
  if (group_by.empty()) groups[{}];
  for (const auto& r : records) {
    std::vector<std::string> keys;
    keys.reserve(group_by.size());
    for (GroupKey k : group_by) keys.push_back(KeyOf(r, k));
    groups[std::move(keys)].Add(RowOf(r));
  }
  Report report;
  report.group_by = std::move(group_by);
  report.rows.reserve(groups.size());
  for (auto& [keys, row] : groups) {
    row.keys = keys;
    report.total.Add(row);
    report.rows.push_back(std::move(row));
  }
  report.machine = Summarize(intervals, events);
  return report;
}

Result<Report> BuildReport(Store& store, const Filter& filter, std::vector<GroupKey> group_by) {
  auto records = store.Records(filter);
  if (!records) return std::unexpected(records.error());
  auto intervals = store.Intervals(filter.since_ns, filter.until_ns);
  if (!intervals) return std::unexpected(intervals.error());
  auto events = store.Events(filter.since_ns, filter.until_ns);
  if (!events) return std::unexpected(events.error());
  return Aggregate(*records, *intervals, *events, std::move(group_by));
}

std::string ReportJson(const Report& report) {
  std::string out = "{\"rows\":[";
  for (std::size_t r = 0; r < report.rows.size(); ++r) {
    const ReportRow& row = report.rows[r];
    out += r == 0 ? "{" : ",{";
    for (std::size_t i = 0; i < report.group_by.size() && i < row.keys.size(); ++i) {
      out += StrCat(Quote(GroupKeyName(report.group_by[i])), ":", Quote(row.keys[i]), ",");
    }
    out += CountersJson(row) + "}";
  }
  const MachineSummary& m = report.machine;
  out += StrCat(
      "],\"total\":{", CountersJson(report.total), "},\"machine\":{",
      "\"wall_seconds\":", FormatDouble(Seconds(m.wall_ns)),
      ",\"busy_seconds\":", FormatDouble(Seconds(m.busy_ns)),
      ",\"cold_start_seconds\":", FormatDouble(Seconds(m.cold_start_ns)),
      ",\"idle_seconds\":", FormatDouble(Seconds(m.idle_ns)),
      ",\"spot_seconds\":", FormatDouble(Seconds(m.spot_ns)),
      ",\"busy_microdollars\":", m.busy_cost, ",\"cold_start_microdollars\":", m.cold_start_cost,
      ",\"idle_microdollars\":", m.idle_cost, ",\"machine_microdollars\":", m.machine_cost,
      ",\"spot_microdollars\":", m.spot_cost,
      ",\"on_demand_equivalent_microdollars\":", m.on_demand_equivalent_cost,
      ",\"spot_interruptions\":", m.spot_interruptions, "}}");
  return out;
}

std::string ReportCsv(const Report& report) {
  std::vector<std::string> header;
  for (GroupKey k : report.group_by) header.emplace_back(GroupKeyName(k));
  for (const char* name :
       {"requests", "prompt_tokens", "cached_prompt_tokens", "completion_tokens", "cost_dollars",
        "input_cost_dollars", "cached_input_cost_dollars", "output_cost_dollars", "infra_dollars",
        "engine_seconds", "queue_seconds"}) {
    header.emplace_back(name);
  }
  std::string out;
  CsvLine(header, out);
  for (const auto& row : report.rows) {
    std::vector<std::string> fields = row.keys;
    fields.resize(report.group_by.size());
    for (auto& f : CsvCounters(row)) fields.push_back(std::move(f));
    CsvLine(fields, out);
  }
  if (!report.group_by.empty()) {
    std::vector<std::string> fields(report.group_by.size(), "TOTAL");
    for (auto& f : CsvCounters(report.total)) fields.push_back(std::move(f));
    CsvLine(fields, out);
  }
  return out;
}

std::string ReportTable(const Report& report) {
  std::vector<std::vector<std::string>> lines;
  std::vector<std::string> header;
  for (GroupKey k : report.group_by) header.emplace_back(GroupKeyName(k));
  for (const char* name :
       {"requests", "prompt", "cached", "completion", "cost $", "infra $", "engine s", "queue s"}) {
    header.emplace_back(name);
  }
  lines.push_back(std::move(header));
  const bool grouped = !report.group_by.empty();
  for (const auto& row : report.rows) {
    if (!grouped) break;  // the one row is the total, printed below
    std::vector<std::string> cells;
    for (std::size_t i = 0; i < report.group_by.size(); ++i) {
      cells.push_back(TableKey(report.group_by[i], i < row.keys.size() ? row.keys[i] : ""));
    }
    for (auto& c : TableCounters(row)) cells.push_back(std::move(c));
    lines.push_back(std::move(cells));
  }
  std::vector<std::string> total(report.group_by.size(), "");
  if (grouped) total[0] = "TOTAL";
  for (auto& c : TableCounters(report.total)) total.push_back(std::move(c));
  lines.push_back(std::move(total));
  std::string out = Align(lines, report.group_by.size(), grouped);

  const MachineSummary& m = report.machine;
  out += StrCat("\nmachine: ", SecondsText(m.wall_ns), " s wall = ", SecondsText(m.busy_ns),
                " s busy + ", SecondsText(m.cold_start_ns), " s cold start + ",
                SecondsText(m.idle_ns), " s idle\n");
  out += StrCat("  cost $", FormatDollars(m.machine_cost), " = $", FormatDollars(m.busy_cost),
                " busy + $", FormatDollars(m.cold_start_cost), " cold start + $",
                FormatDollars(m.idle_cost), " idle\n");
  if (m.spot_ns > 0 || m.spot_interruptions > 0) {
    out +=
        StrCat("  spot: ", SecondsText(m.spot_ns), " s for $", FormatDollars(m.spot_cost),
               " (on demand: $", FormatDollars(m.on_demand_equivalent_cost), "), ",
               m.spot_interruptions, " interruption", m.spot_interruptions == 1 ? "" : "s", "\n");
  }
  return out;
}

}  // namespace ember::ledger
