#include "http/http_server.h"

// Boost 1.74's Asio uses std::exchange without including <utility>.
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <deque>
#include <thread>
#include <utility>

#include "common/log.h"

namespace ember::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;

std::string Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      return v;
    }
  }
  return {};
}

namespace {

std::string StatusLine(int status) {
  const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  return StrCat("HTTP/1.1 ", status, " ", std::string_view(reason.data(), reason.size()), "\r\n");
}

std::string HeaderBlock(int status, const std::string& content_type, const Headers& extra,
                        bool keep_alive) {
  std::string out = StatusLine(status);
  out += "Server: ember\r\nContent-Type: " + content_type + "\r\n";
  for (const auto& [k, v] : extra) out += k + ": " + v + "\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  return out;
}

// One request/response on a connection. Lives on the connection's strand.
class ExchangeImpl final : public Exchange, public std::enable_shared_from_this<ExchangeImpl> {
 public:
  ExchangeImpl(Strand strand, Request request, bool keep_alive)
      : strand_(std::move(strand)),
        signal_(strand_),
        request_(std::move(request)),
        keep_alive_(keep_alive) {}

  const Request& request() const override { return request_; }

  void Respond(int status, std::string content_type, std::string body, Headers extra) override {
    if (started_) return;
    started_ = ended_ = true;
    extra.insert(extra.begin(), always_.begin(), always_.end());
    std::string out = HeaderBlock(status, content_type, extra, keep_alive_);
    out += StrCat("Content-Length: ", body.size(), "\r\n\r\n");
    out += body;
    Queue(std::move(out));
  }

  void StartStream(int status, std::string content_type, Headers extra) override {
    if (started_) return;
    started_ = streaming_ = true;
    extra.insert(extra.begin(), always_.begin(), always_.end());
    extra.emplace_back("Cache-Control", "no-cache");
    std::string out = HeaderBlock(status, content_type, extra, keep_alive_);
    out += "Transfer-Encoding: chunked\r\n\r\n";
    Queue(std::move(out));
  }

  void Write(std::string data) override {
    if (!streaming_ || ended_ || data.empty()) return;
    char size[20];
    std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
    data.insert(0, size);
    data += "\r\n";
    Queue(std::move(data));
  }

  void End() override {
    if (!streaming_ || ended_) return;
    ended_ = true;
    Queue("0\r\n\r\n");
  }

  void Post(std::function<void()> fn) override {
    asio::post(strand_, [self = shared_from_this(), fn = std::move(fn)] { fn(); });
  }

  void OnClientGone(std::function<void()> fn) override { on_gone_ = std::move(fn); }

  void AddResponseHeader(std::string name, std::string value) override {
    always_.emplace_back(std::move(name), std::move(value));
  }

  std::size_t queued_bytes() const override { return queued_bytes_; }

