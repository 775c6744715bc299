#include "scheduler/request.h"

#include <iterator>
#include <utility>

namespace ember::scheduler {

std::string_view TraceMarkName(TraceMark::Kind kind) {
  switch (kind) {
    case TraceMark::Kind::kAdmitted:
      return "admitted";
    case TraceMark::Kind::kFirstToken:
      return "first_token";
    case TraceMark::Kind::kPreempted:
      return "preempted";
    case TraceMark::Kind::kResumed:
      return "resumed";
  }
  return "admitted";
}

void RequestStream::SetNotify(std::function<void()> notify) {
  std::lock_guard lock(mu_);
  notify_ = std::move(notify);
}

std::vector<Event> RequestStream::Take() {
  std::lock_guard lock(mu_);
  notified_ = false;
  return std::exchange(events_, {});
}

void RequestStream::Push(Event event) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mu_);
    auto* delta = std::get_if<TextDelta>(&event);
    auto* last = events_.empty() ? nullptr : std::get_if<TextDelta>(&events_.back());
    if (delta != nullptr && last != nullptr && last->choice == delta->choice) {
      last->text += delta->text;
      last->tokens += delta->tokens;
      std::move(delta->logprobs.begin(), delta->logprobs.end(), std::back_inserter(last->logprobs));
    } else {
      events_.push_back(std::move(event));
    }
    if (!notified_ && notify_) {
      notified_ = true;
      notify = notify_;
    }
  }
  if (notify) notify();
}

}  // namespace ember::scheduler
