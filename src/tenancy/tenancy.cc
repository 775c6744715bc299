#include "tenancy/tenancy.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <tuple>

#include "common/log.h"
#include "common/sha256.h"

namespace ember::tenancy {

struct LimitState {
  Limits limits;
  std::optional<TokenBucket> rpm, input, output;
  std::int64_t in_flight = 0;
  std::int64_t queued = 0;

  void Configure(const Limits& l, SteadyTime now) {
    limits = l;
    auto set = [now](std::optional<TokenBucket>& bucket, const std::optional<std::int64_t>& rate) {
      if (!rate) {
        bucket.reset();
      } else if (bucket) {
        bucket->SetCapacity(*rate, now);
      } else {
        bucket.emplace(*rate, now);
      }
    };
    set(rpm, l.rpm);
    set(input, l.input_tpm);
    set(output, l.output_tpm);
  }
};

namespace {

std::string ModelKey(const std::string& tenant, const std::string& model) {
  std::string key = tenant;
  key += '\x1f';
  key += model;
  return key;
}

double SecondsOf(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

Rejection RateRejection(std::string message, std::chrono::nanoseconds wait) {
  Rejection r{Error{ErrorCode::kResourceExhausted, std::move(message), ""}, RejectReason::kRate,
              std::nullopt};
  if (wait != TokenBucket::kNever) r.retry_after = wait;
  return r;
}

std::string Described(const std::string& tenant) {
  return tenant.empty() ? std::string("this server") : StrCat("tenant '", tenant, "'");
}

std::string RetryText(std::chrono::nanoseconds wait) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", SecondsOf(wait));
  return buf;
}

}  // namespace

std::string_view RejectReasonName(RejectReason r) {
  switch (r) {
    case RejectReason::kAuth:
      return "auth";
    case RejectReason::kRate:
      return "rate";
    case RejectReason::kConcurrency:
      return "concurrency";
    case RejectReason::kQueue:
      return "queue";
  }
  return "auth";
}

std::string FormatResetDuration(std::chrono::nanoseconds d) {
  using namespace std::chrono;
  if (d <= nanoseconds(0)) return "0s";
  if (d < seconds(1)) {
    // Rounded up: a client that waits this long finds the bucket refilled.
    return StrCat((d.count() + 999'999) / 1'000'000, "ms");
  }
  const std::int64_t s = (d.count() + 999'999'999) / 1'000'000'000;
  if (s < 60) return StrCat(s, "s");
  if (s < 3600) return StrCat(s / 60, "m", s % 60, "s");
  return StrCat(s / 3600, "h", (s % 3600) / 60, "m", s % 60, "s");
}

// --- Grant -------------------------------------------------------------------------------

Grant::Grant(Tenancy& tenancy, Caller caller, std::shared_ptr<LimitState> tenant,
             std::shared_ptr<LimitState> model)
    : tenancy_(tenancy),
      caller_(std::move(caller)),
      tenant_(std::move(tenant)),
      model_(std::move(model)) {}

Grant::~Grant() { Settle(0); }

std::optional<std::int64_t> Grant::max_tokens_cap() const {
  std::lock_guard lock(tenancy_.mu_);
  std::optional<std::int64_t> cap;
  for (const LimitState* s : {tenant_.get(), model_.get()}) {
    if (s != nullptr && s->limits.max_tokens) {
      cap = cap ? std::min(*cap, *s->limits.max_tokens) : *s->limits.max_tokens;
    }
  }
  return cap;
}

std::optional<Rejection> Grant::Reserve(std::int64_t input, std::int64_t output) {
  std::lock_guard lock(tenancy_.mu_);
  const SteadyTime now = tenancy_.clock_.Now();
  struct Taken {
    TokenBucket* bucket;
    std::int64_t n;
  };
  std::array<Taken, 4> taken{};  // at most two buckets in each of two states
  std::size_t n_taken = 0;
  auto rollback = [&] {
    for (std::size_t i = 0; i < n_taken; ++i) taken[i].bucket->Refund(taken[i].n, now);
  };
  for (LimitState* s : {tenant_.get(), model_.get()}) {
    if (s == nullptr) continue;
    const bool per_model = s == model_.get();
    // Built only for a refusal: the path that lets a request through allocates nothing here.
    auto scope = [&] {
      return per_model ? StrCat(Described(caller_.tenant), " on this model")
                       : Described(caller_.tenant);
    };
    for (auto [bucket, n, what] : {std::tuple{&s->input, input, "input tokens per minute"},
                                   std::tuple{&s->output, output, "output tokens per minute"}}) {
      if (!*bucket) continue;
      const std::chrono::nanoseconds wait = (*bucket)->TryTake(n, now);
      if (wait.count() == 0) {
        taken[n_taken++] = {&**bucket, n};
        continue;
      }
      rollback();
      const std::int64_t limit = (*bucket)->capacity();
      if (wait == TokenBucket::kNever) {
        return RateRejection(
            StrCat("request too large for ", scope(), ": it needs ", n, " ", what,
                   " but the limit is ", limit,
                   std::string_view(what).starts_with("output") ? "; lower max_tokens"
                                                                : "; shorten the prompt"),
            wait);
      }
      return RateRejection(StrCat("rate limit reached for ", scope(), ": ", what, " (limit ", limit,
                                  "); retry in ", RetryText(wait), " s"),
                           wait);
    }
  }
  reserved_output_ = output;
  return std::nullopt;
}

void Grant::Started() {
  std::lock_guard lock(tenancy_.mu_);
  if (!queued_ || settled_) return;
  queued_ = false;
  for (LimitState* s : {tenant_.get(), model_.get()})
    if (s != nullptr) --s->queued;
}

void Grant::Settle(std::int64_t output_used) {
  std::lock_guard lock(tenancy_.mu_);
  if (settled_) return;
  settled_ = true;
  const SteadyTime now = tenancy_.clock_.Now();
  const std::int64_t unused = std::max<std::int64_t>(0, reserved_output_ - output_used);
  for (LimitState* s : {tenant_.get(), model_.get()}) {
    if (s == nullptr) continue;
    --s->in_flight;
    if (queued_) --s->queued;
    if (s->output) s->output->Refund(unused, now);
  }
  queued_ = false;
}

namespace {

void AppendHeaders(HeaderList& out, LimitState* s, SteadyTime now) {
  if (s == nullptr) return;
  auto add = [&](std::string_view what, TokenBucket& b) {
    out.emplace_back(StrCat("x-ratelimit-limit-", what), StrCat(b.capacity()));
    out.emplace_back(StrCat("x-ratelimit-remaining-", what), StrCat(b.Available(now)));
    out.emplace_back(StrCat("x-ratelimit-reset-", what), FormatResetDuration(b.UntilFull(now)));
  };
  if (s->rpm) add("requests", *s->rpm);
  // OpenAI has one tokens/min limit; ember has two. "tokens" is the output limit when set
  // (the scarcer one on a generation server), else the input limit; both are also given
  // under their own names.
  if (s->output) {
    add("tokens", *s->output);
  } else if (s->input) {
    add("tokens", *s->input);
  }
  if (s->input) add("input-tokens", *s->input);
  if (s->output) add("output-tokens", *s->output);
}

}  // namespace

HeaderList Grant::RateLimitHeaders() const {
  std::lock_guard lock(tenancy_.mu_);
  HeaderList out;
  AppendHeaders(out, tenant_.get(), tenancy_.clock_.Now());
  return out;
}

// --- Tenancy -----------------------------------------------------------------------------

Tenancy::Tenancy(Clock& clock) : clock_(clock) {}
Tenancy::~Tenancy() = default;

void Tenancy::Apply(const Config& config) {
  std::lock_guard lock(mu_);
  const SteadyTime now = clock_.Now();
  std::map<std::string, Tenant> tenants;
  std::map<std::string, std::shared_ptr<LimitState>> states, model_states;
  for (const Tenant& t : config.tenants) {
    tenants[t.name] = t;
    auto it = states_.find(t.name);
    auto state = it != states_.end() ? it->second : std::make_shared<LimitState>();
    state->Configure(t.limits, now);
    states[t.name] = state;
    for (const auto& [model, limits] : t.model_limits) {
      const std::string key = ModelKey(t.name, model);
      auto mit = model_states_.find(key);
      auto ms = mit != model_states_.end() ? mit->second : std::make_shared<LimitState>();
      ms->Configure(limits, now);
      model_states[key] = ms;
    }
  }
  std::unordered_map<std::string, Key> keys;
  for (const ApiKey& k : config.keys) keys[k.sha256_hex] = Key{k.id, k.tenant, k.sha256_hex};
  tenants_ = std::move(tenants);
  keys_by_hash_ = std::move(keys);
  states_ = std::move(states);
  model_states_ = std::move(model_states);
}

bool Tenancy::open() const {
  std::lock_guard lock(mu_);
  return tenants_.empty();
}

Admitted<Caller> Tenancy::Authenticate(std::string_view authorization) const {
  auto reject = [](ErrorCode code, std::string message) {
    return std::unexpected(
        Rejection{Error{code, std::move(message), ""}, RejectReason::kAuth, std::nullopt});
  };
  std::string_view key = authorization;
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  constexpr std::string_view kBearer = "bearer ";
  const bool bearer = key.size() >= kBearer.size() &&
                      std::equal(kBearer.begin(), kBearer.end(), key.begin(), [](char a, char b) {
                        return a == (b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b);
                      });
  if (bearer) key.remove_prefix(kBearer.size());
  while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  {
    std::lock_guard lock(mu_);
    if (tenants_.empty()) return Caller{};
  }
  if (authorization.empty() || !bearer || key.empty()) {
    return reject(ErrorCode::kUnauthenticated,
                  "this server requires an API key: send the header Authorization: Bearer <key>");
  }
  const std::string hash = Sha256Hex(key);  // outside the lock: the only costly part
  std::lock_guard lock(mu_);
  auto it = keys_by_hash_.find(hash);
  if (it == keys_by_hash_.end() || !ConstantTimeEqual(it->second.sha256_hex, hash)) {
    return reject(ErrorCode::kUnauthenticated, "invalid API key (revoked or never issued)");
  }
  auto tenant = tenants_.find(it->second.tenant);
  if (tenant == tenants_.end()) {
    return reject(ErrorCode::kUnauthenticated, "invalid API key (its tenant no longer exists)");
  }
  if (!tenant->second.enabled) {
    return reject(
        ErrorCode::kPermissionDenied,
        StrCat("tenant '", tenant->first, "' is disabled; ask the operator to enable it"));
  }
  return Caller{tenant->first, it->second.id, tenant->second.weight, tenant->second.priority};
}

std::shared_ptr<LimitState> Tenancy::StateFor(const std::string& tenant,
                                              const std::string& model) const {
  auto it = model_states_.find(ModelKey(tenant, model));
  return it != model_states_.end() ? it->second : nullptr;
}

Admitted<std::shared_ptr<Grant>> Tenancy::Admit(const Caller& caller, const std::string& model) {
  std::lock_guard lock(mu_);
  if (caller.tenant.empty()) {
    return std::shared_ptr<Grant>(new Grant(*this, caller, nullptr, nullptr));
  }
  auto it = states_.find(caller.tenant);
  if (it == states_.end()) {
    return std::unexpected(Rejection{
        Error{ErrorCode::kUnauthenticated, "invalid API key (its tenant no longer exists)", ""},
        RejectReason::kAuth, std::nullopt});
  }
  std::shared_ptr<LimitState> tenant = it->second;
  std::shared_ptr<LimitState> per_model = StateFor(caller.tenant, model);
  const SteadyTime now = clock_.Now();
  for (LimitState* s : {tenant.get(), per_model.get()}) {
    if (s == nullptr) continue;
    auto scope = [&] {
      return s == per_model.get() ? StrCat(Described(caller.tenant), " on model '", model, "'")
                                  : Described(caller.tenant);
    };
    if (s->limits.max_concurrent && s->in_flight >= *s->limits.max_concurrent) {
      return std::unexpected(
          Rejection{Error{ErrorCode::kResourceExhausted,
                          StrCat("too many concurrent requests for ", scope(), " (limit ",
                                 *s->limits.max_concurrent, "); retry when one has finished"),
                          ""},
                    RejectReason::kConcurrency, std::nullopt});
    }
    if (s->limits.max_queued && s->queued >= *s->limits.max_queued) {
      return std::unexpected(
          Rejection{Error{ErrorCode::kResourceExhausted,
                          StrCat("too many queued requests for ", scope(), " (limit ",
                                 *s->limits.max_queued, "); retry later"),
                          ""},
                    RejectReason::kQueue, std::nullopt});
    }
  }
  TokenBucket* took = nullptr;
  for (LimitState* s : {tenant.get(), per_model.get()}) {
    if (s == nullptr || !s->rpm) continue;
    const std::chrono::nanoseconds wait = s->rpm->TryTake(1, now);
    if (wait.count() != 0) {
      if (took != nullptr) took->Refund(1, now);
      const std::string scope = s == per_model.get()
                                    ? StrCat(Described(caller.tenant), " on model '", model, "'")
                                    : Described(caller.tenant);
      return std::unexpected(
          RateRejection(StrCat("rate limit reached for ", scope, ": requests per minute (limit ",
                               s->rpm->capacity(), "); retry in ", RetryText(wait), " s"),
                        wait));
    }
    took = &*s->rpm;
  }
  for (LimitState* s : {tenant.get(), per_model.get()}) {
    if (s == nullptr) continue;
    ++s->in_flight;
    ++s->queued;
  }
  return std::shared_ptr<Grant>(new Grant(*this, caller, std::move(tenant), std::move(per_model)));
}

HeaderList Tenancy::RateLimitHeaders(const Caller& caller) const {
  std::lock_guard lock(mu_);
  HeaderList out;
  auto it = states_.find(caller.tenant);
  if (it != states_.end()) AppendHeaders(out, it->second.get(), clock_.Now());
  return out;
}

}  // namespace ember::tenancy
