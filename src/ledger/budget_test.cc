// Budgets: calendar windows in UTC, reserve-at-admission / settle-at-completion, soft and hard
// crossings reported once per window, and the refusal a tenant reads.
#include "ledger/budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace ember::ledger {
namespace {

using ::testing::HasSubstr;

constexpr std::int64_t kSec = 1'000'000'000;
constexpr std::int64_t kNewYear2027 = 1'798'761'600 * kSec;  // 2027-01-01T00:00:00Z
constexpr std::int64_t kDec15 = 1'797'328'800 * kSec;        // 2026-12-15T10:00:00Z
constexpr std::int64_t kDec1 = 1'796'083'200 * kSec;         // 2026-12-01T00:00:00Z
constexpr std::int64_t kLeapDayNoon = 1'835'438'400 * kSec;  // 2028-02-29T12:00:00Z
constexpr Microdollars kDollar = 1'000'000;

TEST(BudgetWindow, ParsesAndNames) {
  EXPECT_EQ(ParseBudgetWindow("day"), BudgetWindow::kDay);
  EXPECT_EQ(ParseBudgetWindow("month"), BudgetWindow::kMonth);
  EXPECT_EQ(ParseBudgetWindow("total"), BudgetWindow::kTotal);
  auto bad = ParseBudgetWindow("week");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("\"week\" is not one of day, month, total"));
  EXPECT_EQ(BudgetWindowName(BudgetWindow::kMonth), "month");
}