  // Writes whatever the application queued until the response ends or the client leaves.
  // Returns false if the connection must be closed.
  awaitable<bool> Serve(beast::tcp_stream& stream, std::chrono::milliseconds poll) {
    WatchForHangUp(stream);
    for (;;) {
      if (!outbox_.empty()) {
        // Everything queued since the last write goes out in one syscall.
        std::string data = std::move(outbox_.front());
        outbox_.pop_front();
        for (; !outbox_.empty(); outbox_.pop_front()) data += outbox_.front();
        queued_bytes_ = data.size();
        beast::error_code ec;
        stream.expires_never();
        co_await asio::async_write(stream, asio::buffer(data),
                                   asio::redirect_error(asio::use_awaitable, ec));
        queued_bytes_ = 0;
        for (const std::string& d : outbox_) queued_bytes_ += d.size();
        if (ec) {
          ClientGone();
          co_return false;
        }
        continue;
      }
      if (ended_) {
        StopWatching(stream);
        co_return keep_alive_;
      }
      if (!Connected(stream)) {
        ClientGone();
        co_return false;
      }
      // Bytes already waiting (a pipelined request) keep the socket readable, so fall back
      // to polling; otherwise the readiness watch wakes us, and the timer is a safety net.
      if (readable_) pipelined_ = true;
      signal_.expires_after(pipelined_ ? poll : kIdleRecheck);
      beast::error_code ec;
      co_await signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

 private:
  static constexpr std::chrono::seconds kIdleRecheck{1};

  // Wakes the exchange when the socket turns readable: the client closed it (EOF or reset)
  // or sent more bytes. A waiting response thus learns of a disconnect at once, without the
  // HTTP thread waking every few milliseconds to ask.
  void WatchForHangUp(beast::tcp_stream& stream) {
    stream.socket().async_wait(tcp::socket::wait_read,
                               [self = shared_from_this()](beast::error_code ec) {
                                 if (ec) return;  // cancelled at the end of the exchange
                                 self->readable_ = true;
                                 self->signal_.cancel();
                               });
  }

  static void StopWatching(beast::tcp_stream& stream) {
    beast::error_code ignored;
    stream.socket().cancel(ignored);
  }

  void Queue(std::string data) {
    if (gone_) return;
    queued_bytes_ += data.size();
    outbox_.push_back(std::move(data));
    signal_.cancel();
  }

  static bool Connected(beast::tcp_stream& stream) {
    char byte;
    const ssize_t n = ::recv(stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return true;
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }

  void ClientGone() {
    gone_ = true;
    if (auto fn = std::exchange(on_gone_, nullptr)) fn();
  }

  Strand strand_;
  asio::steady_timer signal_;
  Request request_;
  bool keep_alive_;
  bool started_ = false, streaming_ = false, ended_ = false, gone_ = false;
  bool readable_ = false, pipelined_ = false;
  std::deque<std::string> outbox_;
  std::size_t queued_bytes_ = 0;  // in outbox_ and in the write in flight
  Headers always_;                // AddResponseHeader
  std::function<void()> on_gone_;
};

// Writes an error the HTTP layer produced itself, in the OpenAI envelope, and closes.
awaitable<void> WriteProtocolError(beast::tcp_stream& stream, int status, std::string message,
                                   const ServerOptions& options) {
  if (options.on_protocol_error) options.on_protocol_error(status);
  std::string body = "{\"error\":{\"message\":\"" + message +
                     "\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}";
  std::string out = HeaderBlock(status, "application/json", {}, false);
  out += StrCat("Content-Length: ", body.size(), "\r\n\r\n", body);
  beast::error_code ec;
  stream.expires_after(std::chrono::seconds(5));
  co_await asio::async_write(stream, asio::buffer(out),
                             asio::redirect_error(asio::use_awaitable, ec));
}

Request ToRequest(bhttp::request<bhttp::string_body>&& msg, bool from_loopback) {
  Request r;
  r.from_loopback = from_loopback;
  r.method = std::string(msg.method_string());
  r.target = std::string(msg.target());
  r.path = r.target.substr(0, r.target.find('?'));
  for (const auto& field : msg) {
    r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  r.body = std::move(msg.body());
  return r;
}

// Maps a failed read to the status a client gets, or 0 when there is no one to answer.
int ReadErrorStatus(const beast::error_code& ec, std::string& message) {
  if (ec == bhttp::error::body_limit) {
    message = "request body exceeds the server's limit";
    return 413;
  }
  if (ec == bhttp::error::header_limit) {
    message = "request headers exceed the server's limit";
    return 431;
  }
  if (ec == beast::error::timeout) {
    message = "request not received within the read timeout";
    return 408;
  }
  if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
      ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
    return 0;
  }
  message = "malformed HTTP request";
  return 400;
}

awaitable<void> Session(tcp::socket socket, Strand strand, const ServerOptions& options,
                        const Handler& handler) {
  bool from_loopback = false;
  {
    beast::error_code ec;
    const auto peer = socket.remote_endpoint(ec).address();
    from_loopback =
        !ec && (peer.is_loopback() ||
                (peer.is_v6() && peer.to_v6().is_v4_mapped() &&
                 asio::ip::make_address_v4(asio::ip::v4_mapped, peer.to_v6()).is_loopback()));
  }
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(options.max_body_bytes);
    parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
    // Not tcp_stream's expiry: it closes the socket, and a slow client should get its 408.
    bool timed_out = false;
    asio::steady_timer deadline(strand, options.read_timeout);
    deadline.async_wait([&stream, &timed_out](beast::error_code ec) {
      if (ec) return;  // cancelled: touches nothing, so it is safe after the frame is gone
      timed_out = true;
      stream.socket().cancel();
    });
    beast::error_code ec;
    co_await bhttp::async_read_header(stream, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    // curl sends "Expect: 100-continue" with bodies over 1 KiB and waits a second for it.
    if (!ec && !parser.is_done() &&
        beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(stream, asio::buffer(kContinue.data(), kContinue.size()),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec && !parser.is_done()) {
      co_await bhttp::async_read(stream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    deadline.cancel();
    if (ec) {
      std::string message;
      if (timed_out) ec = beast::error::timeout;
      // A connection idle between requests that times out is closed quietly.
      const bool idle = timed_out && buffer.size() == 0 && !parser.got_some();
      const int status = idle ? 0 : ReadErrorStatus(ec, message);
      if (status != 0) co_await WriteProtocolError(stream, status, message, options);
      break;
    }
    stream.expires_never();
    auto msg = parser.release();
    const bool keep_alive = msg.keep_alive();
    auto exchange = std::make_shared<ExchangeImpl>(strand, ToRequest(std::move(msg), from_loopback),
                                                   keep_alive);
    handler(exchange);
    const bool again = co_await exchange->Serve(stream, options.disconnect_poll);
    if (!again) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.socket().close(ignored);
}

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(ServerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)), acceptor_(ioc_) {}
  ~ServerImpl() override { Stop(); }

  Status Bind() {
    beast::error_code ec;
    auto address = asio::ip::make_address(options_.host, ec);
    if (ec) return InvalidArgument(StrCat("invalid --host '", options_.host, "'"), "host");
    if (options_.port < 0 || options_.port > 65535) {
      return InvalidArgument("--port must be between 0 and 65535", "port");
    }
    tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Unavailable(
          StrCat("cannot listen on ", options_.host, ":", options_.port, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    return {};
  }

  int port() const override { return port_; }

  void Start() override {
    asio::co_spawn(ioc_, Accept(), asio::detached);
    const int n = std::max(1, options_.threads);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }

  void StopAccepting() override {
    asio::post(ioc_, [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
  }

  void Stop() override {
    ioc_.stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

 private:
  awaitable<void> Accept() {
    for (;;) {
      beast::error_code ec;
      auto strand = asio::make_strand(ioc_);
      tcp::socket socket(strand);
      co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      if (ec) {
        log::Warn("accept failed: ", ec.message());
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      asio::co_spawn(strand, Session(std::move(socket), strand, options_, handler_),
                     asio::detached);
    }
  }

  ServerOptions options_;
  Handler handler_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  int port_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Create(ServerOptions options, Handler handler) {
  auto server = std::make_unique<ServerImpl>(std::move(options), std::move(handler));
  if (auto ok = server->Bind(); !ok) return std::unexpected(ok.error());
  return server;
}

}  // namespace ember::http
