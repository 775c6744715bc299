// The pure half of `ember bench coldstart`: parsing what the servers print and serve, medians,
// and the table and JSON reports.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "bench/coldstart.h"
#include "bench/prompt.h"
#include "common/log.h"

namespace ember::bench {
namespace {

constexpr ServerKind kServers[] = {ServerKind::kEmber, ServerKind::kLlamaServer};

std::string Number(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.6g", value);
  return buf;
}

std::string Fixed(std::optional<double> value, double scale, int width) {
  char buf[48];
  if (!value) {
    std::snprintf(buf, sizeof(buf), "%*s", width, "-");
  } else {
    std::snprintf(buf, sizeof(buf), "%*.1f", width, *value * scale);
  }
  return buf;
}

std::vector<const ColdStartRun*> RunsOf(const ColdStartReport& report, ServerKind kind) {
  std::vector<const ColdStartRun*> runs;
  for (const ColdStartRun& run : report.runs) {
    if (run.server == kind) runs.push_back(&run);
  }
  return runs;
}

// Medians over the successful runs of one server.
struct Medians {
  int ok = 0, total = 0;
  std::optional<double> ready_s, first_token_s, rss_mib, decode_tok_s;
  Phases phases_s;  // in the runs' order, "total" last
};

std::optional<double> MedianOf(const std::vector<const ColdStartRun*>& runs, auto field) {
  std::vector<double> values;
  for (const ColdStartRun* run : runs) {
    if (std::optional<double> value = field(*run)) values.push_back(*value);
  }
  return Median(std::move(values));
}

std::optional<double> FindPhase(const Phases& phases, std::string_view name) {
  for (const auto& [phase, seconds] : phases) {
    if (phase == name) return seconds;
  }
  return std::nullopt;
}

Medians Summarize(const std::vector<const ColdStartRun*>& all) {
  Medians m;
  m.total = static_cast<int>(all.size());
  std::vector<const ColdStartRun*> runs;
  for (const ColdStartRun* run : all) {
    if (!run->ok()) continue;
    runs.push_back(run);
    for (const auto& [name, seconds] : run->phases_s) {
      if (!FindPhase(m.phases_s, name)) m.phases_s.emplace_back(name, 0);
    }
  }
  m.ok = static_cast<int>(runs.size());
  m.ready_s = MedianOf(runs, [](const ColdStartRun& r) { return r.exec_to_ready_s; });
  m.first_token_s = MedianOf(runs, [](const ColdStartRun& r) { return r.exec_to_first_token_s; });
  m.rss_mib = MedianOf(runs, [](const ColdStartRun& r) { return r.peak_rss_mib; });
  m.decode_tok_s = MedianOf(runs, [](const ColdStartRun& r) { return r.decode_tokens_per_s; });
  for (auto& [name, median] : m.phases_s) {
    median = *MedianOf(runs, [&](const ColdStartRun& r) { return FindPhase(r.phases_s, name); });
  }
  // The sum of the others reads best last.
  std::stable_partition(m.phases_s.begin(), m.phases_s.end(),
                        [](const auto& phase) { return phase.first != "total"; });
  return m;
}

std::string PhasesJson(const Phases& phases) {
  std::string out = "{";
  for (const auto& [name, seconds] : phases) {
    if (out.size() > 1) out += ',';
    out += StrCat("\"", JsonEscape(name), "\":", Number(seconds));
  }
  return out + "}";
}

std::string OptionalJson(std::optional<double> value) { return value ? Number(*value) : "null"; }

std::string RunJson(const ColdStartRun& run) {
  std::string out = StrCat("{\"run\":", run.index, ",\"ok\":", run.ok() ? "true" : "false");
  if (!run.ok()) return StrCat(out, ",\"error\":\"", JsonEscape(run.error), "\"}");
  out += ",\"exec_to_ready_s\":" + Number(run.exec_to_ready_s);
  out += ",\"exec_to_first_token_s\":" + Number(run.exec_to_first_token_s);
  out += ",\"peak_rss_mib\":" + Number(run.peak_rss_mib);
  out += ",\"decode_tokens_per_s\":" + OptionalJson(run.decode_tokens_per_s);
  return StrCat(out, ",\"phases_s\":", PhasesJson(run.phases_s), "}");
}

std::string ServerJson(const ColdStartReport& report, ServerKind kind) {
  const auto runs = RunsOf(report, kind);
  const Medians m = Summarize(runs);
  const ColdStartOptions& o = report.options;
  std::string out =
      StrCat("\"", ServerName(kind), "\":{\"bin\":\"",
             JsonEscape(kind == ServerKind::kEmber ? o.ember_bin : o.llama_server_bin), "\"");
  out += StrCat(",\"runs_ok\":", m.ok, ",\"runs_failed\":", m.total - m.ok);
  out += ",\"median\":{\"exec_to_ready_s\":" + OptionalJson(m.ready_s);
  out += ",\"exec_to_first_token_s\":" + OptionalJson(m.first_token_s);
  out += ",\"peak_rss_mib\":" + OptionalJson(m.rss_mib);
  out += ",\"decode_tokens_per_s\":" + OptionalJson(m.decode_tok_s);
  out += StrCat(",\"phases_s\":", PhasesJson(m.phases_s), "}");
  out += ",\"runs\":[";
  for (std::size_t i = 0; i < runs.size(); ++i) out += StrCat(i ? "," : "", RunJson(*runs[i]));
  return out + "]}";
}

}  // namespace

std::string_view ServerName(ServerKind kind) {
  return kind == ServerKind::kEmber ? "ember" : "llama-server";
}

int ColdStartReport::failed() const {
  return static_cast<int>(
      std::count_if(runs.begin(), runs.end(), [](const ColdStartRun& run) { return !run.ok(); }));
}

std::optional<int> ParseListeningPort(std::string_view line) {
  constexpr std::string_view kMarker = "listening on http://";
  const std::size_t at = line.find(kMarker);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view address = line.substr(at + kMarker.size());
  address = address.substr(0, address.find_first_of(" /\t\r"));
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == address.size()) return std::nullopt;
  int port = 0;
  for (char c : address.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return std::nullopt;
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return std::nullopt;
  return port;
}

Phases ParseStartupPhases(std::string_view text) {
  constexpr std::string_view kMetric = "ember_startup_seconds{";
  constexpr std::string_view kPhase = "phase=\"";
  Phases phases;
  while (!text.empty()) {
    const std::size_t eol = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, eol);
    text.remove_prefix(std::min(eol + 1, text.size()));
    if (!line.starts_with(kMetric)) continue;
    const std::size_t close = line.find('}');
    const std::size_t name_at = line.find(kPhase);
    if (close == std::string_view::npos || name_at == std::string_view::npos || name_at > close) {
      continue;
    }
    const std::size_t name_start = name_at + kPhase.size();
    const std::size_t name_end = line.find('"', name_start);
    if (name_end == std::string_view::npos || name_end > close) continue;
    const std::string value(line.substr(close + 1));
    char* end = nullptr;
    const double seconds = std::strtod(value.c_str(), &end);
    if (end == value.c_str() || !std::isfinite(seconds)) continue;
    const std::string_view name = line.substr(name_start, name_end - name_start);
    auto it = std::find_if(phases.begin(), phases.end(),
                           [&](const auto& phase) { return phase.first == name; });
    if (it == phases.end()) {
      phases.emplace_back(name, seconds);
    } else {
      it->second = seconds;
    }
  }
  return phases;
}

