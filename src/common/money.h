// Money as ember keeps it: integer micro-dollars (1 USD = 1,000,000), never floating point, so
// sums are exact and every report adds up to the micro-dollar. Dollars cross the boundary only
// as decimal text ("12.50", "0.000001"), parsed and printed exactly here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace ember {

using Microdollars = std::int64_t;
inline constexpr Microdollars kMicrosPerDollar = 1'000'000;

// "12", "12.5", "0.000001", "+3.25": a non-negative decimal with at most six fraction digits,
// exactly. Refuses a seventh non-zero fraction digit, signs other than '+', exponents, and values
// past 9,000,000,000 dollars (kInvalidArgument, naming `what`).
Result<Microdollars> ParseDollars(std::string_view text, std::string_view what);

// 12500000 -> "12.50", 1 -> "0.000001", -2500000 -> "-2.50": at least two fraction digits, and
// as many more as the value needs.
std::string FormatDollars(Microdollars micros);

// When a tenant's budget resets: every UTC day, every UTC calendar month, or never. Named in
// tenants.toml and `ember tenants set --budget-window`; the ledger counts spending per window.
enum class BudgetWindow { kDay, kMonth, kTotal };
// "day", "month", "total"; anything else is kInvalidArgument naming the text.
[[nodiscard]] Result<BudgetWindow> ParseBudgetWindow(std::string_view text);
std::string_view BudgetWindowName(BudgetWindow window);

// round(a * b / c) with round-half-up, for a, b >= 0 and c > 0, exact over 128-bit
// intermediates; saturates at INT64_MAX.
std::int64_t MulDivRound(std::int64_t a, std::int64_t b, std::int64_t c);

}  // namespace ember
