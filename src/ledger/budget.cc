// Budgets: the UTC calendar math for windows (Howard Hinnant's days_from_civil, no timezone
// library) and the reserve/settle bookkeeping under one mutex.
#include "ledger/budget.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <utility>

#include "common/log.h"

namespace ember::ledger {
namespace {

constexpr std::int64_t kNsPerSecond = 1'000'000'000;
constexpr std::int64_t kNsPerDay = 86'400 * kNsPerSecond;
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

struct Civil {
  std::int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};

// Days since 1970-01-01 of a proleptic Gregorian date.
std::int64_t DaysFromCivil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

Civil CivilFromDays(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return Civil{static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

std::int64_t DaysToNs(std::int64_t days) {
  std::int64_t ns = 0;
  return __builtin_mul_overflow(days, kNsPerDay, &ns) ? kNever : ns;
}

std::string_view Adjective(BudgetWindow window) {
  switch (window) {
    case BudgetWindow::kDay:
      return "daily";
    case BudgetWindow::kMonth:
      return "monthly";
    case BudgetWindow::kTotal:
      return "total";
  }
  return "";
}

std::string Dollars(Microdollars m) { return StrCat("$", FormatDollars(m)); }

}  // namespace

std::int64_t WindowStart(BudgetWindow window, std::int64_t now_unix_ns) {
  const std::int64_t days = FloorDiv(now_unix_ns, kNsPerDay);
  switch (window) {
    case BudgetWindow::kDay:
      return days * kNsPerDay;
    case BudgetWindow::kMonth: {
      const Civil c = CivilFromDays(days);
      return DaysFromCivil(c.year, c.month, 1) * kNsPerDay;
    }
    case BudgetWindow::kTotal:
      return 0;
  }
  return 0;
}

std::int64_t WindowEnd(BudgetWindow window, std::int64_t now_unix_ns) {
  const std::int64_t days = FloorDiv(now_unix_ns, kNsPerDay);
  switch (window) {
    case BudgetWindow::kDay:
      return DaysToNs(days + 1);
    case BudgetWindow::kMonth: {
      const Civil c = CivilFromDays(days);
      return c.month == 12 ? DaysToNs(DaysFromCivil(c.year + 1, 1, 1))
                           : DaysToNs(DaysFromCivil(c.year, c.month + 1, 1));
    }
    case BudgetWindow::kTotal:
      return kNever;
  }
  return kNever;
}

std::string FormatUtcTime(std::int64_t unix_ns) {
  if (unix_ns == kNever) return "never";
  const std::int64_t secs = FloorDiv(unix_ns, kNsPerSecond);
  const std::int64_t days = FloorDiv(secs, 86'400);
  const std::int64_t in_day = secs - days * 86'400;
  const Civil c = CivilFromDays(days);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ",
                static_cast<long long>(c.year), c.month, c.day,
                static_cast<long long>(in_day / 3600), static_cast<long long>(in_day / 60 % 60),
                static_cast<long long>(in_day % 60));
  return buf;
}

Reservation::Reservation(std::string tenant, Microdollars amount, std::int64_t window_start_ns)
    : tenant(std::move(tenant)), amount(amount), window_start_ns(window_start_ns), settled(false) {}

Reservation::Reservation(Reservation&& other) noexcept
    : tenant(std::move(other.tenant)),
      amount(other.amount),
      window_start_ns(other.window_start_ns),
      settled(std::exchange(other.settled, true)) {}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    tenant = std::move(other.tenant);
    amount = other.amount;
    window_start_ns = other.window_start_ns;
    settled = std::exchange(other.settled, true);
  }
  return *this;
}

void Budgets::Configure(std::map<std::string, BudgetSpec> specs) {
  std::lock_guard lock(mu_);
  specs_ = std::move(specs);
  for (auto& [tenant, state] : states_) {
    const BudgetSpec* spec = SpecOf(tenant);
    const BudgetWindow window = spec ? spec->window : BudgetWindow::kMonth;
    if (window != state.window) {
      state = State{.window = window, .reserved = state.reserved};
      continue;
    }
    // A raised budget can be crossed again; a lowered one is reported at the next charge.
    state.soft_crossed = state.soft_crossed && spec && spec->soft && state.spent >= *spec->soft;
    state.hard_crossed = state.hard_crossed && spec && spec->hard && state.spent >= *spec->hard;
  }
}

void Budgets::Restore(const std::string& tenant, Microdollars spent_in_current_window,
                      std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  State& state = StateOf(tenant, now_ns);
  state.spent = spent_in_current_window;
  const BudgetSpec* spec = SpecOf(tenant);
  state.soft_crossed = spec && spec->soft && state.spent >= *spec->soft;
  state.hard_crossed = spec && spec->hard && state.spent >= *spec->hard;
}

std::expected<Reservation, BudgetRefusal> Budgets::Reserve(const std::string& tenant,
                                                           Microdollars worst_case,
                                                           std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  State& state = StateOf(tenant, now_ns);
  const BudgetSpec* spec = SpecOf(tenant);
  worst_case = std::max<Microdollars>(worst_case, 0);
  if (spec && spec->hard) {
    const Microdollars hard = *spec->hard;
    // Compared as hard - spent - reserved >= worst_case, which cannot overflow.
    if (state.spent > hard || state.reserved > hard - state.spent ||
        worst_case > hard - state.spent - state.reserved) {
      const std::int64_t resets = WindowEnd(state.window, now_ns);
      const std::string usage = StrCat(" (spent ", Dollars(state.spent), ", ",
                                       Dollars(state.reserved), " reserved by requests in flight)");
      const std::string when = resets == kNever ? std::string("; it does not reset")
                                                : StrCat("; it resets at ", FormatUtcTime(resets));
      std::string message =
          state.spent >= hard
              ? StrCat("tenant '", tenant, "' has spent its ", Adjective(state.window),
                       " hard budget of ", Dollars(hard), usage, when)
              : StrCat("tenant '", tenant, "' has too little left of its ", Adjective(state.window),
                       " hard budget of ", Dollars(hard), " for a request that may cost up to ",
                       Dollars(worst_case), usage, when);
      return std::unexpected(BudgetRefusal{std::move(message), resets});
    }
  }
  if (__builtin_add_overflow(state.reserved, worst_case, &state.reserved)) {
    state.reserved = std::numeric_limits<Microdollars>::max();
  }
  return Reservation(tenant, worst_case, state.window_start_ns);
}

SoftCrossing Budgets::Settle(Reservation& reservation, Microdollars actual, std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  if (reservation.settled) return SoftCrossing{.tenant = reservation.tenant};
  reservation.settled = true;
  State& state = StateOf(reservation.tenant, now_ns);
  state.reserved = std::max<Microdollars>(state.reserved - reservation.amount, 0);
  return Add(reservation.tenant, state, actual, now_ns);
}

SoftCrossing Budgets::Charge(const std::string& tenant, Microdollars actual, std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  return Add(tenant, StateOf(tenant, now_ns), actual, now_ns);
}

std::optional<BudgetStatus> Budgets::Status(const std::string& tenant, std::int64_t now_ns) const {
  std::lock_guard lock(mu_);
  const BudgetSpec* spec = SpecOf(tenant);
  if (!spec) return std::nullopt;
  BudgetStatus status{.hard = spec->hard,
                      .soft = spec->soft,
                      .window = spec->window,
                      .resets_at_ns = WindowEnd(spec->window, now_ns)};
  if (auto it = states_.find(tenant); it != states_.end()) {
    const State& s = it->second;
    status.reserved = s.reserved;
    const bool current =
        s.window == spec->window && WindowStart(spec->window, now_ns) <= s.window_start_ns;
    status.spent = current ? s.spent : 0;
  }
  return status;
}

const BudgetSpec* Budgets::SpecOf(const std::string& tenant) const {
  auto it = specs_.find(tenant);
  return it == specs_.end() ? nullptr : &it->second;
}

Budgets::State& Budgets::StateOf(const std::string& tenant, std::int64_t now_ns) {
  const BudgetSpec* spec = SpecOf(tenant);
  const BudgetWindow window = spec ? spec->window : BudgetWindow::kMonth;
  const std::int64_t start = WindowStart(window, now_ns);
  auto [it, inserted] = states_.try_emplace(tenant);
  State& state = it->second;
  // Only forward: a wall clock stepped back keeps counting in the newer window.
  if (inserted || state.window != window || start > state.window_start_ns) {
    state = State{.window = window, .window_start_ns = start, .reserved = state.reserved};
  }
  return state;
}

SoftCrossing Budgets::Add(const std::string& tenant, State& state, Microdollars actual,
                          std::int64_t now_ns) {
  actual = std::max<Microdollars>(actual, 0);
  if (__builtin_add_overflow(state.spent, actual, &state.spent)) {
    state.spent = std::numeric_limits<Microdollars>::max();
  }
  SoftCrossing crossing{.tenant = tenant,
                        .spent = state.spent,
                        .window = state.window,
                        .resets_at_ns = WindowEnd(state.window, now_ns)};
  const BudgetSpec* spec = SpecOf(tenant);
  if (!spec || actual == 0) return crossing;
  if (spec->soft && !state.soft_crossed && state.spent >= *spec->soft) {
    state.soft_crossed = crossing.soft = true;
    crossing.budget = *spec->soft;
  }
  if (spec->hard && !state.hard_crossed && state.spent >= *spec->hard) {
    state.hard_crossed = crossing.hard = true;
    crossing.budget = *spec->hard;
  }
  return crossing;
}

}  // namespace ember::ledger
