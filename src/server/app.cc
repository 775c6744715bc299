#include "server/app.h"

#include <cstdint>
#include <string_view>

#include "api/openai.h"
#include "api/tokenize.h"
#include "common/log.h"
#include "server/generation.h"

namespace ember::server {

App::App(AppOptions options, ServerMetrics& metrics) : options_(options), metrics_(metrics) {}

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

void App::SetScheduler(scheduler::Scheduler* scheduler) {
  // Before the store: a handler that sees the scheduler sees the fingerprints too.
  fingerprints_ = {SystemFingerprint(scheduler->model().numerics_id, false),
                   SystemFingerprint(scheduler->model().numerics_id, true)};
  scheduler_.store(scheduler);
  metrics_.BindScheduler(scheduler);
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
  if (path == "/health" && get) return HandleHealth(*ex);
  if (path == "/ready" && get) return HandleReady(*ex);
  if (path == "/metrics" && get) {
    metrics_.CountHttp("/metrics", 200);
    return ex->Respond(200, "text/plain; version=0.0.4; charset=utf-8",
                       metrics_.registry().Render());
  }
  if (path == "/v1/models" && get) return HandleModels(*ex);
  if (path == "/v1/completions" && post) return HandleGenerate(std::move(ex), false);
  if (path == "/v1/chat/completions" && post) return HandleGenerate(std::move(ex), true);
  if (path == "/tokenize" && post) return HandleTokenize(*ex);
  const bool known = path == "/health" || path == "/ready" || path == "/metrics" ||
                     path == "/v1/models" || path == "/v1/completions" ||
                     path == "/v1/chat/completions" || path == "/tokenize";
  if (known) {
    return ReplyError(*ex, path,
                      Error{ErrorCode::kInvalidArgument,
                            StrCat("method ", req.method, " not allowed on ", path), ""});
  }
  ReplyError(*ex, "other", Error{ErrorCode::kNotFound, StrCat("no such endpoint: ", path), ""});
}

void App::HandleHealth(http::Exchange& ex) {
  scheduler::Scheduler* s = scheduler_.load();
  if (s != nullptr) {
    const auto snap = s->Snapshot();
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
    case Phase::kReady:
      return Reply(ex, "/ready", 200, "{\"status\":\"ready\"}");
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
  std::vector<api::ModelCard> cards;
  if (scheduler::Scheduler* s = scheduler_.load()) {
    const auto& info = s->model();
    cards.push_back({info.id, info.created, "ember", info.n_ctx_per_seq});
  }
  Reply(ex, "/v1/models", 200, api::EncodeModelList(cards));
}

// POST /tokenize {"content": "...", "add_special": true} -> {"tokens": [...]}, like
// llama-server's, so clients can count tokens exactly as the server does.
void App::HandleTokenize(http::Exchange& ex) {
  scheduler::Scheduler* s = scheduler_.load();
  if (s == nullptr)
    return ReplyError(ex, "/tokenize", Error{ErrorCode::kUnavailable, "model is loading", ""});
  auto params = api::ParseTokenizeRequest(ex.request().body);
  if (!params) return ReplyError(ex, "/tokenize", params.error());
  auto tokens = s->tokenizer().Tokenize(params->content, params->add_special);
  if (!tokens) return ReplyError(ex, "/tokenize", tokens.error());
  Reply(ex, "/tokenize", 200, api::EncodeTokens(*tokens));
}

}  // namespace ember::server

namespace ember::server {

void App::HandleGenerate(std::shared_ptr<http::Exchange> ex, bool chat) {
  const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
  if (phase() == Phase::kLoading || scheduler_.load() == nullptr) {
    metrics_.CountRejected("loading");
    return ReplyError(
        *ex, endpoint,
        Error{ErrorCode::kUnavailable, "the model is still loading; retry shortly", ""});
  }
  if (phase() == Phase::kDraining) {
    metrics_.CountRejected("draining");
    return ReplyError(
        *ex, endpoint,
        Error{ErrorCode::kUnavailable, "server is shutting down; retry on another replica", ""});
  }
  auto params = chat ? api::ParseChatRequest(ex->request().body)
                     : api::ParseCompletionRequest(ex->request().body);
  if (!params) {
    metrics_.CountRejected("invalid");
    return ReplyError(*ex, endpoint, params.error());
  }
  auto generation =
      std::make_shared<Generation>(*this, std::move(ex), std::move(*params), endpoint);
  generation->Start();
}

}  // namespace ember::server
