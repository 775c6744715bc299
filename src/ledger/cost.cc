// Cost arithmetic (see cost.h for the rounding rules). 128-bit intermediates throughout, so no
// product of tokens, prices or nanoseconds can overflow before the division.
#include "ledger/cost.h"

#include <algorithm>
#include <limits>

namespace ember::ledger {
namespace {

constexpr std::int64_t kTokensPerMillion = 1'000'000;
constexpr std::int64_t kNsPerHour = 3'600'000'000'000;

std::int64_t NonNegative(std::int64_t v) { return std::max<std::int64_t>(v, 0); }

// ceil(a * b / c) for a, b >= 0 and c > 0; saturates at INT64_MAX.
std::int64_t MulDivCeil(std::int64_t a, std::int64_t b, std::int64_t c) {
  using U = unsigned __int128;
  const U q = (static_cast<U>(a) * static_cast<U>(b) + static_cast<U>(c) - 1) / static_cast<U>(c);
  constexpr auto kMax = static_cast<U>(std::numeric_limits<std::int64_t>::max());
  return q > kMax ? std::numeric_limits<std::int64_t>::max() : static_cast<std::int64_t>(q);
}

std::int64_t SaturatingAdd(std::int64_t a, std::int64_t b) {
  std::int64_t sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? std::numeric_limits<std::int64_t>::max() : sum;
}

}  // namespace

TokenCost PriceTokens(const ModelPrice& price, std::int64_t prompt_tokens,
                      std::int64_t cached_prompt_tokens, std::int64_t completion_tokens) {
  const std::int64_t prompt = NonNegative(prompt_tokens);
  const std::int64_t cached = std::clamp<std::int64_t>(cached_prompt_tokens, 0, prompt);
  return TokenCost{
      .input = MulDivRound(prompt - cached, NonNegative(price.input_per_mtok), kTokensPerMillion),
      .cached_input =
          MulDivRound(cached, NonNegative(price.cached_input_per_mtok), kTokensPerMillion),
      .output = MulDivRound(NonNegative(completion_tokens), NonNegative(price.output_per_mtok),
                            kTokensPerMillion),
  };
}

Microdollars WorstCase(const ModelPrice& price, std::int64_t prompt_tokens,
                       std::int64_t max_tokens) {
  const std::int64_t prompt = NonNegative(prompt_tokens);
  const Microdollars input = NonNegative(price.input_per_mtok);
  const Microdollars cached = NonNegative(price.cached_input_per_mtok);
  Microdollars worst = MulDivCeil(prompt, std::max(input, cached), kTokensPerMillion);
  if (prompt >= 2 && input > 0 && cached > 0) worst = SaturatingAdd(worst, 1);
  return SaturatingAdd(worst, MulDivCeil(NonNegative(max_tokens),
                                         NonNegative(price.output_per_mtok), kTokensPerMillion));
}

Microdollars PriceTime(Microdollars price_per_hour, std::int64_t ns) {
  return MulDivRound(NonNegative(ns), NonNegative(price_per_hour), kNsPerHour);
}

void PriceInterval(UsageInterval& iv) {
  const std::int64_t wall = NonNegative(iv.end_ns - iv.start_ns);
  iv.cold_start_ns = std::clamp<std::int64_t>(iv.cold_start_ns, 0, wall);
  iv.busy_ns = std::clamp<std::int64_t>(iv.busy_ns, 0, wall - iv.cold_start_ns);
  iv.idle_ns = wall - iv.busy_ns - iv.cold_start_ns;
  const Microdollars total = PriceTime(iv.price_per_hour, wall);
  iv.busy_cost = PriceTime(iv.price_per_hour, iv.busy_ns);
  iv.cold_start_cost = PriceTime(iv.price_per_hour, iv.cold_start_ns);
  iv.idle_cost = total - iv.busy_cost - iv.cold_start_cost;
  if (iv.idle_cost < 0) {  // two roundings up past the whole: at most one micro-dollar
    iv.busy_cost += iv.idle_cost;
    iv.idle_cost = 0;
  }
}

}  // namespace ember::ledger
