#include "server/generation.h"

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "server/app.h"

namespace ember::server {

using engine::FinishReason;

Generation::Generation(App& app, std::shared_ptr<http::Exchange> exchange,
                       api::GenerationParams params, std::string endpoint)
    : app_(app),
      exchange_(std::move(exchange)),
      params_(std::move(params)),
      endpoint_(std::move(endpoint)) {
  app_.open_generations_.fetch_add(1);
}

Generation::~Generation() { app_.open_generations_.fetch_sub(1); }

Result<scheduler::GenerateRequest> Generation::BuildRequest() {
  scheduler::Scheduler* s = &lease_->scheduler();
  const engine::ModelInfo& info = s->model();
  scheduler::GenerateRequest req;
  const engine::Tokenizer& tok = s->tokenizer();
  if (params_.endpoint == api::Endpoint::kChatCompletions) {
    auto prompt = tok.ApplyChatTemplate(params_.messages);
    if (!prompt) return std::unexpected(prompt.error());
    auto tokens = tok.Tokenize(*prompt, true);
    if (!tokens) return std::unexpected(tokens.error());
    req.prompt = std::move(*tokens);
  } else if (auto* text = std::get_if<std::string>(&params_.prompt)) {
    auto tokens = tok.Tokenize(*text, true);
    if (!tokens) return std::unexpected(tokens.error());
    req.prompt = std::move(*tokens);
  } else {
    req.prompt = std::get<std::vector<engine::Token>>(params_.prompt);
    for (engine::Token t : req.prompt) {
      if (t < 0 || t >= info.n_vocab) {
        return InvalidArgument(
            StrCat("token id ", t, " is outside the vocabulary [0, ", info.n_vocab, ")"), "prompt");
      }
    }
  }
  const int n_prompt = static_cast<int>(req.prompt.size());
  if (n_prompt == 0) return InvalidArgument("the prompt is empty", "prompt");
  const int n_ctx = info.n_ctx_per_seq;
  if (params_.max_tokens && n_prompt + *params_.max_tokens > n_ctx) {
    return InvalidArgument(
        StrCat("prompt (", n_prompt, " tokens) + max_tokens (", *params_.max_tokens,
               ") exceeds the context of ", n_ctx, " tokens per sequence"),
        "max_tokens");
  }
  if (n_prompt >= n_ctx) {
    return InvalidArgument(StrCat("prompt (", n_prompt, " tokens) does not fit the context of ",
                                  n_ctx, " tokens per sequence"),
                           "prompt");
  }
  req.max_tokens = params_.max_tokens.value_or(n_ctx - n_prompt);
  req.sampling = params_.sampling;
  switch (app_.options_.determinism) {
    case Determinism::kOff:
      if (req.sampling.deterministic) {
        return InvalidArgument(
            "deterministic requests are not enabled on this server (its operator can start it "
            "with --allow-deterministic or --deterministic)",
            "deterministic");
      }
      break;
    case Determinism::kAllow:
      break;
    case Determinism::kAll:
      req.sampling.deterministic = true;
      break;
  }
  req.stop = params_.stop;
  return req;
}

void Generation::Start() {
  ModelManager& models = *app_.models_.load();
  model_id_ = params_.model.empty() ? models.default_model() : params_.model;
  if (!models.Has(model_id_)) {
    std::string served;
    for (const ModelStatus& m : models.List())
      served += StrCat(served.empty() ? "'" : ", '", m.id, "'");
    app_.metrics_.CountRejected("invalid");
    return Fail(Error{ErrorCode::kNotFound,
                      StrCat("model '", model_id_, "' does not exist; this server serves ", served,
                             " (see GET /v1/models)"),
                      "model"});
  }
  if (Status fits = models.CheckFits(model_id_); !fits) {
    app_.metrics_.CountRejected("model_too_large");
    done_ = true;
    api::HttpError http = api::ToHttpError(fits.error(), 413, "model_too_large");
    app_.Reply(*exchange_, endpoint_, http.status, std::move(http.body));
    return;
  }
  model_metrics_ = &app_.metrics_.ForModel(model_id_);
  arrival_ = Clock::Real().Now();
  std::weak_ptr<Generation> weak = weak_from_this();
  // The exchange holds this Generation alive until the response ends or the client leaves.
  exchange_->OnClientGone([weak] {
    auto self = weak.lock();
    if (!self || self->done_) return;
    self->client_gone_ = true;
    self->model_metrics_->CountCancelled();
    if (self->lease_ && self->stream_) self->lease_->scheduler().Cancel(self->stream_);
    // Still waiting for its model: stop waiting, so it does not keep the model loaded (or
    // start a load) for nobody.
    if (!self->lease_ && self->acquire_ticket_ != 0) {
      if (ModelManager* models = self->app_.models_.load()) models->Abandon(self->acquire_ticket_);
    }
  });
  // Holds this Generation until the model is ready for it (or cannot be): the manager always
  // calls back, at the latest at the queue deadline or at shutdown.
  auto self = shared_from_this();
  acquire_ticket_ = models.Acquire(
      model_id_, arrival_ + app_.options_.queue_timeout, [self](Result<ModelLease> lease) {
        auto held = std::make_shared<std::optional<Result<ModelLease>>>(std::move(lease));
        self->exchange_->Post([self, held] { self->OnModel(std::move(**held)); });
      });
}

void Generation::OnModel(Result<ModelLease> lease) {
  if (done_) return;
  if (client_gone_) {
    // It left while its model was being acquired (a cold load, or just the hop to this
    // strand): the connection is closed, so nothing starts and no answer is counted as sent.
    // Already counted as cancelled when it left.
    app_.metrics_.CountRejected("client_gone");
    return;  // the lease, if any, is released here
  }
  if (!lease) {
    const ErrorCode code = lease.error().code;
    app_.metrics_.CountRejected(
        code == ErrorCode::kDeadlineExceeded                                  ? "load_timeout"
        : code == ErrorCode::kUnavailable && app_.phase() == Phase::kDraining ? "draining"
                                                                              : "load_failed");
    return Fail(lease.error());
  }
  lease_ = std::make_unique<ModelLease>(std::move(*lease));
  const bool chat = params_.endpoint == api::Endpoint::kChatCompletions;
  auto built = BuildRequest();
  if (!built) {
    app_.metrics_.CountRejected("invalid");
    return Fail(built.error());
  }
  scheduler::GenerateRequest req = std::move(*built);
  scheduler::Scheduler& scheduler = lease_->scheduler();
  meta_.id = NewRequestId(chat ? "chatcmpl" : "cmpl");
  meta_.created = Clock::Real().UnixSeconds();
  meta_.model = scheduler.model().id;
  meta_.system_fingerprint =
      app_.Fingerprints(scheduler.model().numerics_id)[req.sampling.deterministic ? 1 : 0];
  meta_.cold_start_seconds = lease_->cold_start_seconds();
  req.id = meta_.id;
  req.arrival = arrival_;

  stream_ = std::make_shared<scheduler::RequestStream>();
  std::weak_ptr<Generation> weak = weak_from_this();
  auto ex = exchange_;
  stream_->SetNotify([weak, ex] {
    ex->Post([weak] {
      if (auto self = weak.lock()) self->Pump();
    });
  });
  if (auto ok = scheduler.Submit(std::move(req), stream_); !ok) {
    app_.metrics_.CountRejected(ok.error().code == ErrorCode::kResourceExhausted ? "queue_full"
                                                                                 : "draining");
    return Fail(ok.error());
  }
  model_metrics_->CountStarted();
  keep_alive_ = shared_from_this();
}

http::Headers Generation::ColdStartHeaders() const {
  http::Headers headers;
  if (meta_.cold_start_seconds) {
    headers.emplace_back("x-ember-cold-start", api::FormatSeconds(*meta_.cold_start_seconds));
  }
  return headers;
}

void Generation::Pump() {
  for (scheduler::Event& event : stream_->Take()) {
    if (auto* delta = std::get_if<scheduler::TextDelta>(&event)) {
      OnText(*delta);
    } else {
      OnFinished(std::get<scheduler::Finished>(event));
    }
  }
}

void Generation::EnsureStreamStarted() {
  if (stream_started_) return;
  stream_started_ = true;
  app_.metrics_.CountHttp(endpoint_, 200);
  exchange_->StartStream(200, "text/event-stream", ColdStartHeaders());
  if (params_.endpoint == api::Endpoint::kChatCompletions) {
    exchange_->Write(api::EncodeChatRoleChunk(meta_, params_.include_usage));
  }
}

void Generation::OnText(const scheduler::TextDelta& delta) {
  // A client that has left gets nothing more, and no response is counted for it: text already
  // queued when it left must not start a stream (a 200 no client ever read).
  if (delta.text.empty() || client_gone_) return;
  if (!params_.stream) {
    text_ += delta.text;
    return;
  }
  EnsureStreamStarted();
  exchange_->Write(
      params_.endpoint == api::Endpoint::kChatCompletions
          ? api::EncodeChatChunk(meta_, delta.text, std::nullopt, params_.include_usage)
          : api::EncodeCompletionChunk(meta_, delta.text, std::nullopt, params_.include_usage));
}

void Generation::OnFinished(const scheduler::Finished& f) {
  done_ = true;
  auto self = std::move(keep_alive_);  // released when this call returns
  lease_.reset();                      // the scheduler is done with the request
  if (client_gone_) return;
  std::optional<Error> error = f.error;
  if (!error && f.reason == FinishReason::kCancelled) {
    error = Error{ErrorCode::kUnavailable, "server is shutting down; the request was stopped", ""};
  }
  if (error) {
    if (!stream_started_) return Fail(*error);
    exchange_->Write(api::EncodeErrorEvent(*error));
    exchange_->Write(std::string(api::kSseDone));
    return exchange_->End();
  }
  const bool chat = params_.endpoint == api::Endpoint::kChatCompletions;
  if (!params_.stream) {
    app_.metrics_.CountHttp(endpoint_, 200);
    return exchange_->Respond(200, "application/json",
                              chat ? api::EncodeChatCompletion(meta_, text_, f.reason, f.usage)
                                   : api::EncodeCompletion(meta_, text_, f.reason, f.usage),
                              ColdStartHeaders());
  }
  EnsureStreamStarted();
  exchange_->Write(chat ? api::EncodeChatChunk(meta_, "", f.reason, params_.include_usage)
                        : api::EncodeCompletionChunk(meta_, "", f.reason, params_.include_usage));
  if (params_.include_usage) {
    exchange_->Write(api::EncodeUsageChunk(meta_, params_.endpoint, f.usage));
  }
  exchange_->Write(std::string(api::kSseDone));
  exchange_->End();
}

void Generation::Fail(const Error& error) {
  done_ = true;
  lease_.reset();
  app_.ReplyError(*exchange_, endpoint_, error);
}

}  // namespace ember::server
