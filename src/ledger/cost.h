// Exact cost arithmetic over integer micro-dollars: what a request's tokens cost at list price,
// what a hard budget reserves for it before it runs, what machine time costs, and how a
// sampling interval's machine cost splits into busy, cold-start and idle. Pure functions, no
// allocation, callable from any thread (the engine step's time is split over its sequences by
// scheduler::SplitStepTime).
//
// Rounding: every amount is rounded half-up to the micro-dollar once, per request and per kind
// (input, cached input, output) -- a request's cost is the sum of its three rounded parts, and a
// report's total is the sum of its requests' costs, so every total adds up exactly.
// WorstCase rounds up instead, so a reservation is never below the request's actual cost.
#pragma once

#include <cstdint>

#include "common/money.h"
#include "ledger/prices.h"
#include "ledger/record.h"

namespace ember::ledger {

struct TokenCost {
  Microdollars input = 0;         // (prompt - cached) tokens x input_per_mtok
  Microdollars cached_input = 0;  // cached tokens x cached_input_per_mtok
  Microdollars output = 0;        // completion tokens x output_per_mtok

  Microdollars total() const { return input + cached_input + output; }
  bool operator==(const TokenCost&) const = default;
};

// The list-price cost of one request, each kind rounded half-up on its own. Negative counts are
// taken as 0; cached_prompt_tokens is clamped to [0, prompt_tokens].
TokenCost PriceTokens(const ModelPrice& price, std::int64_t prompt_tokens,
                      std::int64_t cached_prompt_tokens, std::int64_t completion_tokens);

// What a hard budget reserves at admission: every prompt token at the higher of the uncached
// and cached input prices plus max_tokens at the output price, each part rounded up, plus one
// micro-dollar when the prompt may be split between two input prices (two half-up roundings
// can exceed one rounding up by one). Never below PriceTokens(price, prompt_tokens, c, n).total()
// for any c <= prompt_tokens and n <= max_tokens.
Microdollars WorstCase(const ModelPrice& price, std::int64_t prompt_tokens,
                       std::int64_t max_tokens);

// price_per_hour x ns, rounded half-up; 0 for negative arguments.
Microdollars PriceTime(Microdollars price_per_hour, std::int64_t ns);

// Fills an interval's time split and costs from start_ns, end_ns, busy_ns, cold_start_ns and
// price_per_hour: wall = end - start (0 if negative); cold_start_ns is clamped to wall and
// busy_ns to what is left, idle_ns = the rest; busy_cost and cold_start_cost are PriceTime of
// their times and idle_cost the exact remainder of PriceTime(wall) (a rounding excess is taken
// from busy_cost), so busy_cost + cold_start_cost + idle_cost == PriceTime(price, wall).
void PriceInterval(UsageInterval& iv);

}  // namespace ember::ledger
