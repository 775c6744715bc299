#include "server/generation.h"

#include <algorithm>
#include <iterator>

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "server/app.h"
#include "server/chat_templates.h"

namespace ember::server {

using engine::FinishReason;

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kFinished:
      return "finished";
    case Outcome::kClientGone:
      return "client_gone";
    case Outcome::kLoading:
      return "loading";
    case Outcome::kDraining:
      return "draining";
    case Outcome::kUnauthorized:
      return "unauthorized";
    case Outcome::kInvalid:
      return "invalid";
    case Outcome::kModelTooLarge:
      return "model_too_large";
    case Outcome::kRateLimited:
      return "rate_limited";
    case Outcome::kOverBudget:
      return "over_budget";
    case Outcome::kCannotMeter:
      return "cannot_meter";
    case Outcome::kLoadFailed:
      return "load_failed";
    case Outcome::kLoadTimeout:
      return "load_timeout";
    case Outcome::kQueueFull:
      return "queue_full";
    case Outcome::kQueueTimeout:
      return "queue_timeout";
    case Outcome::kAborted:
      return "aborted";
    case Outcome::kError:
      return "error";
    case Outcome::kPluginRejected:
      return "plugin_rejected";
    case Outcome::kPluginFailed:
      return "plugin_failed";
    case Outcome::kPluginStopped:
      return "plugin_stopped";
  }
  return "error";
}

namespace {
std::string_view EndpointPath(api::Endpoint kind) {
  switch (kind) {
    case api::Endpoint::kCompletions:
      return "/v1/completions";
    case api::Endpoint::kChatCompletions:
      return "/v1/chat/completions";
    case api::Endpoint::kResponses:
      return "/v1/responses";
    case api::Endpoint::kEmbeddings:
      return "/v1/embeddings";
  }
  return "/v1/completions";
}
// What --console-keep-text keeps of an output (choice 0's).
constexpr std::size_t kKeptTextBytes = 64 << 10;

std::string_view IdPrefix(api::Endpoint kind) {
  switch (kind) {
    case api::Endpoint::kCompletions:
      return "cmpl";
    case api::Endpoint::kChatCompletions:
      return "chatcmpl";
    case api::Endpoint::kResponses:
      return "resp";
    case api::Endpoint::kEmbeddings:
      return "embd";
  }
  return "cmpl";
}
}  // namespace

Generation::Generation(App& app, std::shared_ptr<http::Exchange> exchange, api::Endpoint kind,
                       std::string request_id)
    : app_(app),
      exchange_(std::move(exchange)),
      kind_(kind),
      chat_(kind == api::Endpoint::kChatCompletions),
      endpoint_(EndpointPath(kind)),
      request_id_(std::move(request_id)) {
  app_.open_generations_.fetch_add(1);
  app_.metrics_.CountGeneration();
}

Generation::~Generation() {
  if (!done_) {
    // Every path ends in Complete; reaching here means one did not. Settle anyway so the
    // tenant's limits are not leaked, and say so loudly.
    log::Error("generation ended without its completion point; settling it as an error");
    Complete(Outcome::kError, nullptr);
  }
  app_.open_generations_.fetch_sub(1);
}

// --- Stages before the model --------------------------------------------------------------

void Generation::Start() {
  arrival_ = Clock::Real().Now();
  arrival_unix_ns_ = Metering::NowNs();
  // The response id; also the x-request-id unless the client sent its own.
  meta_.id = NewRequestId(IdPrefix(kind_));
  if (request_id_.empty()) request_id_ = meta_.id;
  exchange_->AddResponseHeader("x-request-id", request_id_);
  // The serving state.
  if (app_.phase() == Phase::kLoading || app_.models_.load() == nullptr) {
    app_.metrics_.CountRejected("loading");
    return Refuse(Outcome::kLoading,
                  Error{ErrorCode::kUnavailable, "the model is still loading; retry shortly", ""});
  }
  if (app_.phase() == Phase::kDraining) {
    app_.metrics_.CountRejected("draining");
    return Refuse(
        Outcome::kDraining,
        Error{ErrorCode::kUnavailable, "server is shutting down; retry on another replica", ""});
  }
  // Authenticate: before the body is looked at, so an unauthenticated caller learns nothing.
  auto caller = app_.tenancy_.Authenticate(exchange_->request().Header("authorization"));
  if (!caller) return Refuse(caller.error());
  caller_ = std::move(*caller);
  // Parse.
  if (!Parse(exchange_->request().body)) return;
  // The request hooks (docs/plugins.md) run on the plugin workers, never on this I/O thread;
  // the request goes on where StartPlugins posts it back (generation_plugins.cc).
  if (StartPlugins()) return;
  AfterParse();
}

