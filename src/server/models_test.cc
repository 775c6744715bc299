#include "server/models.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <future>
#include <thread>

#include "engine/fake/fake_engine.h"

namespace ember::server {
namespace {

using std::chrono::milliseconds;

SteadyTime At(int ms) { return SteadyTime{} + milliseconds(ms); }

TEST(PlanEviction, NothingWhenItFits) {
  EXPECT_EQ(PlanEviction({{"a", 40, At(1), false}}, 40, 60, 100).value(),
            std::vector<std::string>{});
  EXPECT_EQ(PlanEviction({{"a", 40, At(1), false}}, 40, 1000, 0).value(),
            std::vector<std::string>{});  // budget 0: unlimited
}

TEST(PlanEviction, LeastRecentlyUsedFirstAndNoMoreThanNeeded) {
  std::vector<ResidentModel> resident = {
      {"b", 40, At(20), false}, {"a", 40, At(10), false}, {"c", 10, At(5), true}};
  // 90 used, 40 needed, budget 100: freeing one 40-byte model is enough; "c" is older but busy.
  EXPECT_EQ(PlanEviction(resident, 90, 40, 100).value(), std::vector<std::string>{"a"});
  EXPECT_EQ(PlanEviction(resident, 90, 70, 100).value(), (std::vector<std::string>{"a", "b"}));
}

TEST(PlanEviction, NulloptWhenBusyModelsHoldTheRoom) {
  std::vector<ResidentModel> resident = {{"a", 50, At(1), true}, {"b", 40, At(2), false}};
  EXPECT_FALSE(PlanEviction(resident, 90, 60, 100).has_value());
  EXPECT_FALSE(PlanEviction({}, 0, 101, 100).has_value());  // can never fit
}

TEST(ParseModelSpecs, PathsAndIds) {
  auto specs = ParseModelSpecs({"/m/stories.gguf", "big=/m/x=y.gguf"}, "").value();
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].id, "stories");
  EXPECT_EQ(specs[0].path, "/m/stories.gguf");
  EXPECT_EQ(specs[1].id, "big");
  EXPECT_EQ(specs[1].path, "/m/x=y.gguf");
  EXPECT_EQ(ParseModelSpecs({"/m/a.gguf"}, "alias").value()[0].id, "alias");
}

TEST(ParseModelSpecs, RejectsMalformedAndDuplicates) {
  EXPECT_FALSE(ParseModelSpecs({}, "").has_value());
  EXPECT_FALSE(ParseModelSpecs({"=/m/a.gguf"}, "").has_value());
  EXPECT_FALSE(ParseModelSpecs({"a="}, "").has_value());
  EXPECT_FALSE(ParseModelSpecs({"a b=/m/a.gguf"}, "").has_value());
  EXPECT_FALSE(ParseModelSpecs({"/x/a.gguf", "/y/a.gguf"}, "").has_value());
  EXPECT_FALSE(ParseModelSpecs({"a=/x.gguf", "a=/y.gguf"}, "").has_value());
  EXPECT_FALSE(ParseModelSpecs({"/x.gguf", "/y.gguf"}, "alias").has_value());
}

// The manager with fake engines: every model "weighs" its estimate.
class ManagerTest : public ::testing::Test {
 protected:
  void Make(std::uint64_t budget, std::vector<std::pair<std::string, std::uint64_t>> models,
            milliseconds idle_unload = milliseconds(0)) {
    std::vector<ModelConfig> configs;
    for (auto& [id, bytes] : models) {
      ModelConfig c;
      c.id = id;
      c.estimate_bytes = bytes;
      configs.push_back(c);
    }
    manager_ = std::make_unique<ModelManager>(
        ManagerOptions{
            .memory_budget = budget, .idle_unload = idle_unload, .switch_after = switch_after_},
        configs,
        [this](const ModelConfig& c, ModelMetrics& m) -> Result<LoadedModel> {
          loads_.push_back(c.id);
          if (c.id == fail_) return Internal("no such file");
          auto s = scheduler::Scheduler::Create(
              {}, std::make_unique<engine::FakeEngine>(engine::FakeEngineOptions{}), &m,
              Clock::Real());
          if (!s) return std::unexpected(s.error());
          return LoadedModel{std::move(*s),
                             c.id == heavy_ ? 2 * c.estimate_bytes : c.estimate_bytes};
        },
        metrics_, Clock::Real());
  }

