#include "server/event_feed.h"

#include <algorithm>
#include <utility>

namespace ember::server {

void FeedSubscriber::SetNotify(std::function<void()> notify) {
  std::lock_guard lock(mu_);
  notify_ = std::move(notify);
}

FeedSubscriber::Taken FeedSubscriber::Take() {
  std::lock_guard lock(mu_);
  notified_ = false;
  return {std::exchange(buffer_, {}), dropped_};
}

bool FeedSubscriber::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void FeedSubscriber::DropLocked(std::string_view why) {
  dropped_ = true;
  buffer_ = EventFeed::Frame("dropped", std::string("{\"reason\":\"") + std::string(why) + "\"}");
}

void FeedSubscriber::Drop(std::string_view why) {
  std::lock_guard lock(mu_);
  if (!dropped_) DropLocked(why);
}

bool FeedSubscriber::Offer(std::string_view frame) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mu_);
    if (dropped_) return false;
    if (buffer_.size() + frame.size() > max_bytes_) {
      DropLocked("this client fell behind the event feed");
    } else {
      buffer_ += frame;
    }
    if (!notified_) {
      notified_ = true;
      notify = notify_;
    }
  }
  if (notify) notify();
  return !dropped();
}

std::shared_ptr<FeedSubscriber> EventFeed::Subscribe(std::function<void()> notify) {
  auto sub = std::make_shared<FeedSubscriber>(max_bytes_);
  sub->SetNotify(std::move(notify));
  std::lock_guard lock(mu_);
  subscribers_.push_back(sub);
  return sub;
}

void EventFeed::Unsubscribe(const std::shared_ptr<FeedSubscriber>& subscriber) {
  subscriber->SetNotify(nullptr);
  std::lock_guard lock(mu_);
  std::erase(subscribers_, subscriber);
}

void EventFeed::Publish(std::string_view event, std::string_view data) {
  const std::string frame = Frame(event, data);
  std::vector<std::shared_ptr<FeedSubscriber>> subs;
  {
    std::lock_guard lock(mu_);
    subs = subscribers_;
  }
  std::size_t dropped = 0;
  for (const auto& sub : subs) {
    if (!sub->Offer(frame)) ++dropped;
  }
  if (dropped == 0) return;
  std::lock_guard lock(mu_);
  const std::size_t before = subscribers_.size();
  std::erase_if(subscribers_, [](const auto& s) { return s->dropped(); });
  dropped_total_ += before - subscribers_.size();
}

std::size_t EventFeed::subscribers() const {
  std::lock_guard lock(mu_);
  return subscribers_.size();
}

std::size_t EventFeed::dropped_total() const {
  std::lock_guard lock(mu_);
  return dropped_total_;
}

std::string EventFeed::Frame(std::string_view event, std::string_view data) {
  std::string out = "event: ";
  out += event;
  out += "\ndata: ";
  out += data;  // one line: the publishers write JSON without newlines
  out += "\n\n";
  return out;
}

}  // namespace ember::server