bool Generation::Parse(const std::string& body) {
  if (kind_ == api::Endpoint::kEmbeddings) {
    auto params = api::ParseEmbeddingRequest(body);
    if (!params) {
      app_.metrics_.CountRejected("invalid");
      Refuse(Outcome::kInvalid, params.error());
      return false;
    }
    embed_params_ = std::move(*params);
    params_.model = embed_params_.model;
  } else {
    auto params = kind_ == api::Endpoint::kResponses ? api::ParseResponsesRequest(body)
                  : chat_                            ? api::ParseChatRequest(body)
                                                     : api::ParseCompletionRequest(body);
    if (!params) {
      app_.metrics_.CountRejected("invalid");
      Refuse(Outcome::kInvalid, params.error());
      return false;
    }
    params_ = std::move(*params);
  }
  return true;
}

void Generation::AfterParse() {
  ModelManager& models = *app_.models_.load();
  model_id_ = params_.model.empty() ? models.default_model() : params_.model;
  if (!models.Has(model_id_)) {
    std::string served;
    for (const ModelStatus& m : models.List())
      served += StrCat(served.empty() ? "'" : ", '", m.id, "'");
    app_.metrics_.CountRejected("invalid");
    return Refuse(Outcome::kInvalid,
                  Error{ErrorCode::kNotFound,
                        StrCat("model '", model_id_, "' does not exist; this server serves ",
                               served, " (see GET /v1/models)"),
                        "model"});
  }
  if (Status fits = models.CheckFits(model_id_); !fits) {
    app_.metrics_.CountRejected("model_too_large");
    return Refuse(Outcome::kModelTooLarge, fits.error());
  }
  model_metrics_ = &app_.metrics_.ForModel(model_id_);
  // Admit: the tenant's requests/min, concurrency and queue limits. From here on the request
  // holds a place in them until Complete.
  auto grant = app_.tenancy_.Admit(caller_, model_id_);
  if (!grant) return Refuse(grant.error());
  grant_ = std::move(*grant);
  live_ = app_.console_.Begin({.id = request_id_,
                               .tenant = caller_.tenant,
                               .model = model_id_,
                               .endpoint = endpoint_,
                               .priority = static_cast<int>(caller_.priority),
                               .arrival = arrival_});
  live_->state.store(LiveState::kWaitingModel, std::memory_order_relaxed);

  std::weak_ptr<Generation> weak = weak_from_this();
  // The exchange holds this Generation alive until the response ends or the client leaves.
  exchange_->OnClientGone([weak] {
    auto self = weak.lock();
    if (!self || self->done_) return;
    self->client_gone_ = true;
    self->model_metrics_->CountCancelled();
    self->failed_ = true;  // no more embedding inputs are submitted
    if (!self->total_.error) self->total_.reason = FinishReason::kCancelled;
    self->CancelAll();
    // Still waiting for its model: stop waiting, so it does not keep the model loaded (or
    // start a load) for nobody. The manager then calls back, and OnModel completes it.
    if (!self->lease_ && self->acquire_ticket_ != 0) {
      if (ModelManager* models = self->app_.models_.load()) models->Abandon(self->acquire_ticket_);
    }
  });
  // Acquire the model. Holds this Generation until the model is ready for it (or cannot be):
  // the manager always calls back, at the latest at the queue deadline or at shutdown.
  auto self = shared_from_this();
  acquire_ticket_ = models.Acquire(
      model_id_, arrival_ + app_.options_.queue_timeout, [self](Result<ModelLease> lease) {
        auto held = std::make_shared<std::optional<Result<ModelLease>>>(std::move(lease));
        self->exchange_->Post([self, held] { self->OnModel(std::move(**held)); });
      });
}

// --- Stages with the model ----------------------------------------------------------------

