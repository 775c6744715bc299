#include "server/app.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <thread>

#include "api/openai.h"
#include "api/tokenize.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "ledger/report.h"
#include "ledger/store.h"
#include "server/generation.h"

namespace ember::server {

App::App(AppOptions options, ServerMetrics& metrics, tenancy::Tenancy& tenancy,
         TenantMetrics& tenant_metrics)
    : options_(options),
      metrics_(metrics),
      tenancy_(tenancy),
      tenant_metrics_(tenant_metrics),
      console_(options.console, &metrics.history()) {}

bool App::Authorized(http::Exchange& ex, const std::string& endpoint) {
  auto caller = tenancy_.Authenticate(ex.request().Header("authorization"));
  if (caller) return true;
  tenant_metrics_.CountRejected("", tenancy::RejectReasonName(caller.error().reason));
  ReplyRejection(ex, endpoint, caller.error());
  return false;
}

int App::ReplyRejection(http::Exchange& ex, const std::string& endpoint,
                        const tenancy::Rejection& rejection, http::Headers extra) {
  api::HttpError http = rejection.error.code == ErrorCode::kUnauthenticated
                            ? api::ToHttpError(rejection.error, 401, "invalid_api_key")
                            : api::ToHttpError(rejection.error);
  if (http.status == 401) extra.emplace_back("WWW-Authenticate", "Bearer");
  if (rejection.retry_after) {
    // Whole seconds, rounded up (HTTP's Retry-After has no fractions): a client that waits
    // this long finds the bucket refilled enough. The exact figure is in x-ratelimit-reset-*.
    const auto ns = rejection.retry_after->count();
    extra.emplace_back("Retry-After",
                       StrCat(std::max<std::int64_t>(1, (ns + 999'999'999) / 1'000'000'000)));
  }
  const int status = http.status;
  Reply(ex, endpoint, status, std::move(http.body), std::move(extra));
  return status;
}

namespace {

// "fp_" and 16 hex digits of FNV-1a over the engine's numerics id and the request's mode
// (deterministic requests take other kernels, so their numbers may differ).
std::string SystemFingerprint(const std::string& numerics_id, bool deterministic) {
  std::uint64_t h = 14695981039346656037ull;
  auto mix = [&h](std::string_view bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(numerics_id);
  mix(deterministic ? "|deterministic" : "|default");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "fp_";
  for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(h >> shift) & 0xf];
  return out;
}

}  // namespace

const std::array<std::string, 2>& App::Fingerprints(const std::string& numerics_id) {
  std::lock_guard lock(fingerprints_mu_);
  auto [it, fresh] = fingerprints_.try_emplace(numerics_id);
  if (fresh) {
    it->second = {SystemFingerprint(numerics_id, false), SystemFingerprint(numerics_id, true)};
  }
  return it->second;  // std::map: references stay valid
}

void App::Reply(http::Exchange& ex, const std::string& endpoint, int status, std::string body,
                http::Headers extra) {
  metrics_.CountHttp(endpoint, status);
  ex.Respond(status, "application/json", std::move(body), std::move(extra));
}

void App::ReplyError(http::Exchange& ex, const std::string& endpoint, const Error& error) {
  api::HttpError http = api::ToHttpError(error);
  http::Headers extra;
  if (http.status == 429 || http.status == 503) extra.emplace_back("Retry-After", "1");
  Reply(ex, endpoint, http.status, std::move(http.body), std::move(extra));
}

void App::Handle(std::shared_ptr<http::Exchange> ex) {
  const http::Request& req = ex->request();
  const std::string& path = req.path;
  const bool get = req.method == "GET";
  const bool post = req.method == "POST";
  // Every response carries x-request-id: the client's own when it is sane, else a new one (a
  // generation's is its response id, set by Generation).
  std::string request_id = req.Header("x-request-id");
  if (!ValidRequestId(request_id)) request_id.clear();
  const bool generation = post && (path == "/v1/completions" || path == "/v1/chat/completions" ||
                                   path == "/v1/embeddings" || path == "/v1/responses");
  if (!generation) {
    ex->AddResponseHeader("x-request-id",
                          request_id.empty() ? NewRequestId("req") : std::move(request_id));
  }
  if (path == "/health" && get) return HandleHealth(*ex);
  if (path == "/ready" && get) return HandleReady(*ex);
  if (path == "/metrics" && get) {
    metrics_.CountHttp("/metrics", 200);
    return ex->Respond(200, "text/plain; version=0.0.4; charset=utf-8",
                       metrics_.registry().Render());
  }
  if (path == "/v1/models" && get) return HandleModels(*ex);
  if (path == "/v1/completions" && post) {
    return HandleGenerate(std::move(ex), api::Endpoint::kCompletions, std::move(request_id));
  }
  if (path == "/v1/chat/completions" && post) {
    return HandleGenerate(std::move(ex), api::Endpoint::kChatCompletions, std::move(request_id));
  }
  if (path == "/v1/embeddings" && post) {
    return HandleGenerate(std::move(ex), api::Endpoint::kEmbeddings, std::move(request_id));
  }
  if (path == "/v1/responses" && post) {
    return HandleGenerate(std::move(ex), api::Endpoint::kResponses, std::move(request_id));
  }
  if (path == "/tokenize" && post) return HandleTokenize(std::move(ex));
  if (path.starts_with("/admin/models/") && post) return HandleAdmin(std::move(ex));
  if (path == "/admin/plugins/reload" && post) return HandlePluginsReload(std::move(ex));
  if (path == "/v1/usage" && get) return HandleUsage(std::move(ex));
  if ((path == "/admin/requests" || path.starts_with("/admin/requests/")) && get) {
    return HandleRequests(*ex);
  }
  if (path == "/admin/events" && get) return HandleEvents(std::move(ex));
  if (path == "/admin/history" && get) return HandleHistory(*ex);
  if ((path == "/console" || path.starts_with("/console/")) && get) {
    return HandleConsolePage(*ex);
  }
  const bool known =
      path == "/health" || path == "/ready" || path == "/metrics" || path == "/v1/models" ||
      path == "/v1/completions" || path == "/v1/chat/completions" || path == "/v1/embeddings" ||
      path == "/v1/responses" || path == "/tokenize" || path == "/v1/usage" ||
      path == "/admin/requests" || path == "/admin/events" || path == "/admin/history";
  if (known) {
    return ReplyError(*ex, path,
                      Error{ErrorCode::kInvalidArgument,
                            StrCat("method ", req.method, " not allowed on ", path), ""});
  }
  ReplyError(*ex, "other", Error{ErrorCode::kNotFound, StrCat("no such endpoint: ", path), ""});
}

void App::HandleHealth(http::Exchange& ex) {
  ModelManager* models = models_.load();
  for (const auto& snap :
       models != nullptr ? models->Snapshots() : std::vector<scheduler::SchedulerSnapshot>{}) {
    if (snap.has_work && snap.since_progress > options_.liveness_timeout) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(snap.since_progress);
      return Reply(ex, "/health", 503,
                   StrCat("{\"status\":\"stalled\",\"ms_since_progress\":", ms.count(), "}"));
    }
  }
  Reply(ex, "/health", 200, "{\"status\":\"ok\"}");
}

void App::HandleReady(http::Exchange& ex) {
  switch (phase()) {
    case Phase::kReady: {
      // Still ready while the ledger cannot write (records wait in memory), but said so.
      const std::string ledger = metering_ != nullptr ? metering_->Health() : std::string();
      if (ledger.empty()) return Reply(ex, "/ready", 200, "{\"status\":\"ready\"}");
      std::string body = "{\"status\":\"ready\",\"ledger\":\"";
      api::AppendJsonEscaped(body, ledger);
      return Reply(ex, "/ready", 200, body + "\"}");
    }
    case Phase::kLoading: {
      std::string step;
      {
        std::lock_guard lock(loading_step_mu_);
        step = loading_step_;
      }
      return Reply(ex, "/ready", 503, StrCat("{\"status\":\"loading\",\"phase\":\"", step, "\"}"));
    }
    case Phase::kDraining:
      return Reply(ex, "/ready", 503, "{\"status\":\"draining\"}");
  }
}

void App::HandleModels(http::Exchange& ex) {
  if (!Authorized(ex, "/v1/models")) return;
  std::vector<api::ModelCard> cards;
  if (ModelManager* models = models_.load()) {
    for (const ModelStatus& m : models->List()) {
      api::ModelCard card{
          m.id, m.info ? m.info->created : 0, "ember", m.ctx_per_seq,
          std::string(
              ModelStateName(m.state == ModelState::kUnloading ? ModelState::kUnloaded : m.state))};
      if (m.info) {
        card.embedding_dimensions = m.info->n_embd;
        card.embedding_only = m.info->embedding_only();
      }
      cards.push_back(std::move(card));
    }
  }
  Reply(ex, "/v1/models", 200, api::EncodeModelList(cards));
}

// POST /tokenize {"content": "...", "add_special": true} -> {"tokens": [...]}, like
// llama-server's, so clients can count tokens exactly as the server does. Uses the model the
// body names ("model"), else the default one (the first --model), loading it when it is not.
void App::HandleTokenize(std::shared_ptr<http::Exchange> ex) {
  if (!Authorized(*ex, "/tokenize")) return;
  ModelManager* models = models_.load();
  if (models == nullptr || phase() == Phase::kLoading)
    return ReplyError(*ex, "/tokenize", Error{ErrorCode::kUnavailable, "model is loading", ""});
  auto params = api::ParseTokenizeRequest(ex->request().body);
  if (!params) return ReplyError(*ex, "/tokenize", params.error());
  const SteadyTime deadline = Clock::Real().Now() + options_.queue_timeout;
  const std::string model = params->model.empty() ? models->default_model() : params->model;
  models->Acquire(
      model, deadline, [this, ex, params = std::move(*params)](Result<ModelLease> lease) mutable {
        auto held = std::make_shared<Result<ModelLease>>(std::move(lease));
        ex->Post([this, ex, held, params] {
          if (!*held) return ReplyError(*ex, "/tokenize", held->error());
          auto tokens =
              (*held)->scheduler().tokenizer().Tokenize(params.content, params.add_special);
          if (!tokens) return ReplyError(*ex, "/tokenize", tokens.error());
          Reply(*ex, "/tokenize", 200, api::EncodeTokens(*tokens));
        });
      });
}

// POST /admin/models/{id}/load | /admin/models/{id}/unload: warm a model ahead of traffic or
// free its memory now. 200 {"id","status"} once done (or already so); 404 unknown model; 413
// a model that can never fit the budget; 409 unload of a model with requests; 503 a failed
// load or a draining server.
Status CheckAdminAccess(const http::Request& request, std::string_view admin_key) {
  if (admin_key.empty()) {
    if (request.from_loopback) return {};
    return PermissionDenied(
        "the admin endpoints answer only clients on this host (loopback) unless ember runs "
        "with --admin-key");
  }
  const std::string expected = StrCat("Bearer ", admin_key);
  const std::string given = request.Header("authorization");
  // Compared in time independent of where they differ.
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(expected[i] ^ (i < given.size() ? given[i] : 0));
  }
  if (diff == 0) return {};
  return Unauthenticated(
      given.empty() ? "the admin endpoints need the header Authorization: Bearer <--admin-key>"
                    : "wrong admin key in the Authorization header");
}

std::optional<std::string> QueryParam(std::string_view target, std::string_view name) {
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    std::string_view raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    std::string value;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      auto hex = [](char c) {
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
      };
      if (raw[i] == '%' && i + 2 < raw.size() && hex(raw[i + 1]) >= 0 && hex(raw[i + 2]) >= 0) {
        value += static_cast<char>(hex(raw[i + 1]) * 16 + hex(raw[i + 2]));
        i += 2;
      } else {
        value += raw[i] == '+' ? ' ' : raw[i];
      }
    }
    return value;
  }
  return std::nullopt;
}

