#include "tenancy/tenancy.h"

#include <gtest/gtest.h>

#include "common/sha256.h"

namespace ember::tenancy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Config TwoTenants() {
  Config c;
  Tenant acme;
  acme.name = "acme";
  acme.weight = 2;
  acme.limits.rpm = 2;
  acme.limits.output_tpm = 100;
  acme.limits.max_concurrent = 3;
  acme.limits.max_tokens = 40;
  acme.model_limits["small"].input_tpm = 50;
  Tenant off;
  off.name = "off";
  off.enabled = false;
  c.tenants = {acme, off};
  c.keys = {{"key_000000000001", "acme", Sha256Hex("ek_acme"), 1},
            {"key_000000000002", "off", Sha256Hex("ek_off"), 1}};
  return c;
}

TEST(TenancyTest, OpenWithoutTenants) {
  FakeClock clock;
  Tenancy t(clock);
  EXPECT_TRUE(t.open());
  auto caller = t.Authenticate("");
  ASSERT_TRUE(caller);
  EXPECT_EQ(caller->tenant, "");
  auto grant = t.Admit(*caller, "m");
  ASSERT_TRUE(grant);
  EXPECT_FALSE((*grant)->Reserve(1'000'000, 1'000'000));
  EXPECT_TRUE((*grant)->RateLimitHeaders().empty());
}

TEST(TenancyTest, AuthenticationMapsKeysToTenantsAndRefusesTheRest) {
  FakeClock clock;
  Tenancy t(clock);
  t.Apply(TwoTenants());
  auto ok = t.Authenticate("Bearer ek_acme");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->tenant, "acme");
  EXPECT_EQ(ok->key_id, "key_000000000001");
  EXPECT_EQ(ok->weight, 2);
  EXPECT_TRUE(t.Authenticate("bearer ek_acme")) << "the scheme is case-insensitive";

  for (const char* header : {"", "Bearer ", "Basic ek_acme", "Bearer ek_nope", "ek_acme"}) {
    auto r = t.Authenticate(header);
    ASSERT_FALSE(r) << header;
    EXPECT_EQ(r.error().error.code, ErrorCode::kUnauthenticated) << header;
    EXPECT_EQ(r.error().reason, RejectReason::kAuth);
    EXPECT_EQ(r.error().error.message.find("ek_"), std::string::npos) << "never echo a key";
  }
  auto disabled = t.Authenticate("Bearer ek_off");
  ASSERT_FALSE(disabled);
  EXPECT_EQ(disabled.error().error.code, ErrorCode::kPermissionDenied);
}

TEST(TenancyTest, ARevokedKeyIsRefusedWhileItsGrantSettlesNormally) {
  FakeClock clock;
  Tenancy t(clock);
  t.Apply(TwoTenants());
  auto caller = t.Authenticate("Bearer ek_acme");
  ASSERT_TRUE(caller);
  auto grant = t.Admit(*caller, "big");
  ASSERT_TRUE(grant);
  ASSERT_FALSE((*grant)->Reserve(10, 40));
  Config revoked = TwoTenants();
  revoked.keys.erase(revoked.keys.begin());
  t.Apply(revoked);
  EXPECT_FALSE(t.Authenticate("Bearer ek_acme"));
  (*grant)->Settle(10);                  // the in-flight request ends normally; its refund lands
  auto fresh = t.Admit(*caller, "big");  // (a caller authenticated before the revocation)
  ASSERT_TRUE(fresh);
  EXPECT_FALSE((*fresh)->Reserve(0, 90)) << "100 - 10 used = 90 left after the refund";
}

TEST(TenancyTest, RequestsPerMinuteWithRetryAfter) {
  FakeClock clock;
  Tenancy t(clock);
  t.Apply(TwoTenants());
  const Caller caller = *t.Authenticate("Bearer ek_acme");
  auto a = t.Admit(caller, "big");
  auto b = t.Admit(caller, "big");
  ASSERT_TRUE(a && b);
  auto c = t.Admit(caller, "big");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().reason, RejectReason::kRate);
  EXPECT_EQ(c.error().error.code, ErrorCode::kResourceExhausted);
  ASSERT_TRUE(c.error().retry_after);
  EXPECT_EQ(*c.error().retry_after, seconds(30)) << "2/min: one request every 30 s";
  clock.Advance(seconds(30));
  EXPECT_TRUE(t.Admit(caller, "big"));
}

TEST(TenancyTest, ConcurrencyIsReleasedAtSettle) {
  FakeClock clock;
  Tenancy t(clock);
  Config c = TwoTenants();
  c.tenants[0].limits.rpm.reset();
  t.Apply(c);
  const Caller caller = *t.Authenticate("Bearer ek_acme");
  std::vector<std::shared_ptr<Grant>> held;
  for (int i = 0; i < 3; ++i) held.push_back(*t.Admit(caller, "big"));
  auto over = t.Admit(caller, "big");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().reason, RejectReason::kConcurrency);
  EXPECT_FALSE(over.error().retry_after);
  held[0]->Settle(0);
  held[0]->Settle(0);  // idempotent: releases one place, not two
  auto again = t.Admit(caller, "big");
  ASSERT_TRUE(again);
  EXPECT_FALSE(t.Admit(caller, "big"));
  held.clear();  // a grant dropped without Settle releases its place too
  again->reset();
  for (int i = 0; i < 3; ++i) held.push_back(*t.Admit(caller, "big"));
}

