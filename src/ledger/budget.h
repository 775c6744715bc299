// Tenants' spending budgets over a calendar window (UTC day, UTC month, or all time). A hard
// budget refuses a request at admission unless its worst-case cost (cost.h WorstCase) still
// fits beside what the window has spent and what requests in flight have reserved; the request
// settles its actual cost at completion, which also reports the first crossing of a soft (or
// hard) budget in a window, once, for the server's log, metric and webhook.
//
// Budgets holds money state only: no I/O and no clock. Every call takes the wall-clock time as
// unix nanoseconds, so tests drive windows directly; at start-up the server Restores each
// tenant's spending since WindowStart from the ledger. Thread-safe: one mutex guards all state;
// called from request threads at admission and completion.
#pragma once

#include <cstdint>
#include <expected>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/money.h"

namespace ember::ledger {

// BudgetWindow, ParseBudgetWindow and BudgetWindowName: common/money.h.

// Where the window containing `now_unix_ns` starts: 00:00 UTC that day, 00:00 UTC on the first
// of that month, or 0 (all time).
std::int64_t WindowStart(BudgetWindow window, std::int64_t now_unix_ns);
// When it ends, i.e. the next reset: the next 00:00 UTC or first of the month; INT64_MAX for
// kTotal (never).
std::int64_t WindowEnd(BudgetWindow window, std::int64_t now_unix_ns);
// "2027-01-01T00:00:00Z" (seconds, UTC); "never" for INT64_MAX.
std::string FormatUtcTime(std::int64_t unix_ns);

struct BudgetSpec {
  std::optional<Microdollars> hard = std::nullopt;  // refuse requests past it
  std::optional<Microdollars> soft =
      std::nullopt;  // report the first time it is reached in a window
  BudgetWindow window = BudgetWindow::kMonth;

  bool operator==(const BudgetSpec&) const = default;
};

// Money held for one admitted request until it settles. Movable, not copyable: a moved-from or
// default Reservation is already settled, so only one owner can settle it.
struct Reservation {
  std::string tenant;
  Microdollars amount = 0;           // the worst case held back
  std::int64_t window_start_ns = 0;  // the window it was reserved in
  bool settled = true;

  Reservation() = default;
  Reservation(std::string tenant, Microdollars amount, std::int64_t window_start_ns);
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
};

struct BudgetRefusal {
  // e.g. "tenant 'acme' has spent its monthly hard budget of $10.00 (spent $10.00, $0.00
  // reserved by requests in flight); it resets at 2027-01-01T00:00:00Z"
  std::string message = {};
  std::int64_t resets_at_ns = 0;  // INT64_MAX: never (a total budget)
};

// What one Settle or Charge did to the tenant's budgets: soft/hard are true only for the call
// that first brought spending to (or past) that budget in the current window.
struct SoftCrossing {
  bool soft = false;
  bool hard = false;
  std::string tenant = {};
  Microdollars spent = 0;   // in the window, after this call
  Microdollars budget = 0;  // the hard budget when `hard`, else the soft budget
  BudgetWindow window = BudgetWindow::kMonth;
  std::int64_t resets_at_ns = 0;

  bool crossed() const { return soft || hard; }
};

struct BudgetStatus {
  Microdollars spent = 0;     // settled in the current window
  Microdollars reserved = 0;  // held by requests in flight
  std::optional<Microdollars> hard = std::nullopt;
  std::optional<Microdollars> soft = std::nullopt;
  BudgetWindow window = BudgetWindow::kMonth;
  std::int64_t resets_at_ns = 0;
};

class Budgets {
 public:
  // Replaces the budgets. Tenants without an entry are unlimited. A tenant's spent and
  // reserved amounts carry over, except that spent restarts at 0 when its window kind changes
  // (Restore it from the ledger then).
  void Configure(std::map<std::string, BudgetSpec> specs);

  // Start-up: what the tenant spent since WindowStart(its window, now), summed from the ledger.
  // A budget already reached by it counts as crossed (no second notification this window).
  void Restore(const std::string& tenant, Microdollars spent_in_current_window,
               std::int64_t now_ns);

  // Admission. Holds `worst_case` for the request, or refuses when spent in the current window
  // + reserved + worst_case would exceed the tenant's hard budget. Tenants without a hard
  // budget (or without any budget) always get a Reservation, so every request takes the same
  // path: Reserve before it runs, Settle when it ends.
  [[nodiscard]] std::expected<Reservation, BudgetRefusal> Reserve(const std::string& tenant,
                                                                  Microdollars worst_case,
                                                                  std::int64_t now_ns);

  // Completion, whatever the request's end (Settle(r, 0, now) for a request that never ran):
  // releases the reservation and adds `actual` (<= the amount reserved) to the spending of the
  // window containing now_ns. Idempotent: a settled Reservation does nothing.
  SoftCrossing Settle(Reservation& reservation, Microdollars actual, std::int64_t now_ns);

  // A cost that had no reservation.
  SoftCrossing Charge(const std::string& tenant, Microdollars actual, std::int64_t now_ns);

  // For metrics and the API; nullopt for a tenant without budgets.
  std::optional<BudgetStatus> Status(const std::string& tenant, std::int64_t now_ns) const;

 private:
  struct State {
    BudgetWindow window = BudgetWindow::kMonth;  // the window `spent` is counted in
    std::int64_t window_start_ns = 0;
    Microdollars spent = 0;
    Microdollars reserved = 0;
    bool soft_crossed = false;  // in this window
    bool hard_crossed = false;
  };

  const BudgetSpec* SpecOf(const std::string& tenant) const;       // REQUIRES mu_
  State& StateOf(const std::string& tenant, std::int64_t now_ns);  // REQUIRES mu_; rolled over
  SoftCrossing Add(const std::string& tenant, State& state, Microdollars actual,
                   std::int64_t now_ns);  // REQUIRES mu_

  mutable std::mutex mu_;
  std::map<std::string, BudgetSpec> specs_;  // GUARDED_BY(mu_)
  std::map<std::string, State> states_;      // GUARDED_BY(mu_): every tenant seen
};

}  // namespace ember::ledger