void Generation::OnModel(Result<ModelLease> lease) {
  if (done_) return;
  if (client_gone_) {
    // It left while its model was being acquired (a cold load, or just the hop to this
    // strand): the connection is closed, so nothing starts and no answer is sent.
    app_.metrics_.CountRejected("client_gone");
    return Complete(Outcome::kClientGone, nullptr);  // the lease, if any, is released here
  }
  if (!lease) {
    const ErrorCode code = lease.error().code;
    const Outcome outcome = code == ErrorCode::kDeadlineExceeded ? Outcome::kLoadTimeout
                            : code == ErrorCode::kUnavailable && app_.phase() == Phase::kDraining
                                ? Outcome::kDraining
                                : Outcome::kLoadFailed;
    app_.metrics_.CountRejected(std::string(OutcomeName(outcome)));
    return Refuse(outcome, lease.error());
  }
  lease_ = std::make_unique<ModelLease>(std::move(*lease));
  cold_start_s_ = lease_->cold_start_seconds();
  model_ready_ns_ = SinceArrivalNs();
  if (cold_start_s_ && app_.console_.feed().subscribers() > 0) {
    std::string event = "{\"id\":";
    api::AppendJsonEscaped(event.append("\""), request_id_);
    event += "\",\"model\":\"";
    api::AppendJsonEscaped(event, model_id_);
    event += StrCat("\",\"waited_ms\":", static_cast<std::int64_t>(*cold_start_s_ * 1e3), "}");
    app_.console_.feed().Publish("cold_start", event);
  }
  Result<std::vector<scheduler::GenerateRequest>> built;
  if (kind_ == api::Endpoint::kEmbeddings) {
    built = BuildEmbeddingRequests();
  } else if (auto one = BuildRequest(); one) {
    built.emplace().push_back(std::move(*one));
  } else {
    built = std::unexpected(one.error());
  }
  if (!built) {
    app_.metrics_.CountRejected("invalid");
    return Refuse(Outcome::kInvalid, built.error());
  }
  // Reserve: the prompts' tokens exactly, the output at its max_tokens (refunded at the end;
  // an embedding has none).
  prompt_tokens_ = 0;
  std::int64_t max_output = 0;
  for (const scheduler::GenerateRequest& r : *built) {
    prompt_tokens_ += static_cast<std::int64_t>(r.prompt.size());
    if (!r.embed) max_output += static_cast<std::int64_t>(r.max_tokens) * r.n;
  }
  if (auto refused = grant_->Reserve(prompt_tokens_, max_output)) {
    return Refuse(*refused);
  }
  // The budget: the worst case at list price, settled to the actual cost in Complete.
  if (Metering* metering = app_.metering_) {
    auto reserved = metering->Reserve(caller_.tenant, model_id_, prompt_tokens_, max_output);
    if (!reserved) return Refuse(reserved.error());
    reservation_ = std::move(*reserved);
  }
  Submit(std::move(*built));
}

namespace {

// The JSON Schema a json_object or json_schema response_format asks for.
std::string SchemaText(const api::ResponseFormat& format) {
  return format.type == api::ResponseFormat::Type::kJsonSchema ? format.schema
                                                               : R"({"type":"object"})";
}

// response_format as a grammar on its own (no chat template): null for text. Carries the schema
// too, for an engine that enforces JSON Schemas itself.
Result<std::shared_ptr<const engine::Grammar>> SchemaGrammar(const api::ResponseFormat& format) {
  if (format.type == api::ResponseFormat::Type::kText) return nullptr;
  auto gbnf = chat::JsonSchemaToGrammar(SchemaText(format));
  if (!gbnf) {
    Error e = gbnf.error();
    if (e.param.empty()) e.param = "response_format";
    return std::unexpected(std::move(e));
  }
  auto g = std::make_shared<engine::Grammar>();
  g->gbnf = std::move(*gbnf);
  g->json_schema = SchemaText(format);
  return std::shared_ptr<const engine::Grammar>(std::move(g));
}

}  // namespace

Result<Generation::ChatPrompt> Generation::RenderChat(const engine::ModelInfo& info,
                                                      const engine::Tokenizer& tok) {
  ChatPrompt out;
  const bool tools = !params_.tools.empty();
  bool tool_history = false;
  for (const engine::ChatMessage& m : params_.messages) {
    tool_history = tool_history || m.role == "tool" || !m.tool_calls.empty();
  }
  const bool deterministic =
      params_.sampling.deterministic || app_.options_.determinism == Determinism::kAll;
  std::shared_ptr<const chat::ChatTemplate> tmpl =
      app_.chat_templates_ != nullptr ? app_.chat_templates_->For(info) : nullptr;
  if (tmpl == nullptr) {
    // libllama's built-in templates (or ember's fallback) know no tools.
    if (tools || tool_history) {
      return InvalidArgument(
          StrCat("model '", info.id, "' has no chat template ember can render tools with (its ",
                 "template: ", info.chat_template, "); its operator can give one with ",
                 "--chat-template-file"),
          tools ? "tools" : "messages");
    }
    auto prompt = tok.ApplyChatTemplate(params_.messages);
    if (!prompt) return std::unexpected(prompt.error());
    auto tokens = tok.Tokenize(*prompt, true);
    if (!tokens) return std::unexpected(tokens.error());
    out.prompt = std::move(*tokens);
    // Structured output needs no template: the constraint is the schema's grammar.
    auto grammar = SchemaGrammar(params_.response_format);
    if (!grammar) return std::unexpected(grammar.error());
    out.grammar = std::move(*grammar);
    return out;
  }
  auto rendered = tmpl->Render(ToRenderRequest(params_, deterministic));
  if (!rendered) return std::unexpected(rendered.error());
  // A template prints the BOS token itself: then the tokenizer must not add another.
  const bool has_bos = !info.bos_text.empty() && rendered->prompt.starts_with(info.bos_text);
  auto tokens = tok.Tokenize(rendered->prompt, /*add_special=*/!has_bos);
  if (!tokens) return std::unexpected(tokens.error());
  out.prompt = std::move(*tokens);
  out.grammar = ToGrammar(*rendered);
  if (rendered->schema_only) {
    // The value alone, as a schema (an engine with llguidance enforces it as such): a strict
    // subset of what the template's grammar allows, with no fence or blank lines around it.
    auto schema = SchemaGrammar(params_.response_format);
    if (!schema) return std::unexpected(schema.error());
    out.grammar = std::move(*schema);
  }
  out.stops = std::move(rendered->additional_stops);
  // With tools, or a template whose answer may open with a reasoning block, the output is read
  // as reasoning, content and calls; other output is all content, sent as it comes.
  if ((tools && params_.tool_choice.mode != api::ToolChoice::Mode::kNone) || rendered->reasoning) {
    output_parser_ = rendered->parser;
  }
  return out;
}

