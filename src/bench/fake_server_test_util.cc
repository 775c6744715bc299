#include "bench/fake_server_test_util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

namespace ember::bench::testing {
namespace {

std::string Hex(std::size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%zx", n);
  return buf;
}

std::size_t ContentLength(std::string head) {
  std::transform(head.begin(), head.end(), head.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const std::size_t at = head.find("content-length:");
  if (at == std::string::npos) return 0;
  return std::strtoul(head.c_str() + at + 15, nullptr, 10);
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

FakeReply SseReply(const std::vector<std::string>& events, std::chrono::milliseconds gap) {
  FakeReply reply;
  reply.gap = gap;
  reply.pieces.push_back(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (const std::string& event : events) {
    const std::string data = "data: " + event + "\n\n";
    reply.pieces.push_back(Hex(data.size()) + "\r\n" + data + "\r\n");
  }
  reply.pieces.push_back("0\r\n\r\n");
  return reply;
}

FakeReply SseReplyUntilClose(const std::vector<std::string>& events) {
  FakeReply reply;
  reply.close = true;
  reply.pieces.push_back(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
  for (const std::string& event : events) reply.pieces.push_back("data: " + event + "\r\n\r\n");
  return reply;
}

FakeReply JsonReply(int status, const std::string& body) {
  FakeReply reply;
  reply.pieces.push_back("HTTP/1.1 " + std::to_string(status) +
                         " Status\r\nContent-Type: application/json\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body);
  return reply;
}

FakeServer::FakeServer(Handler handler) : handler_(std::move(handler)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::listen(listen_fd_, 64);
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeServer::~FakeServer() {
  stop_ = true;
  accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(connection_threads_);
  }
  for (auto& thread : threads) thread.join();
  ::close(listen_fd_);
}

std::vector<std::string> FakeServer::bodies() const {
  std::lock_guard lock(mu_);
  return bodies_;
}

void FakeServer::AcceptLoop() {
  while (!stop_) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 20) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++connections_;
    std::lock_guard lock(mu_);
    connection_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

bool FakeServer::ReadRequest(int fd, std::string& buffer, std::string& body) {
  while (true) {
    const std::size_t head_end = buffer.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const std::size_t length = ContentLength(buffer.substr(0, head_end));
      if (buffer.size() >= head_end + 4 + length) {
        body = buffer.substr(head_end + 4, length);
        buffer.erase(0, head_end + 4 + length);
        return true;
      }
    }
    pollfd pfd{fd, POLLIN, 0};
    if (stop_) return false;
    if (::poll(&pfd, 1, 20) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

void FakeServer::Serve(int fd) {
  std::string buffer;
  std::string body;
  while (ReadRequest(fd, buffer, body)) {
    const int index = next_index_.fetch_add(1);
    {
      std::lock_guard lock(mu_);
      bodies_.push_back(body);
    }
    const FakeReply reply = handler_(index, body);
    bool written = true;
    for (std::size_t i = 0; i < reply.pieces.size() && written; ++i) {
      if (i > 0 && reply.gap.count() > 0) std::this_thread::sleep_for(reply.gap);
      written = WriteAll(fd, reply.pieces[i]);
    }
    if (!written || reply.close) break;
  }
  ::close(fd);
}

}  // namespace ember::bench::testing
