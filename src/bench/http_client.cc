#include "bench/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <system_error>

#include "bench/stream_parse.h"

namespace ember::bench {
namespace {

constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kReadSize = 16 * 1024;

std::string ErrnoText(int err) { return std::error_code(err, std::system_category()).message(); }

// Waits until `fd` is ready for `events`; DeadlineExceeded when the deadline passes first.
Status WaitFor(int fd, short events, SteadyClock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) return DeadlineExceeded("request timed out");
    pollfd pfd{fd, events, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (n > 0) return {};
    if (n < 0 && errno != EINTR) return Unavailable("poll: " + ErrnoText(errno));
  }
}

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

// Folds one "Name: value" header line into `head`; other lines are ignored.
Status ApplyHeader(std::string_view line, ResponseHead& head) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return {};
  const std::string name = Lower(Trim(line.substr(0, colon)));
  const std::string value = Lower(Trim(line.substr(colon + 1)));
  if (name == "content-length") {
    std::size_t length = 0;
    auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), length);
    if (err != std::errc() || end != value.data() + value.size()) {
      return Unavailable("malformed Content-Length '" + value + "'");
    }
    head.content_length = length;
  } else if (name == "transfer-encoding") {
    head.chunked = value.find("chunked") != std::string::npos;
  } else if (name == "connection") {
    if (value.find("close") != std::string::npos) head.close = true;
    if (value.find("keep-alive") != std::string::npos) head.close = false;
  }
  return {};
}

}  // namespace

Result<Endpoint> Resolve(const std::string& host, int port) {
  if (port <= 0 || port > 65535) return InvalidArgument("port must be in 1..65535", "port");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return Unavailable("cannot resolve host '" + host + "': " + ::gai_strerror(rc));
  }
  Endpoint endpoint;
  std::memcpy(&endpoint.address, found->ai_addr, found->ai_addrlen);
  endpoint.length = found->ai_addrlen;
  ::freeaddrinfo(found);
  const bool ipv6_literal = host.find(':') != std::string::npos;
  endpoint.host_header = (ipv6_literal ? "[" + host + "]" : host) + ":" + service;
  return endpoint;
}

HttpClient::~HttpClient() { Close(); }

void HttpClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status HttpClient::Connect(SteadyClock::time_point deadline) {
  const auto* addr = reinterpret_cast<const sockaddr*>(&endpoint_.address);
  fd_ = ::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return Unavailable("socket: " + ErrnoText(errno));
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd_, addr, endpoint_.length) != 0) {
    if (errno != EINPROGRESS) return Unavailable("connect: " + ErrnoText(errno));
    if (auto ready = WaitFor(fd_, POLLOUT, deadline); !ready) return ready;
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Unavailable("connect: " + ErrnoText(err));
  }
  return {};
}

Status HttpClient::SendAll(std::string_view data, SteadyClock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (auto ready = WaitFor(fd_, POLLOUT, deadline); !ready) return ready;
    } else if (errno != EINTR) {
      return Unavailable("send: " + ErrnoText(errno));
    }
  }
  return {};
}

Result<std::size_t> HttpClient::Receive(std::string& out, SteadyClock::time_point deadline) {
  while (true) {
    if (auto ready = WaitFor(fd_, POLLIN, deadline); !ready) return std::unexpected(ready.error());
    const std::size_t old_size = out.size();
    out.resize(old_size + kReadSize);
    const ssize_t n = ::recv(fd_, out.data() + old_size, kReadSize, 0);
    out.resize(old_size + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return Unavailable("recv: " + ErrnoText(errno));
    }
  }
}

Result<int> HttpClient::Post(std::string_view path, std::string_view body,
                             SteadyClock::time_point deadline, const BodySink& sink) {
  std::string request = "POST " + std::string(path) +
                        " HTTP/1.1\r\nHost: " + endpoint_.host_header +
                        "\r\nContent-Type: application/json\r\n"
                        "Accept: text/event-stream, application/json\r\n"
                        "Content-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n";
  request.append(body);
  return Exchange(request, deadline, sink);
}

Result<int> HttpClient::Get(std::string_view path, SteadyClock::time_point deadline,
                            const BodySink& sink) {
  const std::string request =
      "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + endpoint_.host_header + "\r\n\r\n";
  return Exchange(request, deadline, sink);
}