Result<scheduler::GenerateRequest> Generation::BuildRequest() {
  scheduler::Scheduler* s = &lease_->scheduler();
  const engine::ModelInfo& info = s->model();
  scheduler::GenerateRequest req;
  const engine::Tokenizer& tok = s->tokenizer();
  if (info.embedding_only()) {
    return InvalidArgument(
        StrCat("model '", info.id, "' is an embedding model: it answers POST /v1/embeddings only"),
        "model");
  }
  std::shared_ptr<const engine::Grammar> grammar;
  std::vector<std::string> template_stops;
  if (params_.endpoint == api::Endpoint::kChatCompletions ||
      params_.endpoint == api::Endpoint::kResponses) {
    auto rendered = RenderChat(info, tok);
    if (!rendered) return std::unexpected(rendered.error());
    req.prompt = std::move(rendered->prompt);
    grammar = std::move(rendered->grammar);
    template_stops = std::move(rendered->stops);
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
  if (params_.endpoint == api::Endpoint::kCompletions) {
    // ember's extension: response_format on /v1/completions constrains the continuation.
    auto schema = SchemaGrammar(params_.response_format);
    if (!schema) return std::unexpected(schema.error());
    grammar = std::move(*schema);
  }
  const int n_prompt = static_cast<int>(req.prompt.size());
  if (n_prompt == 0) return InvalidArgument("the prompt is empty", "prompt");
  // Each choice holds a slot (and its own copy of the prompt's cells) for the whole request.
  if (params_.n > info.n_parallel) {
    return InvalidArgument(StrCat("n (", params_.n, ") exceeds the ", info.n_parallel,
                                  " parallel sequence slots of model '", info.id, "'"),
                           "n");
  }
  req.n = params_.n;
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
  // The tenant's max_tokens cap: a request asking for more is refused (not silently cut);
  // one that names no max_tokens gets the cap.
  if (const std::optional<std::int64_t> cap = grant_->max_tokens_cap()) {
    if (params_.max_tokens && *params_.max_tokens > *cap) {
      return InvalidArgument(StrCat("max_tokens (", *params_.max_tokens,
                                    ") exceeds this API key's limit of ", *cap, " tokens"),
                             "max_tokens");
    }
    req.max_tokens = static_cast<int>(std::min<std::int64_t>(req.max_tokens, *cap));
  }
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
  if (grammar) req.sampling.grammar = std::move(grammar);
  req.stop = params_.stop;
  for (std::string& stop : template_stops) {
    if (std::find(req.stop.begin(), req.stop.end(), stop) == req.stop.end()) {
      req.stop.push_back(std::move(stop));
    }
  }
  req.tenant.id = caller_.tenant;
  req.tenant.weight = caller_.weight;
  req.tenant.priority = static_cast<int>(caller_.priority);
  return req;
}

void Generation::Submit(std::vector<scheduler::GenerateRequest> reqs) {
  scheduler::Scheduler& scheduler = lease_->scheduler();
  meta_.created = Clock::Real().UnixSeconds();
  meta_.model = scheduler.model().id;
  meta_.system_fingerprint =
      app_.Fingerprints(scheduler.model().numerics_id)[reqs[0].sampling.deterministic ? 1 : 0];
  meta_.cold_start_seconds = lease_->cold_start_seconds();
  if (kind_ == api::Endpoint::kResponses) {
    responses_ = std::make_unique<api::ResponsesEncoder>(params_, meta_);
  }
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].id = reqs.size() == 1 ? request_id_ : StrCat(request_id_, "-", i);
    reqs[i].arrival = arrival_;
  }
  // The live view's "prefill n of m" (a request's first input, for embeddings).
  if (live_) reqs[0].prefill_progress = std::shared_ptr<std::atomic<int>>(live_, &live_->prefilled);
  embeddings_.resize(kind_ == api::Endpoint::kEmbeddings ? reqs.size() : 0);
  // A read output (tools, reasoning) is read apart per choice, call ids unique across them.
  auto call_ids = std::make_shared<CallIds>();
  if (output_parser_ && params_.n == 1) {
    chat_output_ = std::make_unique<ChatOutput>(*output_parser_, call_ids);
  }
  if (kind_ != api::Endpoint::kEmbeddings && params_.n > 1) {
    choices_.resize(params_.n);
    for (std::size_t i = 0; i < choices_.size(); ++i) {
      choices_[i].meta = meta_;
      choices_[i].meta.choice = i;
      if (output_parser_) {
        choices_[i].chat_output = std::make_unique<ChatOutput>(*output_parser_, call_ids);
      }
    }
    choices_open_ = params_.n;
  }
  unsubmitted_ = std::move(reqs);
  // Before submitting: the engine thread may admit it before SubmitMore returns.
  queued_ns_ = SinceArrivalNs();
  live_->prompt_tokens.store(prompt_tokens_, std::memory_order_relaxed);
  live_->state.store(LiveState::kQueued, std::memory_order_relaxed);
  if (Status ok = SubmitMore(); !ok) {
    const bool full = ok.error().code == ErrorCode::kResourceExhausted;
    app_.metrics_.CountRejected(full                                         ? "queue_full"
                                : ok.error().code == ErrorCode::kUnavailable ? "draining"
                                                                             : "invalid");
    return Refuse(full                                         ? Outcome::kQueueFull
                  : ok.error().code == ErrorCode::kUnavailable ? Outcome::kDraining
                                                               : Outcome::kInvalid,
                  ok.error());
  }
  model_metrics_->CountStarted();
  keep_alive_ = shared_from_this();
}