TEST(BudgetWindow, LastMillisecondOfTheYearBelongsToDecember) {
  const std::int64_t last = kNewYear2027 - 1'000'000;  // 2026-12-31T23:59:59.999Z
  EXPECT_EQ(WindowStart(BudgetWindow::kDay, last), kNewYear2027 - 86'400 * kSec);
  EXPECT_EQ(WindowEnd(BudgetWindow::kDay, last), kNewYear2027);
  EXPECT_EQ(WindowStart(BudgetWindow::kMonth, last), kDec1);
  EXPECT_EQ(WindowEnd(BudgetWindow::kMonth, last), kNewYear2027);
  EXPECT_EQ(WindowStart(BudgetWindow::kMonth, kNewYear2027), kNewYear2027);
  EXPECT_EQ(WindowStart(BudgetWindow::kDay, kNewYear2027), kNewYear2027);
  EXPECT_EQ(WindowStart(BudgetWindow::kTotal, last), 0);
  EXPECT_EQ(WindowEnd(BudgetWindow::kTotal, last), std::numeric_limits<std::int64_t>::max());
}

TEST(BudgetWindow, LeapDay) {
  EXPECT_EQ(WindowStart(BudgetWindow::kDay, kLeapDayNoon), 1'835'395'200 * kSec);
  EXPECT_EQ(WindowStart(BudgetWindow::kMonth, kLeapDayNoon), 1'832'976'000 * kSec);  // Feb 1
  EXPECT_EQ(WindowEnd(BudgetWindow::kMonth, kLeapDayNoon), 1'835'481'600 * kSec);    // Mar 1
  EXPECT_EQ(WindowEnd(BudgetWindow::kDay, kLeapDayNoon), 1'835'481'600 * kSec);
  EXPECT_EQ(FormatUtcTime(kLeapDayNoon + 61 * kSec + 999), "2028-02-29T12:01:01Z");
}

TEST(BudgetWindow, BeforeTheEpoch) {
  EXPECT_EQ(WindowStart(BudgetWindow::kDay, -3600 * kSec), -86'400 * kSec);
  EXPECT_EQ(WindowStart(BudgetWindow::kMonth, -3600 * kSec), -2'678'400 * kSec);  // 1969-12-01
  EXPECT_EQ(WindowEnd(BudgetWindow::kMonth, -3600 * kSec), 0);
  EXPECT_EQ(FormatUtcTime(-1), "1969-12-31T23:59:59Z");
  EXPECT_EQ(FormatUtcTime(std::numeric_limits<std::int64_t>::max()), "never");
}

// Tenant "acme" with a monthly hard (and optionally soft) budget.
void MonthlyHard(Budgets& budgets, Microdollars hard,
                 std::optional<Microdollars> soft = std::nullopt) {
  budgets.Configure({{"acme", BudgetSpec{.hard = hard, .soft = soft}}});
}

TEST(Budgets, ReservesUpToTheHardBudgetAndSettlesTheActualCost) {
  Budgets budgets;
  budgets.Configure({{"acme", BudgetSpec{.hard = 10 * kDollar}}});
  auto a = budgets.Reserve("acme", 6 * kDollar, kDec15);
  ASSERT_TRUE(a);
  auto b = budgets.Reserve("acme", 5 * kDollar, kDec15);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().message,
            "tenant 'acme' has too little left of its monthly hard budget of $10.00 for a request "
            "that may cost up to $5.00 (spent $0.00, $6.00 reserved by requests in flight); it "
            "resets at 2027-01-01T00:00:00Z");
  EXPECT_EQ(b.error().resets_at_ns, kNewYear2027);
  budgets.Settle(*a, 1 * kDollar, kDec15);  // the request cost less than its worst case
  auto status = budgets.Status("acme", kDec15);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->spent, 1 * kDollar);
  EXPECT_EQ(status->reserved, 0);
  EXPECT_EQ(status->hard, 10 * kDollar);
  EXPECT_EQ(status->resets_at_ns, kNewYear2027);
  EXPECT_TRUE(budgets.Reserve("acme", 9 * kDollar, kDec15));  // exactly fits
}

TEST(Budgets, RefusalWhenSpentNamesTheWindowAndReset) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * kDollar);
  budgets.Restore("acme", 9'990'000, kDec15);
  auto held = budgets.Reserve("acme", 10'000, kDec15);
  ASSERT_TRUE(held);
  budgets.Settle(*held, 10'000, kDec15);
  auto refused = budgets.Reserve("acme", 1, kDec15);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message,
            "tenant 'acme' has spent its monthly hard budget of $10.00 (spent $10.00, $0.00 "
            "reserved by requests in flight); it resets at 2027-01-01T00:00:00Z");
  // A total budget never resets.
  Budgets total;
  total.Configure({{"acme", BudgetSpec{.hard = 0, .window = BudgetWindow::kTotal}}});
  auto never = total.Reserve("acme", 1, kDec15);
  ASSERT_FALSE(never);
  EXPECT_THAT(never.error().message, HasSubstr("its total hard budget of $0.00"));
  EXPECT_THAT(never.error().message, HasSubstr("; it does not reset"));
}

TEST(Budgets, TenantsWithoutAHardBudgetAlwaysGetAReservation) {
  Budgets budgets;
  MonthlyHard(budgets, kDollar);
  auto r = budgets.Reserve("other", 1'000 * kDollar, kDec15);
  ASSERT_TRUE(r);
  EXPECT_FALSE(budgets.Settle(*r, 1'000 * kDollar, kDec15).crossed());
  EXPECT_FALSE(budgets.Status("other", kDec15));
}

TEST(Budgets, SettleIsIdempotentAndMovesTransferOwnership) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * kDollar);
  auto r = budgets.Reserve("acme", 4 * kDollar, kDec15);
  ASSERT_TRUE(r);
  Reservation moved = std::move(*r);
  EXPECT_TRUE(r->settled);  // the moved-from one cannot release twice
  budgets.Settle(*r, 4 * kDollar, kDec15);
  EXPECT_EQ(budgets.Status("acme", kDec15)->spent, 0);
  EXPECT_EQ(budgets.Status("acme", kDec15)->reserved, 4 * kDollar);
  budgets.Settle(moved, 3 * kDollar, kDec15);
  budgets.Settle(moved, 3 * kDollar, kDec15);
  EXPECT_EQ(budgets.Status("acme", kDec15)->spent, 3 * kDollar);
  EXPECT_EQ(budgets.Status("acme", kDec15)->reserved, 0);
}

TEST(Budgets, SettleAfterRolloverChargesTheNewWindow) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * kDollar);
  budgets.Restore("acme", 8 * kDollar, kNewYear2027 - kSec);
  auto r = budgets.Reserve("acme", 2 * kDollar, kNewYear2027 - kSec);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->window_start_ns, kDec1);
  budgets.Settle(*r, 1'500'000, kNewYear2027 + kSec);
  auto status = budgets.Status("acme", kNewYear2027 + kSec);
  EXPECT_EQ(status->spent, 1'500'000);
  EXPECT_EQ(status->reserved, 0);
  EXPECT_EQ(status->resets_at_ns, 1'801'440'000 * kSec);  // 2027-02-01
  // Status alone also sees the rollover, before anything is charged in the new window.
  Budgets idle;
  MonthlyHard(idle, 10 * kDollar);
  idle.Restore("acme", 8 * kDollar, kDec15);
  EXPECT_EQ(idle.Status("acme", kNewYear2027)->spent, 0);
  EXPECT_TRUE(idle.Reserve("acme", 10 * kDollar, kNewYear2027));
}

TEST(Budgets, InFlightReservationsCountAcrossTheRollover) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * kDollar);
  auto held = budgets.Reserve("acme", 7 * kDollar, kNewYear2027 - kSec);
  ASSERT_TRUE(held);
  EXPECT_FALSE(budgets.Reserve("acme", 4 * kDollar, kNewYear2027 + kSec));
  EXPECT_TRUE(budgets.Reserve("acme", 3 * kDollar, kNewYear2027 + kSec));
}

