#include "server/request_log.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include "api/openai.h"

namespace ember::server {

void RequestLog::Add(RequestRecord record) {
  if (capacity_ == 0) return;
  auto kept = std::make_shared<const RequestRecord>(std::move(record));
  std::shared_ptr<const RequestRecord> forgotten;  // freed outside the lock
  std::lock_guard lock(mu_);
  if (ring_.size() >= capacity_) {
    forgotten = std::move(ring_.front());
    ring_.pop_front();
  }
  ring_.push_back(std::move(kept));
}

std::shared_ptr<const RequestRecord> RequestLog::Find(const std::string& id) const {
  std::lock_guard lock(mu_);
  for (auto it = ring_.rbegin(); it != ring_.rend(); ++it) {
    if ((*it)->id == id || (*it)->response_id == id) return *it;
  }
  return nullptr;
}

std::vector<std::shared_ptr<const RequestRecord>> RequestLog::Search(
    const RequestFilter& filter) const {
  std::vector<std::shared_ptr<const RequestRecord>> out;
  std::lock_guard lock(mu_);
  for (auto it = ring_.rbegin(); it != ring_.rend() && out.size() < filter.limit; ++it) {
    const RequestRecord& r = **it;
    if (!filter.tenant.empty() && r.tenant != filter.tenant) continue;
    if (!filter.model.empty() && r.model != filter.model) continue;
    if (!filter.status.empty()) {
      const bool ok = r.outcome == "finished";
      if (filter.status == "ok" ? !ok : filter.status == "failed" ? ok : r.outcome != filter.status)
        continue;
    }
    out.push_back(*it);
  }
  return out;
}

std::size_t RequestLog::size() const {
  std::lock_guard lock(mu_);
  return ring_.size();
}

bool ValidRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
  });
}

namespace {

void AppendInt(std::string& out, std::int64_t value) {
  char buf[24];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, result.ptr);
}
void AppendQuoted(std::string& out, std::string_view text) {
  out += '"';
  api::AppendJsonEscaped(out, text);
  out += '"';
}

std::int64_t Micros(std::int64_t ns) { return ns / 1000; }

void Field(std::string& out, std::string_view name) {
  if (out.back() != '{') out += ',';
  AppendQuoted(out, name);
  out += ':';
}
void Str(std::string& out, std::string_view name, std::string_view value) {
  Field(out, name);
  AppendQuoted(out, value);
}
void Int(std::string& out, std::string_view name, std::int64_t value) {
  Field(out, name);
  AppendInt(out, value);
}

// The fields a list line and the full record share.
void Summary(std::string& out, const RequestRecord& r) {
  Str(out, "id", r.id);
  Str(out, "response_id", r.response_id);
  Str(out, "tenant", r.tenant);
  Str(out, "model", r.model);
  Str(out, "endpoint", r.endpoint);
  Str(out, "outcome", r.outcome);
  Field(out, "finish_reason");
  if (r.finish_reason.empty()) {
    out += "null";
  } else {
    AppendQuoted(out, r.finish_reason);
  }
  Int(out, "http_status", r.http_status);
  Int(out, "arrival_unix_ms", r.arrival_unix_ns / 1'000'000);
  Int(out, "duration_us", Micros(r.completed_ns));
  Field(out, "ttft_us");
  if (r.first_token_ns) {
    AppendInt(out, Micros(*r.first_token_ns));
  } else {
    out += "null";
  }
  Field(out, "usage");
  out += '{';
  Int(out, "prompt_tokens", r.prompt_tokens);
  Int(out, "cached_tokens", r.cached_tokens);
  Int(out, "completion_tokens", r.completion_tokens);
  out += '}';
  Field(out, "cost_microdollars");
  if (r.cost) {
    AppendInt(out, *r.cost);
  } else {
    out += "null";
  }
}

struct TimelineEntry {
  std::int64_t at_ns;
  int order;  // ties: the order events happen in
  std::string json;
};

