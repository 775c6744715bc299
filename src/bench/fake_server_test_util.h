// Test-only: a tiny HTTP/1.1 server on 127.0.0.1:<ephemeral port> that answers each POST
// with a canned reply, one thread per connection, so RunLoad can be tested end to end
// without a model. Replies are written piece by piece with an optional gap between pieces.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ember::bench::testing {

struct FakeReply {
  std::vector<std::string> pieces;  // written in order, `gap` apart
  std::chrono::milliseconds gap{0};
  bool close = false;  // close the connection after the reply
};

// A 200 text/event-stream reply, chunked, one chunk per event ("data: <event>\n\n").
FakeReply SseReply(const std::vector<std::string>& events, std::chrono::milliseconds gap);
// The same events without chunking, delimited by closing the connection.
FakeReply SseReplyUntilClose(const std::vector<std::string>& events);
// A JSON reply with Content-Length.
FakeReply JsonReply(int status, const std::string& body);

class FakeServer {
 public:
  // Called once per request with its arrival index (0, 1, ...) and its body.
  using Handler = std::function<FakeReply(int index, const std::string& body)>;

  explicit FakeServer(Handler handler);
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  int port() const { return port_; }
  std::vector<std::string> bodies() const;
  int connections() const { return connections_.load(); }

 private:
  void AcceptLoop();
  void Serve(int fd);
  bool ReadRequest(int fd, std::string& buffer, std::string& body);

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> next_index_{0};
  std::atomic<int> connections_{0};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> connection_threads_;  // GUARDED_BY(mu_)
  std::vector<std::string> bodies_;              // GUARDED_BY(mu_)
};

}  // namespace ember::bench::testing