// GET /v1/usage?since=&until=&by=tenant,model,key,day&tenant=&model=&key=: the ledger's report
// (the JSON of `ember cost report --format json`), admin access only. The query runs on its own
// thread: an HTTP thread never waits on the disk.
void App::HandleUsage(std::shared_ptr<http::Exchange> ex) {
  const std::string endpoint = "/v1/usage";
  if (Status allowed = CheckAdminAccess(ex->request(), options_.admin_key); !allowed) {
    return ReplyError(*ex, endpoint, allowed.error());
  }
  if (metering_ == nullptr || !metering_->has_ledger()) {
    return ReplyError(*ex, endpoint,
                      Error{ErrorCode::kNotFound,
                            "this server keeps no usage ledger (start it with --data-dir)", ""});
  }
  const std::string& target = ex->request().target;
  const std::int64_t now = Metering::NowNs();
  ledger::Filter filter;
  for (auto [param, bound] : {std::pair{"since", &filter.since_ns}, {"until", &filter.until_ns}}) {
    if (auto text = QueryParam(target, param)) {
      auto t = ledger::ParseTimeArg(*text, now);
      if (!t) {
        return ReplyError(
            *ex, endpoint,
            Error{ErrorCode::kInvalidArgument, StrCat(param, ": ", t.error().message), param});
      }
      *bound = *t;
    }
  }
  if (auto v = QueryParam(target, "tenant")) filter.tenant = *v;
  if (auto v = QueryParam(target, "model")) filter.model = *v;
  if (auto v = QueryParam(target, "key")) filter.key_id = *v;
  auto by = ledger::ParseGroupBy(QueryParam(target, "by").value_or(""));
  if (!by) {
    return ReplyError(*ex, endpoint, Error{ErrorCode::kInvalidArgument, by.error().message, "by"});
  }
  std::thread([this, ex, endpoint, filter, group = *by, file = metering_->ledger_file()] {
    auto store = ledger::Store::OpenReadOnly(file);
    Result<ledger::Report> report = store ? ledger::BuildReport(**store, filter, group)
                                          : Result<ledger::Report>(std::unexpected(store.error()));
    ex->Post([this, ex, endpoint, report = std::move(report)] {
      if (!report) return ReplyError(*ex, endpoint, report.error());
      Reply(*ex, endpoint, 200, ledger::ReportJson(*report));
    });
  }).detach();
}