std::optional<double> Median(std::vector<double> values) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string FormatColdStartTable(const ColdStartReport& report) {
  const ColdStartOptions& o = report.options;
  std::string out = StrCat("ember bench coldstart: ", o.model_path, ", ", o.runs,
                           " run(s) per server, threads ", o.threads, ", ctx ", o.ctx_size,
                           ", parallel ", o.parallel, ", max_tokens ", o.max_tokens, "\n");
  out += "  server          ok  exec->ready ms  exec->first token ms  peak RSS MiB  decode tok/s\n";
  std::string phases, failures;
  for (ServerKind kind : kServers) {
    const auto runs = RunsOf(report, kind);
    if (runs.empty()) continue;
    const Medians m = Summarize(runs);
    char head[64];
    std::snprintf(head, sizeof(head), "  %-12s %2d/%-2d", std::string(ServerName(kind)).c_str(),
                  m.ok, m.total);
    out += head + Fixed(m.ready_s, 1000, 15) + Fixed(m.first_token_s, 1000, 22) +
           Fixed(m.rss_mib, 1, 14) + Fixed(m.decode_tok_s, 1, 14) + "\n";
    for (const auto& [name, seconds] : m.phases_s) {
      phases += StrCat(phases.empty() ? "" : ", ", name, " ", Fixed(seconds, 1000, 0));
    }
    for (const ColdStartRun* run : runs) {
      if (!run->ok())
        failures += StrCat("  ", ServerName(kind), " run ", run->index, ": ", run->error, "\n");
    }
  }
  if (!phases.empty()) out += "  ember phases, median ms: " + phases + "\n";
  if (!failures.empty()) out += "failed runs:\n" + failures;
  return out;
}

std::string FormatColdStartJson(const ColdStartReport& report) {
  const ColdStartOptions& o = report.options;
  std::string args;
  for (const std::string& arg : o.ember_args) {
    args += StrCat(args.empty() ? "\"" : ",\"", JsonEscape(arg), "\"");
  }
  std::string out = StrCat("{\"model\":\"", JsonEscape(o.model_path), "\"");
  out += StrCat(",\"runs_per_server\":", o.runs, ",\"threads\":", o.threads,
                ",\"ctx_size\":", o.ctx_size, ",\"parallel\":", o.parallel,
                ",\"max_tokens\":", o.max_tokens, ",\"decode_tokens\":", o.decode_tokens);
  out += StrCat(",\"prompt\":\"", JsonEscape(o.prompt), "\",\"ember_args\":[", args, "]");
  out += StrCat(",\"failed_runs\":", report.failed(), ",\"servers\":{");
  bool first = true;
  for (ServerKind kind : kServers) {
    if (RunsOf(report, kind).empty()) continue;
    out += StrCat(first ? "" : ",", ServerJson(report, kind));
    first = false;
  }
  return out + "}}\n";
}

}  // namespace ember::bench
