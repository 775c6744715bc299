/* Usage export at the completion point: proxy_on_log reads how the request ended (tokens, cost,
 * finish reason, outcome, HTTP status) through proxy_get_property and writes one line per
 * request to the log, with this instance's running totals, e.g.
 *   usage request=req-1 tenant=acme model=tiny outcome=finished status=200 finish=stop
 *     prompt=5 completion=12 cached=0 cost_microdollars=3 totals: requests=7 prompt=35
 *     completion=84
 * A real exporter would send the same fields to a collector; the log stands in for it here.
 * A property the request does not have (no cost without prices, no finish reason for a request
 * refused before the model) is written as "-".
 * It also keeps its own metrics (proxy_define_metric), which ember serves on /metrics as
 * ember_plugin_counter_total{plugin,name="requests"|"completion_tokens"} and
 * ember_plugin_histogram{plugin,name="completion_tokens_per_request"}: shared by every instance,
 * unlike the log line's per-instance totals. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

PW_ABI_BOILERPLATE

static uint64_t requests, prompt_total, completion_total;
static uint32_t requests_metric, tokens_metric, tokens_histogram;
static int metrics_defined;

#define define_metric(type, literal, id) \
  (proxy_define_metric(type, literal, sizeof literal - 1, id) == PW_OK)

PW_EXPORT(proxy_on_vm_start) int32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  (void)root;
  (void)size;
  /* A host without the metric hostcalls answers Unimplemented: the plugin still exports lines. */
  metrics_defined = define_metric(PW_METRIC_COUNTER, "requests", &requests_metric) &&
                    define_metric(PW_METRIC_COUNTER, "completion_tokens", &tokens_metric) &&
                    define_metric(PW_METRIC_HISTOGRAM, "completion_tokens_per_request",
                                  &tokens_histogram);
  return 1;
}

/* The property at `path` as text in out[size] ("-" when absent). */
static void property_of(const char* path, size_t path_size, char* out, size_t size) {
  char* value = NULL;
  size_t n = 0;
  if (proxy_get_property(path, path_size, &value, &n) != PW_OK || n == 0) {
    snprintf(out, size, "-");
  } else {
    snprintf(out, size, "%.*s", (int)n, value);
  }
  free(value);
}
#define property(literal, out, size) property_of(literal, sizeof literal - 1, out, size)

PW_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context) {
  (void)context;
  char id[128], tenant[128], model[128], outcome[32], status[16], finish[32], prompt[24],
      completion[24], cached[24], cost[24];
  property("request_id", id, sizeof id);
  property("tenant", tenant, sizeof tenant);
  property("model", model, sizeof model);
  property("outcome", outcome, sizeof outcome);
  property("http_status", status, sizeof status);
  property("finish_reason", finish, sizeof finish);
  property("usage\0prompt_tokens", prompt, sizeof prompt); /* a path of two segments */
  property("usage.completion_tokens", completion, sizeof completion);
  property("usage.cached_tokens", cached, sizeof cached);
  property("cost_microdollars", cost, sizeof cost);
  ++requests;
  prompt_total += strtoull(prompt, NULL, 10);
  const uint64_t completion_tokens = strtoull(completion, NULL, 10);
  completion_total += completion_tokens;
  if (metrics_defined) {
    proxy_increment_metric(requests_metric, 1);
    proxy_increment_metric(tokens_metric, (int64_t)completion_tokens);
    proxy_record_metric(tokens_histogram, completion_tokens);
  }
  char line[1024];
  int n = snprintf(line, sizeof line,
                   "usage request=%s tenant=%s model=%s outcome=%s status=%s finish=%s prompt=%s "
                   "completion=%s cached=%s cost_microdollars=%s totals: requests=%llu prompt=%llu "
                   "completion=%llu",
                   id, tenant, model, outcome, status, finish, prompt, completion, cached, cost,
                   (unsigned long long)requests, (unsigned long long)prompt_total,
                   (unsigned long long)completion_total);
  if (n > 0) proxy_log(PW_LOG_INFO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
