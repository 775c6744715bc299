#include "tenancy/bucket.h"

#include <gtest/gtest.h>

namespace ember::tenancy {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(TokenBucketTest, StartsFullAndRefillsContinuously) {
  FakeClock clock;
  TokenBucket b(60, clock.Now());  // one token per second
  EXPECT_EQ(b.Available(clock.Now()), 60);
  EXPECT_EQ(b.TryTake(60, clock.Now()), nanoseconds(0));
  EXPECT_EQ(b.Available(clock.Now()), 0);
  clock.Advance(milliseconds(999));
  EXPECT_EQ(b.Available(clock.Now()), 0);
  clock.Advance(milliseconds(1));
  EXPECT_EQ(b.Available(clock.Now()), 1);
  clock.Advance(seconds(3600));  // never more than the capacity
  EXPECT_EQ(b.Available(clock.Now()), 60);
}

TEST(TokenBucketTest, RetryAfterIsExactlyTheTimeToRefillTheDeficit) {
  FakeClock clock;
  TokenBucket b(600, clock.Now());  // 10 tokens per second
  ASSERT_EQ(b.TryTake(595, clock.Now()), nanoseconds(0));
  // 5 left, 8 wanted: 3 more take 300 ms.
  const nanoseconds wait = b.TryTake(8, clock.Now());
  EXPECT_EQ(wait, milliseconds(300));
  EXPECT_EQ(b.Available(clock.Now()), 5) << "a refused take must take nothing";
  clock.Advance(wait - nanoseconds(1));
  EXPECT_GT(b.TryTake(8, clock.Now()), nanoseconds(0));
  clock.Advance(nanoseconds(1));
  EXPECT_EQ(b.TryTake(8, clock.Now()), nanoseconds(0));
}

TEST(TokenBucketTest, RetryAfterRoundsUpToTheNanosecond) {
  FakeClock clock;
  TokenBucket b(7, clock.Now());
  ASSERT_EQ(b.TryTake(7, clock.Now()), nanoseconds(0));
  // One token takes 60/7 s = 8571428571.43 ns: the wait is the next whole nanosecond.
  EXPECT_EQ(b.TryTake(1, clock.Now()), nanoseconds(8'571'428'572));
}

TEST(TokenBucketTest, MoreThanTheCapacityCanNeverBeTaken) {
  FakeClock clock;
  TokenBucket b(100, clock.Now());
  EXPECT_EQ(b.TryTake(101, clock.Now()), TokenBucket::kNever);
  EXPECT_EQ(b.Available(clock.Now()), 100);
}

TEST(TokenBucketTest, RefundGivesBackUnusedTokensButNeverOverfills) {
  FakeClock clock;
  TokenBucket b(1000, clock.Now());
  ASSERT_EQ(b.TryTake(400, clock.Now()), nanoseconds(0));  // reserved at max_tokens
  b.Refund(300, clock.Now());                              // 100 were used
  EXPECT_EQ(b.Available(clock.Now()), 900);
  b.Refund(5000, clock.Now());
  EXPECT_EQ(b.Available(clock.Now()), 1000);
}

TEST(TokenBucketTest, ConcurrentReservationsNeverOvershoot) {
  // 50 requests each reserving 64 output tokens against 1000/min, all at the same instant:
  // exactly 15 fit (960), and once they settle having used 10 each, the refunds let more in.
  FakeClock clock;
  TokenBucket b(1000, clock.Now());
  int granted = 0;
  for (int i = 0; i < 50; ++i) granted += b.TryTake(64, clock.Now()) == nanoseconds(0);
  EXPECT_EQ(granted, 15);
  for (int i = 0; i < granted; ++i) b.Refund(64 - 10, clock.Now());
  EXPECT_EQ(b.Available(clock.Now()), 1000 - 15 * 10);
}

TEST(TokenBucketTest, AClockGoingBackwardsAddsNothingAndLosesNothing) {
  FakeClock clock;
  const SteadyTime start = clock.Now();
  clock.Advance(seconds(10));
  TokenBucket b(60, clock.Now());
  ASSERT_EQ(b.TryTake(60, clock.Now()), nanoseconds(0));
  EXPECT_EQ(b.Available(start), 0);  // an earlier time than the last one seen
  clock.Advance(seconds(2));
  EXPECT_EQ(b.Available(clock.Now()), 2) << "the interval is credited once, from the last time";
}

TEST(TokenBucketTest, ANewCapacityKeepsWhatWasConsumed) {
  FakeClock clock;
  TokenBucket b(100, clock.Now());
  ASSERT_EQ(b.TryTake(70, clock.Now()), nanoseconds(0));
  b.SetCapacity(200, clock.Now());
  EXPECT_EQ(b.Available(clock.Now()), 130);
  b.SetCapacity(50, clock.Now());
  EXPECT_EQ(b.Available(clock.Now()), 0) << "lowering a limit below what was used leaves nothing";
  clock.Advance(seconds(6));
  EXPECT_EQ(b.Available(clock.Now()), 5);
}

TEST(TokenBucketTest, UntilFull) {
  FakeClock clock;
  TokenBucket b(60, clock.Now());
  EXPECT_EQ(b.UntilFull(clock.Now()), nanoseconds(0));
  ASSERT_EQ(b.TryTake(30, clock.Now()), nanoseconds(0));
  EXPECT_EQ(b.UntilFull(clock.Now()), seconds(30));
}

}  // namespace
}  // namespace ember::tenancy