// --- Stream -------------------------------------------------------------------------------

http::Headers Generation::ResponseHeaders() const {
  http::Headers headers;
  if (meta_.cold_start_seconds) {
    headers.emplace_back("x-ember-cold-start", api::FormatSeconds(*meta_.cold_start_seconds));
  }
  tenancy::HeaderList limits = grant_                   ? grant_->RateLimitHeaders()
                               : caller_.tenant.empty() ? tenancy::HeaderList{}
                                                        : app_.tenancy_.RateLimitHeaders(caller_);
  for (auto& h : limits) headers.push_back(std::move(h));
  return headers;
}

void Generation::Pump() {
  // streams_ may grow while this runs (OnInputFinished submits more): index, don't iterate.
  for (std::size_t i = 0; i < streams_.size(); ++i) {
    for (scheduler::Event& event : streams_[i]->Take()) {
      if (done_) return;
      if (auto* delta = std::get_if<scheduler::TextDelta>(&event)) {
        OnText(*delta);
      } else if (auto* admitted = std::get_if<scheduler::Admitted>(&event)) {
        OnAdmitted(*admitted);
      } else if (kind_ == api::Endpoint::kEmbeddings) {
        OnInputFinished(i, std::get<scheduler::Finished>(event));
      } else if (params_.n > 1) {
        OnChoiceFinished(std::get<scheduler::Finished>(event));
      } else {
        OnFinished(std::get<scheduler::Finished>(event));
      }
    }
  }
}

void Generation::EnsureStreamStarted() {
  if (stream_started_) return;
  stream_started_ = true;
  http_status_ = 200;
  app_.metrics_.CountHttp(endpoint_, 200);
  OutStart(ResponseHeaders());
  if (responses_) OutEvents(responses_->Start());
  if (!chat_) return;
  if (params_.n == 1) return OutEvents(api::EncodeChatRoleChunk(meta_, params_.include_usage));
  for (const Choice& c : choices_)
    OutEvents(api::EncodeChatRoleChunk(c.meta, params_.include_usage));
}

void Generation::OnAdmitted(const scheduler::Admitted& admitted) {
  if (admitted_) return;  // a later embedding input: the request was admitted once
  admitted_ = true;
  live_->state.store(LiveState::kRunning, std::memory_order_relaxed);
  grant_->Started();
  app_.tenant_metrics_.ObserveQueue(caller_.tenant, admitted.queue);
}

