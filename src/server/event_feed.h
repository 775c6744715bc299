// The live event feed behind GET /admin/events: whoever publishes (the console's ticker, a
// request's completion, a cold start) hands a finished SSE frame to every subscriber without
// ever waiting for one. Each subscriber has a bounded buffer; one whose buffer would overflow
// is dropped: its buffer is replaced by a last "dropped" frame and it gets nothing more. So a
// slow or stuck console costs the publisher one failed size check, never a wait.
//
// Threads: Publish from any thread; a subscriber's Take and the notify callback it set run
// wherever its consumer lives (the HTTP strand of its exchange). All locking is in here.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace ember::server {

class FeedSubscriber {
 public:
  explicit FeedSubscriber(std::size_t max_buffered_bytes) : max_bytes_(max_buffered_bytes) {}

  // Called (from the publisher's thread) when frames arrive after the last Take: at most once
  // per Take (edge-triggered). Set before the subscriber is added to a feed.
  void SetNotify(std::function<void()> notify);
  struct Taken {
    std::string frames;    // concatenated SSE frames
    bool dropped = false;  // this is the last batch: the subscriber lagged and was dropped
  };
  Taken Take();
  // The consumer's own verdict (e.g. its socket's send queue is too long): drops it now.
  void Drop(std::string_view why);
  bool dropped() const;

  // Publisher side: false when the subscriber is (now) dropped.
  bool Offer(std::string_view frame);

 private:
  void DropLocked(std::string_view why);

  const std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::string buffer_;            // GUARDED_BY(mu_)
  bool dropped_ = false;          // GUARDED_BY(mu_)
  bool notified_ = false;         // GUARDED_BY(mu_)
  std::function<void()> notify_;  // GUARDED_BY(mu_)
};

class EventFeed {
 public:
  explicit EventFeed(std::size_t max_buffered_bytes) : max_bytes_(max_buffered_bytes) {}

  std::shared_ptr<FeedSubscriber> Subscribe(std::function<void()> notify);
  void Unsubscribe(const std::shared_ptr<FeedSubscriber>& subscriber);
  // Hands `data` as an SSE event named `event` to every subscriber; drops the lagging ones.
  void Publish(std::string_view event, std::string_view data);
  std::size_t subscribers() const;
  // Subscribers dropped for lagging since start.
  std::size_t dropped_total() const;

  static std::string Frame(std::string_view event, std::string_view data);

 private:
  const std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<FeedSubscriber>> subscribers_;  // GUARDED_BY(mu_)
  std::size_t dropped_total_ = 0;                             // GUARDED_BY(mu_)
};

}  // namespace ember::server
