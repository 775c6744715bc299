#include "scheduler/fair_queue.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace ember::scheduler {
namespace {

TenantTag Tenant(std::string id, double weight = 1.0, int priority = 0) {
  return TenantTag{std::move(id), weight, priority};
}

// Items are "tenant#n" strings, n counting pushes from 1; n is also the queue order.
class FairQueueTest : public ::testing::Test {
 protected:
  void Push(const TenantTag& t, int n = 1) {
    for (int i = 0; i < n; ++i) {
      ++order_;
      q_.Push(t, order_, t.id + "#" + std::to_string(order_));
    }
  }
  // Pops the next item and serves it completely: `prompt` prompt and `output` output tokens
  // charged, then done. Returns its tenant.
  std::string Serve(int prompt = 10, int output = 10) {
    std::string item = q_.Pop();
    const std::string id = item.substr(0, item.find('#'));
    const TenantTag& tag = tags_.at(id);
    q_.Charge(tag, prompt, output);
    q_.Done(tag);
    return id;
  }
  TenantTag Add(std::string id, double weight = 1.0, int priority = 0) {
    tags_[id] = Tenant(id, weight, priority);
    return tags_[id];
  }

  FairQueue<std::string> q_;
  std::uint64_t order_ = 0;
  std::map<std::string, TenantTag> tags_;
};

TEST_F(FairQueueTest, OneTenantIsFifo) {
  const TenantTag a = Add("a");
  Push(a, 3);
  EXPECT_EQ(q_.Pop(), "a#1");
  EXPECT_EQ(q_.Pop(), "a#2");
  EXPECT_EQ(q_.Pop(), "a#3");
  EXPECT_TRUE(q_.empty());
}

TEST_F(FairQueueTest, EqualWeightsAlternateUnderAFlood) {
  const TenantTag a = Add("a"), b = Add("b");
  Push(a, 20);
  Push(b, 5);
  std::string order;
  for (int i = 0; i < 12; ++i) order += Serve();
  EXPECT_EQ(order,
            "ababababab"
            "aa");
}

TEST_F(FairQueueTest, DoubleWeightGetsTwiceTheTokens) {
  const TenantTag a = Add("a", 2.0), b = Add("b", 1.0);
  Push(a, 200);
  Push(b, 200);
  std::map<std::string, int> tokens;
  for (int i = 0; i < 150; ++i) {
    const int output = 5 + (i * 7) % 23;  // uneven request sizes
    tokens[Serve(10, output)] += 10 + output;
  }
  const double ratio = 1.0 * tokens["a"] / tokens["b"];
  EXPECT_NEAR(ratio, 2.0, 0.15) << tokens["a"] << " vs " << tokens["b"];
}

TEST_F(FairQueueTest, NewcomerIsLiftedToTheBackloggedMinimum) {
  const TenantTag a = Add("a"), b = Add("b");
  Push(a, 30);
  for (int i = 0; i < 10; ++i) Serve();  // a alone: 10 requests of 30 units
  Push(b, 10);
  EXPECT_EQ(q_.Counter(b), q_.Counter(a)) << "no credit banked while b asked for nothing";
  std::string order;
  for (int i = 0; i < 6; ++i) order += Serve();
  EXPECT_EQ(order, "ababab") << "neither a burst for b nor starvation";
}

TEST_F(FairQueueTest, TenantWithOnlyRunningWorkIsLiftedToo) {
  const TenantTag a = Add("a"), b = Add("b");
  Push(a, 1);
  Push(b, 30);
  const std::string first = q_.Pop();  // a's one request runs for a long time...
  ASSERT_EQ(first, "a#1");
  for (int i = 0; i < 5; ++i) Serve();  // ...while b is served five times
  q_.Charge(a, 10, 3);
  Push(a, 5);
  EXPECT_EQ(q_.Counter(a), q_.Counter(b)) << "a asked for less; that is not credit";
}

TEST_F(FairQueueTest, IdleTenantIsForgotten) {
  const TenantTag a = Add("a"), b = Add("b");
  Push(a, 2);
  Push(b, 1);
  EXPECT_EQ(q_.tenants(), 2u);
  Serve();
  Serve();
  Serve();
  EXPECT_TRUE(q_.empty());
  EXPECT_EQ(q_.tenants(), 0u);
  EXPECT_EQ(q_.Counter(a), 0.0);
}

TEST_F(FairQueueTest, LowerPriorityClassIsServedStrictlyFirst) {
  const TenantTag batch = Add("batch", 100.0, 1), inter = Add("inter", 1.0, 0);
  Push(batch, 3);
  Push(inter, 3);
  std::string order;
  for (int i = 0; i < 6; ++i) order += Serve() == "inter" ? "i" : "b";
  EXPECT_EQ(order, "iiibbb");
}

TEST_F(FairQueueTest, NewcomerInAClassIsLiftedWithinItsClass) {
  const TenantTag x = Add("x", 1.0, 1), y = Add("y", 1.0, 1), i = Add("i", 1.0, 0);
  Push(x, 10);
  for (int n = 0; n < 5; ++n) Serve();
  Push(i, 1);  // an interactive tenant, never served: its counter is not the batch floor
  Push(y, 1);
  EXPECT_EQ(q_.Counter(y), q_.Counter(x));
  EXPECT_EQ(q_.Counter(i), 0.0);
}

TEST_F(FairQueueTest, RequeuedWorkGoesAheadOfItsTenantsLaterRequests) {
  const TenantTag a = Add("a");
  Push(a, 3);
  std::string first = q_.Pop();
  const double before = q_.Counter(a);
  q_.Requeue(a, 1, std::move(first));
  EXPECT_EQ(q_.Counter(a), before) << "requeueing is not new demand";
  EXPECT_EQ(q_.Pop(), "a#1");
  EXPECT_EQ(q_.Pop(), "a#2");
}

TEST_F(FairQueueTest, RemoveIfDropsItemsAndForgetsEmptiedTenants) {
  const TenantTag a = Add("a"), b = Add("b");
  Push(a, 2);
  Push(b, 2);
  q_.RemoveIf([](const std::string& item) { return item.starts_with("a"); });
  EXPECT_EQ(q_.size(), 2u);
  EXPECT_EQ(q_.tenants(), 1u);
  EXPECT_EQ(*q_.Peek(), "b#3");
}

}  // namespace
}  // namespace ember::scheduler