  Result<ModelLease> Acquire(const std::string& id, milliseconds timeout = milliseconds(5000)) {
    std::promise<Result<ModelLease>> p;
    auto f = p.get_future();
    manager_->Acquire(id, Clock::Real().Now() + timeout,
                      [&p](Result<ModelLease> lease) { p.set_value(std::move(lease)); });
    return f.get();
  }

  // Acquire without waiting for the answer.
  std::future<Result<ModelLease>> AcquireAsync(const std::string& id,
                                               milliseconds timeout = milliseconds(5000)) {
    auto p = std::make_shared<std::promise<Result<ModelLease>>>();
    auto f = p->get_future();
    manager_->Acquire(id, Clock::Real().Now() + timeout,
                      [p](Result<ModelLease> lease) { p->set_value(std::move(lease)); });
    return f;
  }

  static bool Ready(std::future<Result<ModelLease>>& f, milliseconds within) {
    return f.wait_for(within) == std::future_status::ready;
  }

  ModelState StateOf(const std::string& id) {
    for (const ModelStatus& s : manager_->List())
      if (s.id == id) return s.state;
    return ModelState::kUnloaded;
  }

  ServerMetrics metrics_;
  std::vector<std::string> loads_;  // written on the loader thread, read after a callback
  std::string fail_;
  std::string heavy_;  // this model's load measures twice its estimate
  milliseconds switch_after_{0};
  std::unique_ptr<ModelManager> manager_;
};

TEST_F(ManagerTest, ColdStartThenWarm) {
  Make(0, {{"a", 10}});
  auto first = Acquire("a");
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->cold_start_seconds().has_value());
  auto second = Acquire("a");
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->cold_start_seconds().has_value());
  EXPECT_EQ(loads_.size(), 1u);
}

TEST_F(ManagerTest, EvictsTheLeastRecentlyUsedIdleModel) {
  Make(25, {{"a", 10}, {"b", 10}, {"c", 10}});
  {
    ASSERT_TRUE(Acquire("a").has_value());
  }
  {
    ASSERT_TRUE(Acquire("b").has_value());
  }
  {
    ASSERT_TRUE(Acquire("c").has_value());
  }
  EXPECT_EQ(StateOf("a"), ModelState::kUnloaded);
  EXPECT_EQ(StateOf("b"), ModelState::kLoaded);
  EXPECT_EQ(StateOf("c"), ModelState::kLoaded);
}

TEST_F(ManagerTest, PlansTheNextLoadWithWhatTheLastOneMeasured) {
  Make(25, {{"a", 10}, {"b", 10}});
  heavy_ = "a";  // really holds 20
  {
    ASSERT_TRUE(Acquire("a").has_value());
  }
  {
    ASSERT_TRUE(Acquire("b").has_value());
  }  // 20 + 10 > 25: a goes
  EXPECT_EQ(StateOf("a"), ModelState::kUnloaded);
  {
    ASSERT_TRUE(Acquire("a").has_value());
  }  // needs 20 now, not 10: b goes
  EXPECT_EQ(StateOf("b"), ModelState::kUnloaded);
  EXPECT_EQ(StateOf("a"), ModelState::kLoaded);
}

TEST_F(ManagerTest, WaitsWhileTheOtherModelsAreBusyAndTimesOut) {
  Make(15, {{"a", 10}, {"b", 10}});
  auto a = Acquire("a");
  ASSERT_TRUE(a.has_value());
  auto b = Acquire("b", milliseconds(200));
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(StateOf("a"), ModelState::kLoaded);
}