Result<int> HttpClient::Exchange(std::string_view request, SteadyClock::time_point deadline,
                                 const BodySink& sink) {
  for (int attempt = 0;; ++attempt) {
    const bool fresh = fd_ < 0;
    if (fresh) {
      if (auto connected = Connect(deadline); !connected) {
        Close();
        return std::unexpected(connected.error());
      }
    }
    bool got_bytes = false;
    auto status = ExchangeOnce(request, deadline, sink, got_bytes);
    if (status) return status;
    Close();
    // Only a reused connection that died before answering is worth a second try.
    if (fresh || got_bytes || attempt > 0) return status;
  }
}

Result<int> HttpClient::ExchangeOnce(std::string_view request, SteadyClock::time_point deadline,
                                     const BodySink& sink, bool& got_bytes) {
  if (auto sent = SendAll(request, deadline); !sent) return std::unexpected(sent.error());
  std::string buffer;
  auto head = ReadHead(buffer, deadline, got_bytes);
  if (!head) return std::unexpected(head.error());
  if (auto body = ReadBody(*head, buffer, deadline, sink); !body) {
    return std::unexpected(body.error());
  }
  if (head->close) Close();
  return head->status;
}

Result<ResponseHead> HttpClient::ReadHead(std::string& buffer, SteadyClock::time_point deadline,
                                          bool& got_bytes) {
  while (true) {
    const std::size_t end = buffer.find("\r\n\r\n");
    if (end != std::string::npos) {
      auto head = ParseResponseHead(std::string_view(buffer).substr(0, end));
      buffer.erase(0, end + 4);
      if (!head || head->status >= 200) return head;
      continue;  // 1xx interim response: the real one follows
    }
    if (buffer.size() > kMaxHead) return Unavailable("response head too large");
    auto n = Receive(buffer, deadline);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return Unavailable("connection closed before a response");
    got_bytes = true;
  }
}

Status HttpClient::ReadBody(const ResponseHead& head, std::string& buffer,
                            SteadyClock::time_point deadline, const BodySink& sink) {
  if (head.status == 204 || head.status == 304) return {};
  ChunkedDecoder decoder;
  std::size_t delivered = 0;
  std::string decoded;
  while (true) {
    if (head.chunked) {
      decoded.clear();
      if (auto fed = decoder.Feed(buffer, decoded); !fed) return fed;
      if (!decoded.empty()) sink(decoded);
      if (decoder.done()) return {};
    } else {
      const std::size_t limit = head.content_length.value_or(SIZE_MAX) - delivered;
      const std::string_view piece = std::string_view(buffer).substr(0, limit);
      if (!piece.empty()) sink(piece);
      delivered += piece.size();
      if (head.content_length && delivered == *head.content_length) return {};
    }
    buffer.clear();
    auto n = Receive(buffer, deadline);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) {
      if (head.chunked || head.content_length) return Unavailable("connection closed mid-body");
      return {};  // body delimited by close; ResponseHead::close is set
    }
  }
}

Result<ResponseHead> ParseResponseHead(std::string_view text) {
  ResponseHead head;
  const std::size_t line_end = std::min(text.find("\r\n"), text.size());
  const std::string_view status_line = text.substr(0, line_end);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) {
    return Unavailable("malformed status line '" + std::string(status_line) + "'");
  }
  auto [ptr, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, head.status);
  if (ec != std::errc() || ptr != status_line.data() + 12) {
    return Unavailable("malformed status line '" + std::string(status_line) + "'");
  }
  head.close = status_line.starts_with("HTTP/1.0");
  std::size_t pos = line_end;
  while (pos < text.size()) {
    const std::size_t start = pos + 2;
    const std::size_t end = std::min(text.find("\r\n", start), text.size());
    const std::string_view line = text.substr(start, end - start);
    pos = end;
    if (auto applied = ApplyHeader(line, head); !applied) return std::unexpected(applied.error());
  }
  if (head.chunked) head.content_length.reset();
  if (!head.chunked && !head.content_length && head.status != 204 && head.status != 304) {
    head.close = true;  // body runs to the end of the connection
  }
  return head;
}

}  // namespace ember::bench