void App::HandleAdmin(std::shared_ptr<http::Exchange> ex) {
  constexpr std::string_view kPrefix = "/admin/models/";
  const std::string endpoint = "/admin/models";
  if (Status allowed = CheckAdminAccess(ex->request(), options_.admin_key); !allowed) {
    return ReplyError(*ex, endpoint, allowed.error());
  }
  std::string_view rest = std::string_view(ex->request().path).substr(kPrefix.size());
  bool load = false;
  if (rest.ends_with("/load")) {
    load = true;
    rest.remove_suffix(5);
  } else if (rest.ends_with("/unload")) {
    rest.remove_suffix(7);
  } else {
    return ReplyError(*ex, "other",
                      Error{ErrorCode::kNotFound,
                            StrCat("no such endpoint: ", ex->request().path,
                                   " (POST /admin/models/{id}/load or /unload)"),
                            ""});
  }
  const std::string id(rest);
  ModelManager* models = models_.load();
  if (models == nullptr) {
    return ReplyError(*ex, endpoint, Error{ErrorCode::kUnavailable, "server is starting", ""});
  }
  if (phase() == Phase::kDraining) {
    return ReplyError(*ex, endpoint, Error{ErrorCode::kUnavailable, "server is shutting down", ""});
  }
  auto done = [this, ex, id, endpoint, load](Status status) {
    ex->Post([this, ex, id, endpoint, load, status] {
      if (status) {
        std::string body = "{\"id\":";
        body += "\"";
        api::AppendJsonEscaped(body, id);
        body += StrCat("\",\"status\":\"", load ? "loaded" : "unloaded", "\"}");
        return Reply(*ex, endpoint, 200, std::move(body));
      }
      const Error& e = status.error();
      if (e.code == ErrorCode::kInvalidArgument && e.param == "model") {
        api::HttpError http = api::ToHttpError(e, 413, "model_too_large");
        return Reply(*ex, endpoint, http.status, std::move(http.body));
      }
      if (e.code == ErrorCode::kResourceExhausted) {
        api::HttpError http = api::ToHttpError(e, 409, "model_busy");
        return Reply(*ex, endpoint, http.status, std::move(http.body));
      }
      ReplyError(*ex, endpoint, e);
    });
  };
  if (load) {
    models->Load(id, std::move(done));
  } else {
    models->Unload(id, std::move(done));
  }
}

