/* Usage export at the completion point: proxy_on_log reads how the request ended (tokens, cost,
 * finish reason, outcome, HTTP status) through proxy_get_property and writes one line per
 * request to the log, with this instance's running totals, e.g.
 *   usage request=req-1 tenant=acme model=tiny outcome=finished status=200 finish=stop
 *     prompt=5 completion=12 cached=0 cost_microdollars=3 totals: requests=7 prompt=35
 *     completion=84
 * A real exporter would send the same fields to a collector; the log stands in for it here.
 * A property the request does not have (no cost without prices, no finish reason for a request
 * refused before the model) is written as "-". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

PW_ABI_BOILERPLATE

static uint64_t requests, prompt_total, completion_total;

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
  completion_total += strtoull(completion, NULL, 10);
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
