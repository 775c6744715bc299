// The console's memory of recent requests: a bounded ring of what each generation request went
// through (its timeline from arrival to completion, with the batches its steps shared), filled
// at Generation's completion point and read by GET /admin/requests. Prompt and output text are
// kept only when the operator asks for it (--console-keep-text).
//
// Threads: Add runs on HTTP strands (the completion point), Find/Search on others; one mutex
// guards the ring, held only to move a shared pointer in or copy some out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/money.h"
#include "scheduler/request.h"

namespace ember::server {

struct RequestRecord {
  std::string id;           // x-request-id (the client's, or the response id)
  std::string response_id;  // "chatcmpl-…": the body's id; equal to id unless the client named it
  std::string tenant;       // "" in open mode
  std::string model;
  std::string endpoint;
  std::string outcome;        // OutcomeName
  std::string finish_reason;  // "stop", "length", "tool_calls", "cancelled"; "" if it never ran
  int http_status = 0;
  std::int64_t arrival_unix_ns = 0;
  // Since arrival; absent when the request never got there.
  std::optional<std::int64_t> model_ready_ns;  // its model was loaded (a cold start waited)
  std::optional<std::int64_t> cold_start_ns;   // the load it waited for
  std::optional<std::int64_t> queued_ns;       // submitted to the scheduler
  std::optional<std::int64_t> admitted_ns;     // took a slot
  std::optional<std::int64_t> first_token_ns;
  std::int64_t completed_ns = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t cached_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::optional<Microdollars> cost;  // list price, when the ledger prices the model
  std::optional<Microdollars> infra_cost;
  std::optional<std::uint64_t> seed;
  bool deterministic = false;
  std::string system_fingerprint;
  int choices = 1;
  std::shared_ptr<const scheduler::Trace> trace;  // choice 0's (or input 0's) steps
  std::optional<std::string> prompt_text;         // --console-keep-text only
  std::optional<std::string> output_text;
};

struct RequestFilter {
  std::string tenant;  // "" = any
  std::string model;
  std::string status;  // an outcome name, or "ok" (finished) / "failed" (anything else)
  std::size_t limit = 50;
};

class RequestLog {
 public:
  explicit RequestLog(std::size_t capacity) : capacity_(capacity) {}

  // Keeps `record`, forgetting the oldest when full (a capacity of 0 keeps nothing).
  void Add(RequestRecord record);
  // By x-request-id or response id; the newest when a client reused an id.
  std::shared_ptr<const RequestRecord> Find(const std::string& id) const;
  // Newest first.
  std::vector<std::shared_ptr<const RequestRecord>> Search(const RequestFilter& filter) const;
  std::size_t size() const;
  std::size_t capacity() const { return capacity_; }

 private:
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<const RequestRecord>> ring_;  // GUARDED_BY(mu_); oldest first
};

// GET /admin/requests/{id}: the whole record with its timeline.
std::string RequestRecordJson(const RequestRecord& record);
// One request without its timeline: a line of the list, the feed's "request" event.
std::string RequestSummaryJson(const RequestRecord& record);
// GET /admin/requests: one line per request, without steps.
std::string RequestListJson(const std::vector<std::shared_ptr<const RequestRecord>>& records);

// A client-sent x-request-id, when it is sane: 1..128 characters of [A-Za-z0-9._:-].
bool ValidRequestId(std::string_view id);

}  // namespace ember::server