// POST /admin/plugins/reload: what the plugins file's poll does on a change, now (after a
// ConfigMap update, or a .wasm replaced in place with the same size and time). 200 with the
// number of plugins; 400 with the reason when the file is rejected (the previous plugins stay).
void App::HandlePluginsReload(std::shared_ptr<http::Exchange> ex) {
  const std::string endpoint = "/admin/plugins/reload";
  if (Status allowed = CheckAdminAccess(ex->request(), options_.admin_key); !allowed) {
    return ReplyError(*ex, endpoint, allowed.error());
  }
  if (!plugins_reloader_) {
    return ReplyError(
        *ex, endpoint,
        Error{ErrorCode::kNotFound, "no plugins file: start with --plugins FILE", ""});
  }
  plugins_reloader_([this, ex, endpoint](Result<std::size_t> loaded) {
    ex->Post([this, ex, endpoint, loaded] {
      if (!loaded) {
        return ReplyError(*ex, endpoint,
                          Error{ErrorCode::kInvalidArgument, loaded.error().message, "plugins"});
      }
      Reply(*ex, endpoint, 200, StrCat("{\"status\":\"reloaded\",\"plugins\":", *loaded, "}"));
    });
  });
}

}  // namespace ember::server

namespace ember::server {

void App::HandleGenerate(std::shared_ptr<http::Exchange> ex, api::Endpoint kind,
                         std::string request_id) {
  // Every check, from the serving state to the tenant's limits, is a stage of the
  // Generation, so each refusal also passes its completion point.
  std::make_shared<Generation>(*this, std::move(ex), kind, std::move(request_id))->Start();
}

}  // namespace ember::server