std::string Event(std::string_view name, std::int64_t at_ns) {
  std::string out = "{";
  Str(out, "event", name);
  Int(out, "at_us", Micros(at_ns));
  return out;
}

std::vector<TimelineEntry> Timeline(const RequestRecord& r) {
  std::vector<TimelineEntry> events;
  int order = 0;
  auto add = [&](std::int64_t at, std::string json) {
    events.push_back({at, order++, std::move(json) + "}"});
  };
  add(0, Event("arrival", 0));
  if (r.model_ready_ns) {
    std::string e = Event("model_ready", *r.model_ready_ns);
    if (r.cold_start_ns) Int(e, "cold_start_us", Micros(*r.cold_start_ns));
    add(*r.model_ready_ns, std::move(e));
  }
  if (r.queued_ns) add(*r.queued_ns, Event("queued", *r.queued_ns));
  if (r.trace) {
    const scheduler::Trace& t = *r.trace;
    for (const scheduler::TraceMark& m : t.marks) {
      add(m.at.count(), Event(scheduler::TraceMarkName(m.kind), m.at.count()));
    }
    for (const scheduler::TraceStep& s : t.steps) {
      std::string e = Event(s.prefill ? "prefill" : "decode", s.start.count());
      Int(e, "step", static_cast<std::int64_t>(s.step));
      Int(e, "took_us", Micros(s.took.count()));
      Int(e, "tokens", s.tokens);
      Int(e, "batch_tokens", s.batch_tokens);
      Field(e, "shared_with");
      e += '[';
      for (std::uint32_t i = s.peers_begin; i < s.peers_end; ++i) {
        if (i != s.peers_begin) e += ',';
        e += '{';
        Str(e, "id", t.peer_ids[t.peers[i].id]);
        Int(e, "tokens", t.peers[i].tokens);
        e += '}';
      }
      e += ']';
      add(s.start.count(), std::move(e));
    }
  } else {
    if (r.admitted_ns) add(*r.admitted_ns, Event("admitted", *r.admitted_ns));
    if (r.first_token_ns) add(*r.first_token_ns, Event("first_token", *r.first_token_ns));
  }
  add(r.completed_ns, Event("completed", r.completed_ns));
  std::stable_sort(events.begin(), events.end(), [](const auto& a, const auto& b) {
    return a.at_ns != b.at_ns ? a.at_ns < b.at_ns : a.order < b.order;
  });
  return events;
}

}  // namespace

std::string RequestRecordJson(const RequestRecord& r) {
  std::string out = "{";
  Summary(out, r);
  Field(out, "infra_cost_microdollars");
  if (r.infra_cost) {
    AppendInt(out, *r.infra_cost);
  } else {
    out += "null";
  }
  Field(out, "seed");
  if (r.seed) {
    out += std::to_string(*r.seed);
  } else {
    out += "null";
  }
  Field(out, "deterministic");
  out += r.deterministic ? "true" : "false";
  Str(out, "system_fingerprint", r.system_fingerprint);
  Int(out, "choices", r.choices);
  Int(out, "steps_total", r.trace ? r.trace->steps_total : 0);
  Int(out, "steps_kept", r.trace ? static_cast<std::int64_t>(r.trace->steps.size()) : 0);
  if (r.prompt_text) Str(out, "prompt", *r.prompt_text);
  if (r.output_text) Str(out, "output", *r.output_text);
  Field(out, "timeline");
  out += '[';
  bool first = true;
  for (const TimelineEntry& e : Timeline(r)) {
    if (!first) out += ',';
    first = false;
    out += e.json;
  }
  out += "]}";
  return out;
}

std::string RequestSummaryJson(const RequestRecord& record) {
  std::string out = "{";
  Summary(out, record);
  out += '}';
  return out;
}

std::string RequestListJson(const std::vector<std::shared_ptr<const RequestRecord>>& records) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (i > 0) out += ',';
    out += '{';
    Summary(out, *records[i]);
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace ember::server
