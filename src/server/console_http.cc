// The console's admin endpoints: GET /admin/requests[/{id}] (the ring of recent requests) and
// GET /admin/events (the live feed, server-sent events). Same access rule as every admin
// endpoint (CheckAdminAccess).
#include <charconv>

#include "common/log.h"
#include "server/app.h"

namespace ember::server {

// The page holds no data, so with an admin key it is served to anyone who can reach the server
// (it asks for the key and sends it with every data request: a browser cannot attach a bearer
// token to a page load); without one, only to loopback clients, like the data.
void App::HandleConsolePage(http::Exchange& ex) {
  const std::string endpoint = "/console";
  if (options_.admin_key.empty()) {
    if (Status allowed = CheckAdminAccess(ex.request(), ""); !allowed) {
      return ReplyError(ex, endpoint, allowed.error());
    }
  }
  const ConsoleAsset* asset =
      console_assets_ != nullptr ? console_assets_->Find(ex.request().path) : nullptr;
  if (asset == nullptr) {
    return ReplyError(
        ex, endpoint,
        Error{ErrorCode::kNotFound,
              console_assets_ == nullptr
                  ? "this server has no console page: build it with scripts/console.sh and start "
                    "ember with --console-dir <the folder it prints>"
                  : StrCat("no such console file: ", ex.request().path),
              ""});
  }
  metrics_.CountHttp(endpoint, 200);
  ex.Respond(
      200, asset->content_type, asset->body,
      {{"Content-Security-Policy", std::string(ConsoleAssets::kSecurityPolicy)},
       {"X-Content-Type-Options", "nosniff"},
       {"Referrer-Policy", "no-referrer"},
       {"Cache-Control", asset->immutable ? "public, max-age=31536000, immutable" : "no-cache"}});
}

void App::StartConsole() {
  console_.Start([this]() -> const ModelManager* { return models_.load(); });
}

// GET /admin/requests?tenant=&model=&status=&limit= (newest first; status: an outcome, "ok" or
// "failed"; limit 1..1000, default 50) and GET /admin/requests/{id} (x-request-id or response
// id): 404 once the ring has forgotten it.
void App::HandleRequests(http::Exchange& ex) {
  const std::string endpoint = "/admin/requests";
  if (Status allowed = CheckAdminAccess(ex.request(), options_.admin_key); !allowed) {
    return ReplyError(ex, endpoint, allowed.error());
  }
  constexpr std::string_view kPrefix = "/admin/requests/";
  const std::string& path = ex.request().path;
  if (path.size() > kPrefix.size()) {
    const std::string id = path.substr(kPrefix.size());
    auto record = console_.log().Find(id);
    if (!record) {
      if (std::string live = console_.LiveRecordJson(id); !live.empty()) {
        return Reply(ex, endpoint, 200, std::move(live));
      }
      return ReplyError(ex, endpoint,
                        Error{ErrorCode::kNotFound,
                              StrCat("no request '", ValidRequestId(id) ? id : "(invalid id)",
                                     "' among the ", console_.log().size(),
                                     " most recent (the ring keeps --console-ring requests)"),
                              ""});
    }
    return Reply(ex, endpoint, 200, RequestRecordJson(*record));
  }
  RequestFilter filter;
  const std::string& target = ex.request().target;
  if (auto v = QueryParam(target, "tenant")) filter.tenant = *v;
  if (auto v = QueryParam(target, "model")) filter.model = *v;
  if (auto v = QueryParam(target, "status")) filter.status = *v;
  if (auto v = QueryParam(target, "limit")) {
    std::size_t limit = 0;
    const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), limit);
    if (ec != std::errc() || end != v->data() + v->size() || limit < 1 || limit > 1000) {
      return ReplyError(ex, endpoint,
                        Error{ErrorCode::kInvalidArgument,
                              "limit must be a whole number from 1 to 1000", "limit"});
    }
    filter.limit = limit;
  }
  Reply(ex, endpoint, 200, RequestListJson(console_.log().Search(filter)));
}

void App::HandleHistory(http::Exchange& ex) {
  const std::string endpoint = "/admin/history";
  if (Status allowed = CheckAdminAccess(ex.request(), options_.admin_key); !allowed) {
    return ReplyError(ex, endpoint, allowed.error());
  }
  Reply(ex, endpoint, 200, metrics_.history().Json());
}

// GET /admin/events: a "snapshot" event now and every --console-interval, "model" events when a
// model's state changes, "request" events as requests complete, "cold_start" events. A client
// whose unsent events exceed its buffer gets a last "dropped" event and the stream ends.
void App::HandleEvents(std::shared_ptr<http::Exchange> ex) {
  const std::string endpoint = "/admin/events";
  if (Status allowed = CheckAdminAccess(ex->request(), options_.admin_key); !allowed) {
    return ReplyError(*ex, endpoint, allowed.error());
  }
  metrics_.CountHttp(endpoint, 200);
  ex->StartStream(200, "text/event-stream", {{"X-Accel-Buffering", "no"}});
  ex->Write(EventFeed::Frame("snapshot", console_.Snapshot(models_.load())));
  // Shared by the feed's notification and the exchange's strand; used on the strand only.
  struct Client {
    std::shared_ptr<FeedSubscriber> subscriber;
    bool ended = false;
  };
  auto client = std::make_shared<Client>();
  std::weak_ptr<http::Exchange> weak = ex;
  Console& console = console_;
  const std::size_t limit = console_.options().client_buffer_bytes;
  // The feed holds the subscriber, whose notification holds this pump: it holds the client
  // weakly, so nothing keeps the client alive in a cycle. The exchange's OnClientGone callback
  // owns it; once the exchange is gone, the subscriber overflows and the feed forgets it.
  auto pump = [weak_client = std::weak_ptr<Client>(client), weak, &console, limit] {
    auto client = weak_client.lock();
    auto ex = weak.lock();
    if (!client || !ex || client->ended) return;
    // The socket's own backlog counts too: a client that stopped reading is dropped even when
    // the strand keeps up with the feed.
    if (ex->queued_bytes() > limit) client->subscriber->Drop("this client stopped reading");
    FeedSubscriber::Taken taken = client->subscriber->Take();
    if (!taken.frames.empty()) ex->Write(std::move(taken.frames));
    if (!taken.dropped) return;
    client->ended = true;
    console.feed().Unsubscribe(client->subscriber);
    log::Warn("dropped an /admin/events client that fell behind (over ", limit,
              " bytes of events unsent)");
    ex->End();
  };
  client->subscriber = console_.feed().Subscribe([weak, pump] {
    if (auto ex = weak.lock()) ex->Post(pump);
  });
  ex->OnClientGone([client, &console] {
    client->ended = true;
    console.feed().Unsubscribe(client->subscriber);
  });
}

}  // namespace ember::server