TEST_F(ManagerTest, TooLargeIsRefusedAndEvictsNothing) {
  Make(15, {{"a", 10}, {"huge", 20}});
  {
    ASSERT_TRUE(Acquire("a").has_value());
  }
  auto huge = Acquire("huge");
  ASSERT_FALSE(huge.has_value());
  EXPECT_EQ(huge.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(huge.error().message.find("budget"), std::string::npos);
  EXPECT_EQ(StateOf("a"), ModelState::kLoaded);
}

// A load's grants run on its thread after the lock is released; one may still hold its lease
// (or release it, taking the lock) when the manager starts the next load. The manager must not
// wait for that thread under its lock: it once joined it there, and the two waited for each
// other forever (the next model's load never started, and the server ignored SIGTERM).
TEST_F(ManagerTest, TheNextLoadStartsWhileTheLastLoadsGrantStillRuns) {
  Make(0, {{"a", 10}, {"b", 10}});
  std::promise<void> granted;
  std::future<Result<ModelLease>> b;
  manager_->Acquire("a", Clock::Real().Now() + milliseconds(5000),
                    [this, &granted, &b](Result<ModelLease> lease) {
                      ASSERT_TRUE(lease.has_value());
                      b = AcquireAsync("b");
                      granted.set_value();
                      // Still on the loader thread: hold the lease while the manager starts
                      // b's load, then release it (which takes the manager's lock).
                      std::this_thread::sleep_for(milliseconds(300));
                    });
  granted.get_future().wait();
  if (!Ready(b, milliseconds(5000))) {
    ADD_FAILURE() << "b's load never finished: the manager and a's loader wait for each other";
    std::abort();  // the manager cannot be destroyed in that state
  }
  EXPECT_TRUE(b.get().has_value());
  EXPECT_EQ(loads_, (std::vector<std::string>{"a", "b"}));
}

TEST_F(ManagerTest, FailedLoadFailsWaitersAndTheNextRequestRetries) {
  Make(0, {{"a", 10}});
  fail_ = "a";
  auto first = Acquire("a");
  ASSERT_FALSE(first.has_value());
  EXPECT_EQ(first.error().code, ErrorCode::kUnavailable);
  fail_.clear();
  EXPECT_TRUE(Acquire("a").has_value());
  EXPECT_EQ(loads_.size(), 2u);
}

TEST_F(ManagerTest, IdleUnloadAfterTheLastLeaseEnds) {
  Make(0, {{"a", 10}}, milliseconds(100));
  {
    auto a = Acquire("a");
    ASSERT_TRUE(a.has_value());
    std::this_thread::sleep_for(milliseconds(250));
    EXPECT_EQ(StateOf("a"), ModelState::kLoaded);  // a lease keeps it loaded
  }
  const SteadyTime deadline = Clock::Real().Now() + milliseconds(3000);
  while (StateOf("a") != ModelState::kUnloaded && Clock::Real().Now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(StateOf("a"), ModelState::kUnloaded);
}

TEST_F(ManagerTest, AdminUnloadRefusedWhileBusy) {
  Make(0, {{"a", 10}});
  auto a = Acquire("a");
  ASSERT_TRUE(a.has_value());
  std::promise<Status> p;
  manager_->Unload("a", [&p](Status s) { p.set_value(s); });
  Status s = p.get_future().get();
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ErrorCode::kResourceExhausted);
}

TEST_F(ManagerTest, BusyModelsAreClosedSoAWaitingModelGetsItsTurn) {
  switch_after_ = milliseconds(100);
  Make(15, {{"a", 10}, {"b", 10}});
  auto a1 = Acquire("a");
  ASSERT_TRUE(a1.has_value());
  auto b1 = AcquireAsync("b");
  EXPECT_FALSE(Ready(b1, milliseconds(300)));  // a is busy: b waits, a gets closed
  // Closed: a new request for "a" is held back, not started.
  auto a2 = AcquireAsync("a");
  EXPECT_FALSE(Ready(a2, milliseconds(100)));
  {
    auto done = std::move(*a1);
  }  // a's running request ends: a is evicted, b loads
  ASSERT_TRUE(Ready(b1, milliseconds(3000)));
  auto b_lease = b1.get();
  ASSERT_TRUE(b_lease.has_value());
  EXPECT_TRUE(b_lease->cold_start_seconds().has_value());
  EXPECT_EQ(StateOf("a"), ModelState::kUnloaded);
  // Now "a" waits its turn: b is closed once it has had its switch_after, and a comes back
  // when b's request ends.
  EXPECT_FALSE(Ready(a2, milliseconds(300)));
  {
    auto done = std::move(*b_lease);
  }
  ASSERT_TRUE(Ready(a2, milliseconds(3000)));
  EXPECT_TRUE(a2.get().has_value());
  EXPECT_EQ(StateOf("a"), ModelState::kLoaded);
  EXPECT_EQ(StateOf("b"), ModelState::kUnloaded);
  EXPECT_EQ(loads_, (std::vector<std::string>{"a", "b", "a"}));
}

TEST_F(ManagerTest, AClosedModelReopensWhenTheWaitingRequestGivesUp) {
  switch_after_ = milliseconds(100);
  Make(15, {{"a", 10}, {"b", 10}});
  auto a1 = Acquire("a");
  ASSERT_TRUE(a1.has_value());
  auto b1 = AcquireAsync("b", milliseconds(400));
  std::this_thread::sleep_for(milliseconds(250));  // a is closed by now
  auto a2 = AcquireAsync("a");
  ASSERT_TRUE(Ready(b1, milliseconds(3000)));
  auto b_result = b1.get();
  ASSERT_FALSE(b_result.has_value());
  EXPECT_EQ(b_result.error().code, ErrorCode::kDeadlineExceeded);
  // b gave up: a reopens and its held-back request starts on the loaded model.
  ASSERT_TRUE(Ready(a2, milliseconds(3000)));
  auto a2_lease = a2.get();
  ASSERT_TRUE(a2_lease.has_value());
  EXPECT_FALSE(a2_lease->cold_start_seconds().has_value());
  EXPECT_EQ(loads_, std::vector<std::string>{"a"});
}

TEST_F(ManagerTest, AnAbandonedRequestStopsWaitingAndAsksForNoLoad) {
  Make(15, {{"a", 10}, {"b", 10}});
  auto a = Acquire("a");
  ASSERT_TRUE(a.has_value());
  std::promise<Result<ModelLease>> p;
  auto f = p.get_future();
  const std::uint64_t ticket =
      manager_->Acquire("b", Clock::Real().Now() + milliseconds(5000),
                        [&p](Result<ModelLease> lease) { p.set_value(std::move(lease)); });
  ASSERT_NE(ticket, 0u);  // b waits: a is busy
  manager_->Abandon(ticket);
  ASSERT_EQ(f.wait_for(milliseconds(1000)), std::future_status::ready);
  auto b = f.get();
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code, ErrorCode::kUnavailable);
  manager_->Abandon(ticket);  // answered already: nothing happens
  {
    auto done = std::move(*a);
  }
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(loads_, std::vector<std::string>{"a"});  // nobody waits for b: no load, no eviction
  EXPECT_EQ(StateOf("a"), ModelState::kLoaded);
  // A request answered at once has no ticket.
  std::promise<Result<ModelLease>> q;
  EXPECT_EQ(manager_->Acquire("a", Clock::Real().Now() + milliseconds(1000),
                              [&q](Result<ModelLease> lease) { q.set_value(std::move(lease)); }),
            0u);
  EXPECT_TRUE(q.get_future().get().has_value());
}

}  // namespace
}  // namespace ember::server
