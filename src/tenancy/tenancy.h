// Tenancy at run time: who is calling (API key -> tenant) and whether the tenant may start one
// more request now (rate buckets, concurrency, queue, token reservations). Pure logic over a
// Config and a Clock; the server wires it to HTTP and the scheduler.
//
// A request's life here: Authenticate -> Admit (requests/min, concurrency, queue) -> Reserve
// (prompt tokens exactly, output tokens at the request's max_tokens) -> Started (it took a
// slot) -> Settle (unused output tokens refunded, in-flight count released). Settle runs
// exactly once per Grant (the server's completion point; the Grant's destructor is the
// safety net), so no burst of concurrent requests can overshoot a limit.
//
// Thread-safe: every call takes one mutex (short, no I/O). Keys are looked up by their SHA-256
// and compared in constant time; a key never leaves Authenticate (not in errors, not kept).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/error.h"
#include "tenancy/bucket.h"
#include "tenancy/config.h"

namespace ember::tenancy {

// Why a request was refused, for metrics: rejections by reason.
enum class RejectReason { kAuth, kRate, kConcurrency, kQueue };
std::string_view RejectReasonName(RejectReason r);  // "auth" | "rate" | "concurrency" | "queue"

struct Rejection {
  Error error;  // kUnauthenticated (401), kPermissionDenied (403) or kResourceExhausted (429)
  RejectReason reason = RejectReason::kAuth;
  // For 429s: when the limit will let the same request through (Retry-After); none for limits
  // that do not refill in time (concurrency, queue) or can never pass.
  std::optional<std::chrono::nanoseconds> retry_after;
};

template <typename T>
using Admitted = std::expected<T, Rejection>;

// The tenant a request runs for, as the rest of the server sees it.
struct Caller {
  std::string tenant;  // empty in open mode (no tenants configured)
  std::string key_id;
  double weight = 1.0;
  Priority priority = Priority::kInteractive;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class Tenancy;
struct LimitState;

// One admitted request's hold on its tenant's limits. Movable only through the shared_ptr
// Admit returns; everything it holds is released by Settle (or its destructor).
class Grant {
 public:
  ~Grant();
  Grant(const Grant&) = delete;
  Grant& operator=(const Grant&) = delete;

  const Caller& caller() const { return caller_; }
  // The most output tokens the request may generate: its max_tokens, capped by the tenant's
  // (and the model's) max_tokens limit. nullopt = no cap.
  std::optional<std::int64_t> max_tokens_cap() const;
  // Takes `input` prompt tokens and reserves `output` completion tokens from the token/min
  // buckets (tenant and tenant x model), all or nothing.
  std::optional<Rejection> Reserve(std::int64_t input, std::int64_t output);
  // The request left the wait queue (it took a sequence slot).
  void Started();
  // The request ended having generated `output_used` tokens: refunds the rest of the output
  // reservation and releases its concurrency (and queue) place. Idempotent.
  void Settle(std::int64_t output_used);
  // OpenAI's x-ratelimit-* headers for the tenant's limits as they stand now.
  HeaderList RateLimitHeaders() const;

 private:
  friend class Tenancy;
  Grant(Tenancy& tenancy, Caller caller, std::shared_ptr<LimitState> tenant,
        std::shared_ptr<LimitState> model);

  Tenancy& tenancy_;
  Caller caller_;
  std::shared_ptr<LimitState> tenant_;
  std::shared_ptr<LimitState> model_;  // per tenant x model limits; may be null
  std::int64_t reserved_output_ = 0;
  bool queued_ = true;
  bool settled_ = false;
};

class Tenancy {
 public:
  explicit Tenancy(Clock& clock);
  ~Tenancy();

  // Replaces the configuration. Buckets of tenants (and tenant x model pairs) that stay keep
  // what they consumed; requests in flight keep their grants and settle normally.
  void Apply(const Config& config);
  // No tenant configured: every request is let in, anonymously, without limits.
  bool open() const;

  // `authorization`: the request's Authorization header ("Bearer <key>"), possibly empty.
  Admitted<Caller> Authenticate(std::string_view authorization) const;
  // Requests/min, max concurrent and max queued of the tenant and of the tenant x `model`.
  Admitted<std::shared_ptr<Grant>> Admit(const Caller& caller, const std::string& model);
  // x-ratelimit-* headers for a caller without a grant (a request refused before admission).
  HeaderList RateLimitHeaders(const Caller& caller) const;

 private:
  friend class Grant;
  struct Key {
    std::string id;
    std::string tenant;
    std::string sha256_hex;
  };
  std::shared_ptr<LimitState> StateFor(const std::string& tenant, const std::string& model) const;

  Clock& clock_;
  mutable std::mutex mu_;
  std::map<std::string, Tenant> tenants_;                      // GUARDED_BY(mu_)
  std::unordered_map<std::string, Key> keys_by_hash_;          // GUARDED_BY(mu_)
  std::map<std::string, std::shared_ptr<LimitState>> states_;  // GUARDED_BY(mu_)
  // "tenant\x1fmodel" -> state, for tenants with limits on that model.
  std::map<std::string, std::shared_ptr<LimitState>> model_states_;  // GUARDED_BY(mu_)
};

// Go-style durations as OpenAI writes them in x-ratelimit-reset-*: "250ms", "1s", "6m0s".
std::string FormatResetDuration(std::chrono::nanoseconds d);

}  // namespace ember::tenancy