TEST(Budgets, SoftAndHardCrossingsAreReportedOncePerWindow) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * kDollar, 5 * kDollar);
  SoftCrossing first = budgets.Charge("acme", 4 * kDollar, kDec15);
  EXPECT_FALSE(first.crossed());
  SoftCrossing second = budgets.Charge("acme", 1 * kDollar, kDec15);
  EXPECT_TRUE(second.soft);
  EXPECT_FALSE(second.hard);
  EXPECT_EQ(second.tenant, "acme");
  EXPECT_EQ(second.spent, 5 * kDollar);
  EXPECT_EQ(second.budget, 5 * kDollar);
  EXPECT_EQ(second.window, BudgetWindow::kMonth);
  EXPECT_EQ(second.resets_at_ns, kNewYear2027);
  EXPECT_FALSE(budgets.Charge("acme", 1 * kDollar, kDec15).soft);
  SoftCrossing hard = budgets.Charge("acme", 4 * kDollar, kDec15);
  EXPECT_TRUE(hard.hard);
  EXPECT_FALSE(hard.soft);
  EXPECT_EQ(hard.budget, 10 * kDollar);
  EXPECT_FALSE(budgets.Charge("acme", 1, kDec15).crossed());
  // Next month: a fresh window, reported again.
  EXPECT_FALSE(budgets.Charge("acme", 4 * kDollar, kNewYear2027).crossed());
  EXPECT_TRUE(budgets.Charge("acme", 1 * kDollar, kNewYear2027).soft);
}

TEST(Budgets, RestoreAboveTheSoftBudgetDoesNotReportItAgain) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * kDollar, 5 * kDollar);
  budgets.Restore("acme", 6 * kDollar, kDec15);
  EXPECT_FALSE(budgets.Charge("acme", kDollar, kDec15).soft);
  EXPECT_EQ(budgets.Status("acme", kDec15)->spent, 7 * kDollar);
}

TEST(Budgets, ConfigureKeepsSpendingAndRaisedBudgetsCanBeCrossedAgain) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * kDollar, 5 * kDollar);
  EXPECT_TRUE(budgets.Charge("acme", 6 * kDollar, kDec15).soft);
  budgets.Configure({{"acme", BudgetSpec{.hard = 20 * kDollar, .soft = 8 * kDollar}}});
  EXPECT_EQ(budgets.Status("acme", kDec15)->spent, 6 * kDollar);
  EXPECT_TRUE(budgets.Charge("acme", 2 * kDollar, kDec15).soft);
  // Changing the window kind restarts spending (the server restores it from the ledger).
  budgets.Configure({{"acme", BudgetSpec{.hard = 20 * kDollar, .window = BudgetWindow::kDay}}});
  EXPECT_EQ(budgets.Status("acme", kDec15)->spent, 0);
  EXPECT_EQ(budgets.Status("acme", kDec15)->resets_at_ns, 1'797'379'200 * kSec);  // Dec 16
}

TEST(Budgets, ConcurrentReservationsNeverOverspend) {
  Budgets budgets;
  MonthlyHard(budgets, 10 * 12'345);
  std::atomic<int> granted{0};
  std::vector<Reservation> held(100);
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      auto r = budgets.Reserve("acme", 12'345, kDec15);
      if (r) {
        ++granted;
        held[i] = std::move(*r);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 10);
  EXPECT_EQ(budgets.Status("acme", kDec15)->reserved, 10 * 12'345);
  // Settling concurrently at or below the worst case keeps spent + reserved within the budget.
  threads.clear();
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      budgets.Settle(held[i], 12'345 - i, kDec15);
      auto s = budgets.Status("acme", kDec15);
      EXPECT_LE(s->spent + s->reserved, 10 * 12'345);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(budgets.Status("acme", kDec15)->reserved, 0);
}

}  // namespace
}  // namespace ember::ledger
