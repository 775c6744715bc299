// A minimal HTTP/1.1 client over POSIX sockets for the load generator: one keep-alive
// connection, GET and POST, bodies delivered to a callback as they arrive (Content-Length,
// chunked, or read-until-close). Owned and used by one worker thread.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace ember::bench {

using SteadyClock = std::chrono::steady_clock;

// A resolved server address (the first one getaddrinfo returns).
struct Endpoint {
  sockaddr_storage address{};
  socklen_t length = 0;
  std::string host_header;  // "host:port"
};
[[nodiscard]] Result<Endpoint> Resolve(const std::string& host, int port);

// The parts of a response head the client acts on.
struct ResponseHead {
  int status = 0;
  bool chunked = false;
  std::optional<std::size_t> content_length;  // unset when chunked
  bool close = false;                         // the connection ends after this response
};
// Parses a status line plus header lines (without the blank line that ends the head).
[[nodiscard]] Result<ResponseHead> ParseResponseHead(std::string_view text);

class HttpClient {
 public:
  // Receives the decoded body in pieces, each as soon as it has been read from the socket.
  using BodySink = std::function<void(std::string_view)>;

  explicit HttpClient(Endpoint endpoint) : endpoint_(std::move(endpoint)) {}
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POSTs a JSON `body` to `path` and returns the response status once the whole body has
  // been passed to `sink`. A kept-alive connection the server has closed meanwhile is
  // reopened and the request retried once. Errors are transport failures (refused, reset,
  // deadline passed, malformed response); the connection is closed after any of them.
  [[nodiscard]] Result<int> Post(std::string_view path, std::string_view body,
                                 SteadyClock::time_point deadline, const BodySink& sink);
  // GETs `path`; otherwise as Post.
  [[nodiscard]] Result<int> Get(std::string_view path, SteadyClock::time_point deadline,
                                const BodySink& sink);

 private:
  [[nodiscard]] Status Connect(SteadyClock::time_point deadline);
  // Sends a complete request and reads its response, reconnecting once as Post describes.
  [[nodiscard]] Result<int> Exchange(std::string_view request, SteadyClock::time_point deadline,
                                     const BodySink& sink);
  [[nodiscard]] Result<int> ExchangeOnce(std::string_view request, SteadyClock::time_point deadline,
                                         const BodySink& sink, bool& got_bytes);
  [[nodiscard]] Result<ResponseHead> ReadHead(std::string& buffer, SteadyClock::time_point deadline,
                                              bool& got_bytes);
  [[nodiscard]] Status ReadBody(const ResponseHead& head, std::string& buffer,
                                SteadyClock::time_point deadline, const BodySink& sink);
  [[nodiscard]] Status SendAll(std::string_view data, SteadyClock::time_point deadline);
  // Reads what is available into `out` (appending); returns 0 when the peer closed.
  [[nodiscard]] Result<std::size_t> Receive(std::string& out, SteadyClock::time_point deadline);
  void Close();

  Endpoint endpoint_;
  int fd_ = -1;
};

}  // namespace ember::bench
