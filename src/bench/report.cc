// Summarize, FormatTable and FormatJson: turning samples into the numbers users read.
#include <cmath>
#include <cstdio>
#include <string>

#include "bench/load.h"
#include "bench/prompt.h"
#include "bench/sample.h"
#include "bench/stream_parse.h"

namespace ember::bench {
namespace {

std::string Number(double value) {
  if (!std::isfinite(value)) value = 0;
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.6g", value);
  return buf;
}

std::string Milliseconds(Seconds value) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%10.2f", value.count() * 1000.0);
  return buf;
}

std::string Line(const char* format, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, args...);
  return buf;
}

std::string ErrorsText(const LoadReport& report) {
  std::string text;
  for (const auto& [status, count] : report.errors_by_status) {
    if (!text.empty()) text += ", ";
    text += (status == 0 ? std::string("transport") : std::to_string(status)) + ": " +
            std::to_string(count);
  }
  return text;
}

}  // namespace

LoadReport Summarize(const LoadOptions& options, const std::vector<RequestSample>& samples,
                     Seconds wall) {
  LoadReport report;
  report.label = options.label;
  report.endpoint = options.endpoint;
  report.concurrency = options.concurrency;
  report.requests = options.requests;
  report.max_tokens = options.max_tokens;
  report.stream = options.stream;
  report.wall = wall;
  std::vector<double> ttft, itl, e2e;
  for (const RequestSample& sample : samples) {
    if (!sample.ok) {
      ++report.requests_failed;
      ++report.errors_by_status[sample.status];
      if (report.first_error.empty()) report.first_error = sample.error;
      continue;
    }
    ++report.requests_ok;
    report.output_tokens += sample.completion_tokens;
    report.prompt_tokens += sample.prompt_tokens;
    if (sample.ttft) ttft.push_back(sample.ttft->count());
    e2e.push_back(sample.e2e.count());
    itl.insert(itl.end(), sample.itl_seconds.begin(), sample.itl_seconds.end());
  }
  if (wall.count() > 0) {
    report.requests_per_second = report.requests_ok / wall.count();
    report.output_tokens_per_second = static_cast<double>(report.output_tokens) / wall.count();
  }
  report.ttft_p50 = Seconds(Percentile(ttft, 50));
  report.ttft_p99 = Seconds(Percentile(ttft, 99));
  report.itl_p50 = Seconds(Percentile(itl, 50));
  report.itl_p99 = Seconds(Percentile(itl, 99));
  report.e2e_p50 = Seconds(Percentile(e2e, 50));
  report.e2e_p99 = Seconds(Percentile(e2e, 99));
  return report;
}

std::string FormatTable(const LoadReport& report) {
  std::string out;
  out += "ember bench" + (report.label.empty() ? "" : " [" + report.label + "]") + ": " +
         report.endpoint + ", concurrency " + std::to_string(report.concurrency) + ", " +
         (report.stream ? "streamed" : "not streamed") + ", max_tokens " +
         std::to_string(report.max_tokens) + "\n";
  out += Line("  requests     %d ok, %d failed\n", report.requests_ok, report.requests_failed);
  if (!report.errors_by_status.empty()) {
    out += "  errors       " + ErrorsText(report) + "\n";
    out += "  first error  " + report.first_error + "\n";
  }
  out +=
      Line("  wall         %.3f s, %.2f req/s\n", report.wall.count(), report.requests_per_second);
  out += Line("  tokens       %lld out (%.1f tok/s), %lld prompt\n",
              static_cast<long long>(report.output_tokens), report.output_tokens_per_second,
              static_cast<long long>(report.prompt_tokens));
  out += "  latency (ms)        p50        p99\n";
  out += "  TTFT         " + Milliseconds(report.ttft_p50) + " " + Milliseconds(report.ttft_p99) +
         "\n";
  out +=
      "  ITL          " + Milliseconds(report.itl_p50) + " " + Milliseconds(report.itl_p99) + "\n";
  out +=
      "  E2E          " + Milliseconds(report.e2e_p50) + " " + Milliseconds(report.e2e_p99) + "\n";
  return out;
}

std::string FormatJson(const LoadReport& report) {
  std::string errors;
  for (const auto& [status, count] : report.errors_by_status) {
    if (!errors.empty()) errors += ',';
    errors.append("\"").append(std::to_string(status)).append("\":");
    errors.append(std::to_string(count));
  }
  std::string out = "{";
  out += "\"label\":\"" + JsonEscape(report.label) + "\"";
  out += ",\"endpoint\":\"" + JsonEscape(report.endpoint) + "\"";
  out += ",\"concurrency\":" + std::to_string(report.concurrency);
  out += ",\"requests\":" + std::to_string(report.requests);
  out += ",\"max_tokens\":" + std::to_string(report.max_tokens);
  out += std::string(",\"stream\":") + (report.stream ? "true" : "false");
  out += ",\"requests_ok\":" + std::to_string(report.requests_ok);
  out += ",\"requests_failed\":" + std::to_string(report.requests_failed);
  out += ",\"errors_by_status\":{" + errors + "}";
  out += ",\"first_error\":\"" + JsonEscape(report.first_error) + "\"";
  out += ",\"wall_s\":" + Number(report.wall.count());
  out += ",\"requests_per_s\":" + Number(report.requests_per_second);
  out += ",\"output_tokens\":" + std::to_string(report.output_tokens);
  out += ",\"output_tokens_per_s\":" + Number(report.output_tokens_per_second);
  out += ",\"prompt_tokens\":" + std::to_string(report.prompt_tokens);
  out += ",\"ttft_p50_s\":" + Number(report.ttft_p50.count());
  out += ",\"ttft_p99_s\":" + Number(report.ttft_p99.count());
  out += ",\"itl_p50_s\":" + Number(report.itl_p50.count());
  out += ",\"itl_p99_s\":" + Number(report.itl_p99.count());
  out += ",\"e2e_p50_s\":" + Number(report.e2e_p50.count());
  out += ",\"e2e_p99_s\":" + Number(report.e2e_p99.count());
  out += "}\n";
  return out;
}

}  // namespace ember::bench