void Generation::OnText(scheduler::TextDelta& delta) {
  // A client that has left gets nothing more, and no response is counted for it: text already
  // queued when it left must not start a stream (a 200 no client ever read).
  if (delta.tokens > 0 && live_) {
    if (live_->tokens.fetch_add(delta.tokens, std::memory_order_relaxed) == 0) {
      live_->first_token_ns.store(SinceArrivalNs(), std::memory_order_relaxed);
      live_->state.store(LiveState::kDecoding, std::memory_order_relaxed);
    }
  }
  if (app_.console_.options().keep_text && delta.choice == 0 &&
      kept_output_.size() < kKeptTextBytes) {
    kept_output_.append(delta.text, 0, kKeptTextBytes - kept_output_.size());
  }
  if ((delta.text.empty() && delta.logprobs.empty()) || client_gone_) return;
  if (params_.n > 1) return OnChoiceText(delta);
  const bool logprobs = params_.sampling.logprobs;
  if (!params_.stream || responses_) text_ += delta.text;
  if (!params_.stream) {
    if (chat_output_) chat_output_->Append(delta.text);
    if (logprobs) {
      std::move(delta.logprobs.begin(), delta.logprobs.end(), std::back_inserter(logprobs_));
    }
    return;
  }
  EnsureStreamStarted();
  // A read output (tools, reasoning) is read as it grows: what is content for good goes out as
  // content, reasoning as reasoning, a call as delta.tool_calls fragments.
  ChatOutput::Update update;
  if (chat_output_) update = chat_output_->Add(delta.text);
  const std::string& text = chat_output_ ? update.content : delta.text;
  if (responses_) {
    std::string events = responses_->ReasoningDelta(update.reasoning);
    events += responses_->TextDelta(text);
    events += responses_->CallFragments(update.calls);
    if (!events.empty()) OutEvents(std::move(events));
    return;
  }
  const api::ChoiceLogprobs chunk_logprobs{delta.logprobs, logprob_offset_};
  const api::ChoiceLogprobs* lp = logprobs ? &chunk_logprobs : nullptr;
  if (!chat_) {
    OutEvents(api::EncodeCompletionChunk(meta_, text, std::nullopt, params_.include_usage, lp));
  } else if (!text.empty() || !update.calls.empty() || !update.reasoning.empty() ||
             !delta.logprobs.empty()) {
    OutEvents(api::EncodeChatChunk(meta_, text, std::nullopt, params_.include_usage, lp,
                                   update.calls, update.reasoning));
  }
  for (const engine::TokenLogprobs& t : delta.logprobs) logprob_offset_ += t.chosen.piece.size();
}