TEST(TenancyTest, QueuedRequestsAreCountedUntilStarted) {
  FakeClock clock;
  Tenancy t(clock);
  Config c = TwoTenants();
  c.tenants[0].limits = Limits{};
  c.tenants[0].limits.max_queued = 1;
  t.Apply(c);
  const Caller caller = *t.Authenticate("Bearer ek_acme");
  auto first = t.Admit(caller, "big");
  ASSERT_TRUE(first);
  auto second = t.Admit(caller, "big");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().reason, RejectReason::kQueue);
  (*first)->Started();
  EXPECT_TRUE(t.Admit(caller, "big"));
}

TEST(TenancyTest, OutputReservationsNeverOvershootAndRefundTheUnused) {
  FakeClock clock;
  Tenancy t(clock);
  Config c = TwoTenants();
  c.tenants[0].limits.rpm.reset();
  c.tenants[0].limits.max_concurrent.reset();
  t.Apply(c);
  const Caller caller = *t.Authenticate("Bearer ek_acme");
  std::vector<std::shared_ptr<Grant>> ok;
  std::optional<Rejection> last;
  for (int i = 0; i < 50; ++i) {
    auto g = t.Admit(caller, "big");
    ASSERT_TRUE(g);
    if (auto r = (*g)->Reserve(5, 30); r) {
      last = r;
    } else {
      ok.push_back(*g);
    }
  }
  EXPECT_EQ(ok.size(), 3u) << "100 output tokens/min hold three reservations of 30";
  ASSERT_TRUE(last);
  EXPECT_EQ(last->reason, RejectReason::kRate);
  EXPECT_EQ(*last->retry_after, seconds(12)) << "20 more tokens at 100/min";
  for (auto& g : ok) g->Settle(5);  // used 5 of 30 each: 75 come back
  auto again = t.Admit(caller, "big");
  EXPECT_FALSE((*again)->Reserve(0, 85));
}

TEST(TenancyTest, PerModelLimitsApplyOnTopOfTheTenants) {
  FakeClock clock;
  Tenancy t(clock);
  t.Apply(TwoTenants());
  const Caller caller = *t.Authenticate("Bearer ek_acme");
  auto g = t.Admit(caller, "small");
  ASSERT_TRUE(g);
  auto r = (*g)->Reserve(51, 1);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->retry_after) << "51 input tokens can never fit 50/min";
  EXPECT_NE(r->error.message.find("on this model"), std::string::npos) << r->error.message;
  EXPECT_FALSE((*g)->Reserve(50, 1));
  EXPECT_FALSE((*t.Admit(caller, "big"))->Reserve(51, 1)) << "no input limit on other models";
  EXPECT_EQ((*g)->max_tokens_cap(), 40);
}

TEST(TenancyTest, ReloadKeepsConsumption) {
  FakeClock clock;
  Tenancy t(clock);
  t.Apply(TwoTenants());
  const Caller caller = *t.Authenticate("Bearer ek_acme");
  ASSERT_TRUE(t.Admit(caller, "big"));
  ASSERT_TRUE(t.Admit(caller, "big"));
  t.Apply(TwoTenants());  // same file re-read: no fresh burst
  EXPECT_FALSE(t.Admit(caller, "big"));
}

TEST(TenancyTest, RateLimitHeaders) {
  FakeClock clock;
  Tenancy t(clock);
  t.Apply(TwoTenants());
  const Caller caller = *t.Authenticate("Bearer ek_acme");
  auto g = *t.Admit(caller, "big");
  ASSERT_FALSE(g->Reserve(3, 40));
  std::map<std::string, std::string> h;
  for (auto& [k, v] : g->RateLimitHeaders()) h[k] = v;
  EXPECT_EQ(h["x-ratelimit-limit-requests"], "2");
  EXPECT_EQ(h["x-ratelimit-remaining-requests"], "1");
  EXPECT_EQ(h["x-ratelimit-reset-requests"], "30s");
  EXPECT_EQ(h["x-ratelimit-limit-tokens"], "100");
  EXPECT_EQ(h["x-ratelimit-remaining-tokens"], "60");
  EXPECT_EQ(h["x-ratelimit-reset-tokens"], "24s");
  EXPECT_EQ(h.count("x-ratelimit-limit-input-tokens"), 0u);
}

TEST(TenancyTest, ResetDurationsAreGoStyle) {
  EXPECT_EQ(FormatResetDuration(std::chrono::nanoseconds(0)), "0s");
  EXPECT_EQ(FormatResetDuration(std::chrono::microseconds(1)), "1ms");
  EXPECT_EQ(FormatResetDuration(milliseconds(250)), "250ms");
  EXPECT_EQ(FormatResetDuration(milliseconds(1001)), "2s");
  EXPECT_EQ(FormatResetDuration(seconds(360)), "6m0s");
  EXPECT_EQ(FormatResetDuration(seconds(3725)), "1h2m5s");
}

}  // namespace
}  // namespace ember::tenancy
