#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "common/log.h"
#include "server/event_feed.h"
#include "server/request_log.h"

namespace ember::server {
namespace {

RequestRecord Record(std::string id, std::string tenant, std::string outcome = "finished",
                     std::string model = "model-a") {
  RequestRecord r;
  r.response_id = StrCat("chatcmpl-", id);
  r.id = std::move(id);
  r.tenant = std::move(tenant);
  r.model = std::move(model);
  r.outcome = std::move(outcome);
  return r;
}

RequestFilter Filter(std::string tenant, std::string status, std::size_t limit = 50) {
  RequestFilter f;
  f.tenant = std::move(tenant);
  f.status = std::move(status);
  f.limit = limit;
  return f;
}

TEST(RequestLogTest, KeepsTheNewestUpToItsCapacity) {
  RequestLog log(3);
  for (const char* id : {"r0", "r1", "r2", "r3", "r4"}) log.Add(Record(id, "t"));
  EXPECT_EQ(log.size(), 3u);
  EXPECT_EQ(log.Find("r0"), nullptr);
  EXPECT_EQ(log.Find("r1"), nullptr);
  ASSERT_NE(log.Find("r2"), nullptr);
  EXPECT_EQ(log.Find("chatcmpl-r4")->id, "r4");  // by response id too
  auto all = log.Search(Filter("", "", 10));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0]->id, "r4");  // newest first
  EXPECT_EQ(all[2]->id, "r2");
}

TEST(RequestLogTest, ZeroCapacityKeepsNothing) {
  RequestLog log(0);
  log.Add(Record("a", "t"));
  EXPECT_EQ(log.size(), 0u);
  EXPECT_EQ(log.Find("a"), nullptr);
}

TEST(RequestLogTest, SearchesByTenantStatusAndLimit) {
  RequestLog log(10);
  log.Add(Record("a", "acme"));
  log.Add(Record("b", "globex", "rate_limited"));
  log.Add(Record("c", "acme", "client_gone"));
  log.Add(Record("d", "acme"));
  auto acme = log.Search(Filter("acme", ""));
  ASSERT_EQ(acme.size(), 3u);
  EXPECT_EQ(acme[0]->id, "d");
  auto failed = log.Search(Filter("", "failed"));
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[0]->id, "c");
  EXPECT_EQ(failed[1]->id, "b");
  EXPECT_EQ(log.Search(Filter("", "rate_limited")).size(), 1u);
  EXPECT_EQ(log.Search(Filter("acme", "ok", 1)).at(0)->id, "d");
}

TEST(RequestLogTest, TimelineNamesTheRequestsAStepShared) {
  auto trace = std::make_shared<scheduler::Trace>();
  trace->peer_ids = {"other-1", "other-2"};
  trace->peers = {{0, 1}, {1, 7}};
  trace->steps.push_back({.step = 42,
                          .start = std::chrono::microseconds(300),
                          .took = std::chrono::microseconds(50),
                          .tokens = 1,
                          .prefill = false,
                          .batch_tokens = 9,
                          .peers_begin = 0,
                          .peers_end = 2});
  trace->steps_total = 1;
  RequestRecord r = Record("a", "acme");
  r.trace = trace;
  r.completed_ns = 1'000'000;
  const std::string json = RequestRecordJson(r);
  EXPECT_NE(json.find("{\"event\":\"decode\",\"at_us\":300,\"step\":42,\"took_us\":50,\"tokens\":1,"
                      "\"batch_tokens\":9,\"shared_with\":[{\"id\":\"other-1\",\"tokens\":1},"
                      "{\"id\":\"other-2\",\"tokens\":7}]}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("{\"event\":\"completed\",\"at_us\":1000}"), std::string::npos) << json;
}

TEST(RequestIdTest, AcceptsOnlySaneIds) {
  EXPECT_TRUE(ValidRequestId("abc-123_x.y:z"));
  EXPECT_FALSE(ValidRequestId(""));
  EXPECT_FALSE(ValidRequestId(std::string(129, 'a')));
  EXPECT_FALSE(ValidRequestId("a b"));
  EXPECT_FALSE(ValidRequestId("<script>"));
}

TEST(EventFeedTest, EverySubscriberGetsEachFrameAndOneNotifyPerTake) {
  EventFeed feed(1 << 10);
  int notified = 0;
  auto sub = feed.Subscribe([&] { ++notified; });
  feed.Publish("snapshot", "{\"a\":1}");
  feed.Publish("snapshot", "{\"a\":2}");
  EXPECT_EQ(notified, 1);
  FeedSubscriber::Taken t = sub->Take();
  EXPECT_EQ(t.frames, "event: snapshot\ndata: {\"a\":1}\n\nevent: snapshot\ndata: {\"a\":2}\n\n");
  EXPECT_FALSE(t.dropped);
  feed.Publish("x", "{}");
  EXPECT_EQ(notified, 2);
}

TEST(EventFeedTest, ALaggingSubscriberIsDroppedWithANoteAndOthersKeepGoing) {
  EventFeed feed(100);
  auto slow = feed.Subscribe(nullptr);
  auto fast = feed.Subscribe(nullptr);
  const std::string data(30, 'x');
  for (int i = 0; i < 5; ++i) {
    feed.Publish("e", data);  // 41 bytes a frame: the third overflows 100
    (void)fast->Take();       // the fast one keeps up
  }
  EXPECT_TRUE(slow->dropped());
  FeedSubscriber::Taken t = slow->Take();
  EXPECT_TRUE(t.dropped);
  EXPECT_EQ(t.frames.rfind("event: dropped\n", 0), 0u) << t.frames;
  EXPECT_FALSE(fast->dropped());
  EXPECT_EQ(feed.subscribers(), 1u);
  EXPECT_EQ(feed.dropped_total(), 1u);
  feed.Publish("e", data);
  EXPECT_EQ(fast->Take().frames, EventFeed::Frame("e", data));
}

// A subscriber that never takes anything (its consumer is stuck) never makes the publisher
// wait, and its memory stays within its bound.
TEST(EventFeedTest, AStuckSubscriberNeverBlocksThePublisher) {
  EventFeed feed(4096);
  int notified = 0;
  auto stuck = feed.Subscribe([&] { ++notified; });
  for (int i = 0; i < 100'000; ++i) feed.Publish("e", "{\"n\":12345}");
  EXPECT_EQ(notified, 1);
  EXPECT_TRUE(stuck->dropped());
  EXPECT_LE(stuck->Take().frames.size(), 4096u);
  EXPECT_EQ(feed.subscribers(), 0u);
}

}  // namespace
}  // namespace ember::server