void Generation::OnFinished(const scheduler::Finished& f) {
  auto self = std::move(keep_alive_);  // released when this call returns
  lease_.reset();                      // the scheduler is done with the request
  if (client_gone_) return Complete(Outcome::kClientGone, &f);
  // The model's last events may still be in the response hooks, and one may end the stream:
  // the ending is decided once they are back.
  if (params_.stream && !events_back_ &&
      AfterPluginEvents([this, held = std::make_shared<scheduler::Finished>(f)] {
        events_back_ = true;
        if (!done_) OnFinished(*held);
      })) {
    return;
  }
  finishing_ = true;
  if (plugin_stopped_ && params_.stream) return FinishStoppedStream(f);
  std::optional<Error> error = f.error;
  Outcome outcome = Outcome::kFinished;
  if (!error && f.reason == FinishReason::kCancelled) {
    error = Error{ErrorCode::kUnavailable, "server is shutting down; the request was stopped", ""};
  }
  if (error) {
    outcome = error->code == ErrorCode::kDeadlineExceeded ? Outcome::kQueueTimeout
              : error->code == ErrorCode::kUnavailable    ? Outcome::kAborted
                                                          : Outcome::kError;
    if (!stream_started_) {
      // A queue full at an embedding input after the first: the same 429 as at the first.
      api::HttpError http = api::ToHttpError(*error);
      http::Headers headers = ResponseHeaders();
      if (http.status == 429 || http.status == 503) headers.emplace_back("Retry-After", "1");
      http_status_ = http.status;
      app_.Reply(*exchange_, endpoint_, http.status, std::move(http.body), std::move(headers));
    } else if (responses_) {
      OutEvents(responses_->Fail(*error));
      OutEnd();
    } else {
      OutEvents(api::EncodeErrorEvent(*error));
      OutEvents(std::string(api::kSseDone));
      OutEnd();
    }
    return Complete(outcome, &f);
  }
  // The answer's last bytes acknowledge the request; with --ledger-sync full they wait until
  // its usage record is committed (Complete -> RecordUsage), so nothing acknowledged is lost.
  if (kind_ == api::Endpoint::kEmbeddings) {
    http_status_ = 200;
    std::string body = api::EncodeEmbeddings(meta_.model, embeddings_, embed_params_.format,
                                             f.usage.prompt_tokens);
    return Complete(outcome, &f,
                    [this, body = std::move(body), headers = ResponseHeaders()]() mutable {
                      app_.metrics_.CountHttp(endpoint_, 200);
                      OutRespond(std::move(body), std::move(headers));
                    });
  }
  if (!params_.stream && params_.n > 1) {
    http_status_ = 200;
    return Complete(outcome, &f,
                    [this, body = ChoicesBody(f.usage), headers = ResponseHeaders()]() mutable {
                      app_.metrics_.CountHttp(endpoint_, 200);
                      OutRespond(std::move(body), std::move(headers));
                    });
  }
  // The output as the client gets it: with tools or reasoning, read as reasoning, content and
  // calls; an answer that ends with calls (and not at its length limit) finishes with
  // "tool_calls".
  scheduler::Finished finished = f;
  api::ResponseOutput output;
  ChatOutput::Update rest;
  if (chat_output_) {
    ChatOutput::Final read = chat_output_->Finish();
    output.text = std::move(read.content);
    output.tool_calls = std::move(read.calls);
    output.reasoning = std::move(read.reasoning);
    rest = std::move(read.rest);
    if (!output.tool_calls.empty() && f.reason == FinishReason::kStop) {
      finished.reason = FinishReason::kToolCalls;
    }
  } else {
    output.text = text_;
  }
  if (!params_.stream) {
    http_status_ = 200;
    const api::ChoiceLogprobs choice_logprobs{logprobs_, 0};
    const api::ChoiceLogprobs* lp = params_.sampling.logprobs ? &choice_logprobs : nullptr;
    std::string body = responses_ ? responses_->Whole(output, f.reason, f.usage)
                       : chat_
                           ? api::EncodeChatCompletion(meta_, output.text, finished.reason, f.usage,
                                                       lp, output.tool_calls, output.reasoning)
                           : api::EncodeCompletion(meta_, text_, f.reason, f.usage, lp);
    return Complete(outcome, &finished,
                    [this, body = std::move(body), headers = ResponseHeaders()]() mutable {
                      app_.metrics_.CountHttp(endpoint_, 200);
                      OutRespond(std::move(body), std::move(headers));
                    });
  }
  EnsureStreamStarted();
  if (responses_) {
    std::string events = responses_->ReasoningDelta(rest.reasoning);
    events += responses_->TextDelta(rest.content);
    events += responses_->CallFragments(rest.calls);
    events += responses_->Finish(output, f.reason, f.usage);
    OutEvents(std::move(events));
    return Complete(outcome, &finished, [this] { OutEnd(); });
  }
  if (chat_ && (!rest.content.empty() || !rest.calls.empty() || !rest.reasoning.empty())) {
    OutEvents(api::EncodeChatChunk(meta_, rest.content, std::nullopt, params_.include_usage,
                                   nullptr, rest.calls, rest.reasoning));
  }
  if (params_.n == 1) {  // n > 1: each choice's finish chunk went out as it finished
    OutEvents(chat_ ? api::EncodeChatChunk(meta_, "", finished.reason, params_.include_usage)
                    : api::EncodeCompletionChunk(meta_, "", f.reason, params_.include_usage));
  }
  if (params_.include_usage) {
    OutEvents(api::EncodeUsageChunk(meta_, params_.endpoint, f.usage));
  }
  Complete(outcome, &finished, [this] {
    OutEvents(std::string(api::kSseDone));
    OutEnd();
  });
}

// --- Endings ------------------------------------------------------------------------------

void Generation::Refuse(Outcome outcome, const Error& error) {
  api::HttpError http =
      outcome == Outcome::kModelTooLarge  ? api::ToHttpError(error, 413, "model_too_large")
      : outcome == Outcome::kPluginFailed ? api::ToHttpError(error, 503, "plugin_failed")
                                          : api::ToHttpError(error);
  http::Headers headers = ResponseHeaders();
  if (http.status == 429 || http.status == 503) headers.emplace_back("Retry-After", "1");
  http_status_ = http.status;
  app_.Reply(*exchange_, endpoint_, http.status, std::move(http.body), std::move(headers));
  Complete(outcome, nullptr);
}

void Generation::Refuse(const tenancy::Rejection& rejection) {
  const std::string_view reason = tenancy::RejectReasonName(rejection.reason);
  app_.metrics_.CountRejected(StrCat("tenant_", reason));
  app_.tenant_metrics_.CountRejected(caller_.tenant, reason);
  const bool auth = rejection.reason == tenancy::RejectReason::kAuth;
  http_status_ = app_.ReplyRejection(*exchange_, endpoint_, rejection,
                                     auth ? http::Headers{} : ResponseHeaders());
  Complete(auth ? Outcome::kUnauthorized : Outcome::kRateLimited, nullptr);
}

