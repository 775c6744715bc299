#include "common/money.h"

#include <limits>

#include "common/log.h"

namespace ember {

Result<Microdollars> ParseDollars(std::string_view text, std::string_view what) {
  auto bad = [&](std::string_view why) -> Result<Microdollars> {
    return InvalidArgument(StrCat(what, ": \"", text, "\" ", why,
                                  " (write dollars as a decimal, e.g. 12.50 or 0.000150)"),
                           std::string(what));
  };
  std::string_view s = text;
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return bad("is empty");
  if (s[0] == '-') return bad("is negative");
  const std::size_t dot = s.find('.');
  const std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
  if (whole.empty() && frac.empty()) return bad("has no digits");
  if (dot != std::string_view::npos && frac.empty() && whole.empty()) return bad("has no digits");
  for (char c : whole)
    if (c < '0' || c > '9') return bad("is not a decimal number");
  for (char c : frac)
    if (c < '0' || c > '9') return bad("is not a decimal number");
  while (frac.size() > 6 && frac.back() == '0') frac.remove_suffix(1);
  if (frac.size() > 6) return bad("has a fraction finer than a micro-dollar (0.000001)");
  std::string_view w = whole;
  while (w.size() > 1 && w[0] == '0') w.remove_prefix(1);
  if (w.size() > 10) return bad("is too large");
  std::int64_t dollars = 0;
  for (char c : w) dollars = dollars * 10 + (c - '0');
  if (dollars > 9'000'000'000) return bad("is too large");
  std::int64_t micros = 0;
  for (std::size_t i = 0; i < 6; ++i) micros = micros * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  return dollars * kMicrosPerDollar + micros;
}

std::string FormatDollars(Microdollars micros) {
  const bool negative = micros < 0;
  // -INT64_MIN does not fit; print through unsigned.
  const std::uint64_t v =
      negative ? 0 - static_cast<std::uint64_t>(micros) : static_cast<std::uint64_t>(micros);
  std::string frac = std::to_string(v % kMicrosPerDollar);
  frac.insert(0, 6 - frac.size(), '0');
  while (frac.size() > 2 && frac.back() == '0') frac.pop_back();
  return StrCat(negative ? "-" : "", v / kMicrosPerDollar, ".", frac);
}

Result<BudgetWindow> ParseBudgetWindow(std::string_view text) {
  if (text == "day") return BudgetWindow::kDay;
  if (text == "month") return BudgetWindow::kMonth;
  if (text == "total") return BudgetWindow::kTotal;
  return InvalidArgument(StrCat("budget window \"", text, "\" is not one of day, month, total"),
                         "window");
}

std::string_view BudgetWindowName(BudgetWindow window) {
  switch (window) {
    case BudgetWindow::kDay:
      return "day";
    case BudgetWindow::kMonth:
      return "month";
    case BudgetWindow::kTotal:
      return "total";
  }
  return "";
}

std::int64_t MulDivRound(std::int64_t a, std::int64_t b, std::int64_t c) {
  const unsigned __int128 product =
      static_cast<unsigned __int128>(a) * static_cast<unsigned __int128>(b);
  const unsigned __int128 q =
      (product + static_cast<unsigned __int128>(c) / 2) / static_cast<unsigned __int128>(c);
  constexpr auto kMax = static_cast<unsigned __int128>(std::numeric_limits<std::int64_t>::max());
  return q > kMax ? std::numeric_limits<std::int64_t>::max() : static_cast<std::int64_t>(q);
}

}  // namespace ember
