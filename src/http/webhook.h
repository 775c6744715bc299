// Webhook calls: JSON POSTed to an http:// URL from a thread of their own, retried with backoff,
// never blocking the caller (a request's completion point queues the call and moves on). Used
// for budget notifications (docs/finops.md). https is not supported: point the URL at a
// receiver inside the cluster (Alertmanager, a relay) or a local sidecar.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/error.h"

namespace ember::http {

struct WebhookOptions {
  int attempts = 5;                         // per call
  std::chrono::milliseconds backoff{500};   // doubled after each failed attempt
  std::chrono::milliseconds timeout{5000};  // per attempt: connect, write, read
  std::size_t max_queued = 1000;            // calls beyond it are dropped (and logged)
};

// "http://host[:port][/path]" -> its parts; InvalidArgument otherwise (https included).
struct WebhookUrl {
  std::string host;
  std::string port = "80";
  std::string target = "/";
};
Result<WebhookUrl> ParseWebhookUrl(std::string_view url);

class WebhookSender {
 public:
  static Result<std::unique_ptr<WebhookSender>> Create(std::string_view url,
                                                       WebhookOptions options = {});
  ~WebhookSender();  // gives queued calls a last attempt each, then stops

  // Queues one POST of `json`; returns at once.
  void Post(std::string json);

  std::int64_t delivered() const;
  std::int64_t failed() const;  // calls given up on after every attempt (or dropped)

 private:
  WebhookSender(WebhookUrl url, WebhookOptions options);
  void Run();
  bool Send(const std::string& json);  // one attempt: true on a 2xx answer

  const WebhookUrl url_;
  const WebhookOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;  // GUARDED_BY(mu_)
  bool stop_ = false;              // GUARDED_BY(mu_)
  std::int64_t delivered_ = 0;     // GUARDED_BY(mu_)
  std::int64_t failed_ = 0;        // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ember::http
