// HTTP/1.1 server on Boost.Asio/Beast (the only component that includes them). Each
// connection is a C++20 coroutine on its own strand; the application sees a plain
// Exchange per request and never touches Asio.
//
// Threads: the server runs `threads` I/O threads. The Handler and every Exchange method
// except Post() run on the exchange's connection strand; Post() is safe from any thread and
// is how other threads (the engine) hand work back to it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace ember::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;
  std::string target;  // path and query as sent
  std::string path;    // target without the query
  std::string body;
  Headers headers;
  bool from_loopback = false;                       // the client connected from 127.0.0.0/8 or ::1
  std::string Header(std::string_view name) const;  // case-insensitive, "" if absent
};

class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual const Request& request() const = 0;
  // A complete response. Ends the exchange.
  virtual void Respond(int status, std::string content_type, std::string body,
                       Headers extra = {}) = 0;
  // A streamed response (chunked transfer encoding): headers now, then Write()s, then End().
  virtual void StartStream(int status, std::string content_type, Headers extra = {}) = 0;
  virtual void Write(std::string data) = 0;
  virtual void End() = 0;
  // Runs `fn` on this exchange's strand. Safe from any thread.
  virtual void Post(std::function<void()> fn) = 0;
  // Called once, on the strand, if the client disconnects before the response ended.
  virtual void OnClientGone(std::function<void()> fn) = 0;
  // A header every response of this exchange carries (x-request-id), whoever answers it.
  virtual void AddResponseHeader(std::string name, std::string value) = 0;
  // Bytes of a streamed response queued and not yet written to the socket: how far the client
  // lags behind (an event feed drops a client that lags too far).
  virtual std::size_t queued_bytes() const = 0;
};

using Handler = std::function<void(std::shared_ptr<Exchange>)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = pick a free port
  int threads = 2;
  std::size_t max_body_bytes = 8 << 20;
  std::size_t max_header_bytes = 16 << 10;
  // A client must deliver a whole request (headers and body) within this time, and an idle
  // keep-alive connection is closed after it.
  std::chrono::milliseconds read_timeout{30'000};
  // How often a waiting exchange checks whether its client is still connected.
  std::chrono::milliseconds disconnect_poll{20};
  // Told about requests the HTTP layer itself rejected (400, 408, 413, 431).
  std::function<void(int status)> on_protocol_error;
};

class HttpServer {
 public:
  // Binds and listens; fails with a clear error when the address is unusable.
  static Result<std::unique_ptr<HttpServer>> Create(ServerOptions options, Handler handler);
  virtual ~HttpServer() = default;
  virtual int port() const = 0;
  virtual void Start() = 0;
  // Stops accepting new connections; open exchanges keep running.
  virtual void StopAccepting() = 0;
  // Stops all I/O and joins the threads.
  virtual void Stop() = 0;
};

}  // namespace ember::http
