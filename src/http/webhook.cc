#include "http/webhook.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/log.h"

namespace ember::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

Result<WebhookUrl> ParseWebhookUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return InvalidArgument(StrCat("webhook URL \"", url,
                                  "\" must start with http:// (https is not supported: use a "
                                  "receiver inside the cluster or a local relay)"));
  }
  std::string_view rest = url.substr(kScheme.size());
  WebhookUrl out;
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) out.target = std::string(rest.substr(slash));
  const std::size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    out.port = std::string(authority.substr(colon + 1));
    authority = authority.substr(0, colon);
    if (out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos) {
      return InvalidArgument(StrCat("webhook URL \"", url, "\" has a bad port"));
    }
  }
  if (authority.empty()) return InvalidArgument(StrCat("webhook URL \"", url, "\" has no host"));
  out.host = std::string(authority);
  return out;
}

Result<std::unique_ptr<WebhookSender>> WebhookSender::Create(std::string_view url,
                                                             WebhookOptions options) {
  auto parsed = ParseWebhookUrl(url);
  if (!parsed) return std::unexpected(parsed.error());
  return std::unique_ptr<WebhookSender>(new WebhookSender(std::move(*parsed), options));
}

WebhookSender::WebhookSender(WebhookUrl url, WebhookOptions options)
    : url_(std::move(url)), options_(options) {
  thread_ = std::thread([this] { Run(); });
}

WebhookSender::~WebhookSender() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void WebhookSender::Post(std::string json) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= options_.max_queued) {
      ++failed_;
      log::Warn("webhook: ", queue_.size(), " calls queued already; dropping one");
      return;
    }
    queue_.push_back(std::move(json));
  }
  wake_.notify_one();
}

std::int64_t WebhookSender::delivered() const {
  std::lock_guard lock(mu_);
  return delivered_;
}

std::int64_t WebhookSender::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

void WebhookSender::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    std::string json = std::move(queue_.front());
    queue_.pop_front();
    const bool last_chance = stop_;
    lock.unlock();
    bool ok = false;
    auto backoff = options_.backoff;
    const int attempts = last_chance ? 1 : options_.attempts;
    for (int attempt = 1; attempt <= attempts && !ok; ++attempt) {
      ok = Send(json);
      if (ok || attempt == attempts) break;
      std::unique_lock wait_lock(mu_);
      if (wake_.wait_for(wait_lock, backoff, [this] { return stop_; })) break;
      backoff *= 2;
    }
    lock.lock();
    if (ok) {
      ++delivered_;
    } else {
      ++failed_;
      log::Warn("webhook: giving up on a call to http://", url_.host, ":", url_.port, url_.target);
    }
  }
}

bool WebhookSender::Send(const std::string& json) {
  const std::string where = StrCat("http://", url_.host, ":", url_.port, url_.target);
  auto failed = [&](std::string_view step, const beast::error_code& ec) {
    log::Warn("webhook: ", where, ": ", step, ": ", ec.message());
    return false;
  };
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::error_code ec;
  auto endpoints = resolver.resolve(url_.host, url_.port, ec);
  if (ec) return failed("resolve", ec);
  stream.expires_after(options_.timeout);
  stream.connect(endpoints, ec);
  if (ec) return failed("connect", ec);
  beast::http::request<beast::http::string_body> req{beast::http::verb::post, url_.target, 11};
  req.set(beast::http::field::host, url_.host);
  req.set(beast::http::field::content_type, "application/json");
  req.set(beast::http::field::user_agent, "ember");
  req.body() = json;
  req.prepare_payload();
  stream.expires_after(options_.timeout);
  beast::http::write(stream, req, ec);
  if (ec) return failed("write", ec);
  beast::flat_buffer buffer;
  beast::http::response<beast::http::string_body> res;
  stream.expires_after(options_.timeout);
  beast::http::read(stream, buffer, res, ec);
  if (ec) return failed("read", ec);
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  const unsigned status = res.result_int();
  if (status < 200 || status >= 300) {
    log::Warn("webhook: ", where, " answered ", status);
    return false;
  }
  return true;
}

}  // namespace ember::http