void Generation::Refuse(const MeterRefusal& refusal) {
  api::HttpError http = api::ToHttpError(refusal.error, refusal.status, refusal.code);
  http::Headers headers = ResponseHeaders();
  if (refusal.retry_after_s) {
    headers.emplace_back("Retry-After", std::to_string(*refusal.retry_after_s));
  }
  http_status_ = http.status;
  app_.Reply(*exchange_, endpoint_, http.status, std::move(http.body), std::move(headers));
  Complete(refusal.status == 402 ? Outcome::kOverBudget : Outcome::kCannotMeter, nullptr);
}

std::optional<Metering::Priced> Generation::RecordUsage(Outcome outcome,
                                                        const scheduler::Finished* finished,
                                                        std::function<void()> acknowledge) {
  auto send_now = [&acknowledge]() -> std::optional<Metering::Priced> {
    if (acknowledge) acknowledge();
    return std::nullopt;
  };
  // Refusals are counted in metrics, not billed: a record is for a request that was let in.
  switch (outcome) {
    case Outcome::kLoading:
    case Outcome::kUnauthorized:
    case Outcome::kInvalid:
    case Outcome::kModelTooLarge:
    case Outcome::kRateLimited:
    case Outcome::kQueueFull:
    case Outcome::kOverBudget:
    case Outcome::kCannotMeter:
    case Outcome::kPluginRejected:
    case Outcome::kPluginFailed:
      return send_now();
    default:  // kDraining after admission (its model load was stopped) is recorded
      break;
  }
  Metering* metering = app_.metering_;
  if (metering == nullptr || !grant_) return send_now();
  ledger::UsageRecord r;
  r.request_id = meta_.id.empty() ? NewRequestId(IdPrefix(kind_)) : meta_.id;
  r.tenant = caller_.tenant;
  r.key_id = caller_.key_id;
  r.model = model_id_;
  r.endpoint = endpoint_;
  r.outcome = std::string(OutcomeName(outcome));
  r.http_status = http_status_;
  r.arrival_ns = arrival_unix_ns_;
  r.finished_ns = Metering::NowNs();
  r.prompt_tokens = prompt_tokens_;
  if (cold_start_s_) r.cold_start_ns = static_cast<std::int64_t>(*cold_start_s_ * 1e9);
  if (finished != nullptr) {
    r.finish_reason = finished->reason == FinishReason::kCancelled
                          ? "cancelled"
                          : std::string(api::FinishReasonString(finished->reason));
    r.prompt_tokens = finished->usage.prompt_tokens;
    r.cached_prompt_tokens = finished->usage.cached_tokens;
    r.completion_tokens = finished->usage.completion_tokens;
    r.engine_ns = finished->timings.engine.count();
    if (admitted_) {
      r.queue_ns = finished->timings.queue.count();
      r.admitted_ns = arrival_unix_ns_ + r.queue_ns;
    }
    if (finished->timings.first_token.count() > 0) {
      r.first_token_ns = arrival_unix_ns_ + finished->timings.first_token.count();
    }
  }
  std::function<void()> durable;
  if (acknowledge) {
    // Runs on the ledger's writer thread once the record is committed (or at once when the
    // ledger does not wait): back to this exchange's strand to send the last bytes.
    durable = [self = shared_from_this(), send = std::move(acknowledge)]() mutable {
      self->exchange_->Post([self, send = std::move(send)] { send(); });
    };
  }
  return metering->Record(reservation_, std::move(r), std::move(durable));
}

void Generation::Complete(Outcome outcome, const scheduler::Finished* finished,
                          std::function<void()> acknowledge) {
  if (done_) {
    log::Error("generation ", meta_.id, " reached its completion point twice (",
               OutcomeName(outcome), "); the second is ignored");
    return;
  }
  done_ = true;
  // With response hooks, the answer's last bytes still pass through the plugins: the completion
  // hook goes to the worker after them.
  const bool after_answer = acknowledge && ResponseHooks();
  if (after_answer) {
    acknowledge = [this, ack = std::move(acknowledge)] {
      ack();
      answer_sent_ = true;
      if (pending_completion_) std::exchange(pending_completion_, nullptr)();
    };
  }
  const std::int64_t output = finished != nullptr ? finished->usage.completion_tokens : 0;
  if (grant_) grant_->Settle(output);
  const std::optional<Metering::Priced> priced =
      RecordUsage(outcome, finished, std::move(acknowledge));
  RecordTimeline(outcome, finished, priced);
  CompletePlugins(outcome, finished, priced, after_answer && !answer_sent_);
  app_.metrics_.CountOutcome(OutcomeName(outcome));
  app_.tenant_metrics_.CountRequest(caller_.tenant, http_status_,
                                    finished != nullptr ? finished->usage.prompt_tokens : 0,
                                    output);
  lease_.reset();
}

}  // namespace ember::server
