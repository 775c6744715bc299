// One /v1/completions, /v1/chat/completions or /v1/embeddings request from its first byte to
// its last, in explicit stages:
//
//   authenticate -> parse -> admit -> acquire model -> build -> submit -> stream
//
// and one completion point, Complete(), that every way of ending goes through exactly once
// (finished, client gone, refused at any stage, load failed or timed out, queue full or timed
// out, drained, engine error). Complete settles the tenant's limits (unused output tokens
// refunded, the concurrency place released) and counts the outcome; the usage ledger and the
// finish hook attach there. Lives on its exchange's HTTP strand.
//
// An embeddings request with several inputs is one admission, one budget reservation and one
// usage record, but one scheduler request per input: at most twice a model's slot count of them
// are queued or running at a time (so a 2048-input request neither fills the wait queue nor
// takes every turn of the fair queue); it answers once all have finished, and a client that
// leaves cancels all of them.
//
// A request for n > 1 choices is one scheduler request with n sequences (scheduler.h) on one
// stream: events carry their choice's index, each choice is accumulated (or streamed as chunks
// with its "index") on its own, and the request completes once, when the last choice has
// finished, with the sum of their usage (generation_choices.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/embeddings.h"
#include "api/openai.h"
#include "api/responses.h"
#include "common/clock.h"
#include "http/http_server.h"
#include "ledger/budget.h"
#include "scheduler/request.h"
#include "server/chat_templates.h"
#include "server/console.h"
#include "server/metering.h"
#include "server/models.h"
#include "server/server_metrics.h"
#include "tenancy/tenancy.h"

namespace ember::plugins {
struct Flow;
class HookRunner;
}  // namespace ember::plugins

namespace ember::server {

class App;

// How a generation request ended: one per request, counted in
// ember_generation_outcomes_total{outcome}, whose sum equals ember_generation_requests_total.
enum class Outcome {
  kFinished,        // answered in full (stop, length)
  kClientGone,      // the client left before the end
  kLoading,         // 503: the server was still starting
  kDraining,        // 503: the server was shutting down
  kUnauthorized,    // 401/403: no, unknown or revoked key; disabled tenant
  kInvalid,         // 400/404: a malformed or impossible request
  kModelTooLarge,   // 413: the model can never fit the memory budget
  kRateLimited,     // 429: a tenant's limit (rate, concurrency, queue)
  kOverBudget,      // 402: the tenant's hard budget cannot cover the request's worst case
  kCannotMeter,     // 503: the usage ledger could not record the request (disk failing)
  kLoadFailed,      // 503: its model failed to load
  kLoadTimeout,     // 503: its model did not load within the queue timeout
  kQueueFull,       // 429: the model's wait queue was full
  kQueueTimeout,    // 503: no slot within the queue timeout
  kAborted,         // stopped by shutdown (drain deadline, server stop)
  kError,           // the engine failed
  kPluginRejected,  // a plugin answered (proxy_send_local_response), before admission
  kPluginFailed,    // 503: a fail-closed plugin trapped or hit a limit, before admission
  kPluginStopped,   // a plugin's response hook ended the stream (finish_reason content_filter)
};
std::string_view OutcomeName(Outcome outcome);

class Generation : public std::enable_shared_from_this<Generation> {
 public:
  // `request_id`: the client's x-request-id (sane), or "" for a new one.
  Generation(App& app, std::shared_ptr<http::Exchange> exchange, api::Endpoint kind,
             std::string request_id);
  ~Generation();

  // Runs the stages up to acquiring the model; answers at once when one refuses the request.
  void Start();

 private:
  // Stages after the model is ready (or cannot be); on the strand.
  void OnModel(Result<ModelLease> lease);
  Result<scheduler::GenerateRequest> BuildRequest();
  // Chat and Responses: the prompt through the model's Jinja template (the chat component),
  // with the constraint and stop strings its tools or response format need; without such a
  // template, libllama's built-in rendering (no tools; a response format still constrains).
  struct ChatPrompt {
    std::vector<engine::Token> prompt;
    std::shared_ptr<const engine::Grammar> grammar;
    std::vector<std::string> stops;
  };
  Result<ChatPrompt> RenderChat(const engine::ModelInfo& info, const engine::Tokenizer& tok);
  // One scheduler request per embedding input.
  Result<std::vector<scheduler::GenerateRequest>> BuildEmbeddingRequests();
  void Submit(std::vector<scheduler::GenerateRequest> reqs);
  // Submits waiting embedding inputs while fewer than the model's slots are in flight.
  // Returns the scheduler's refusal when nothing of the request is in flight to retry after.
  Status SubmitMore();
  void Pump();
  void OnText(scheduler::TextDelta& delta);
  void OnAdmitted(const scheduler::Admitted& admitted);
  // One input's end; the last one to end completes the request with their sum.
  void OnInputFinished(std::size_t input, scheduler::Finished& finished);
  void OnFinished(const scheduler::Finished& finished);
  void CancelAll();
  void EnsureStreamStarted();
  // n > 1 (generation_choices.cc).
  void OnChoiceText(scheduler::TextDelta& delta);
  // One choice's end; the last one to end finishes the request with their sum.
  void OnChoiceFinished(scheduler::Finished& finished);
  // The non-streamed body of a successful request with n > 1.
  std::string ChoicesBody(const engine::Usage& usage) const;

  // Parses the body into params_ (embed_params_); false after refusing it.
  bool Parse(const std::string& body);
  // The stages after parsing: model, admission, acquisition (Start's second half).
  void AfterParse();
  // Hands the request to the plugin workers when a chain applies (generation_plugins.cc);
  // false when none does (or the build has no plugins).
  bool StartPlugins();
  // The completion-point hook (proxy_on_log): hands how the request ended to the plugin workers
  // for the contexts its request hook created; returns at once (generation_plugins.cc).
  // `after_answer`: the answer still goes through response hooks; the completion hook follows
  // its last bytes on the worker.
  void CompletePlugins(Outcome outcome, const scheduler::Finished* finished,
                       const std::optional<Metering::Priced>& priced, bool after_answer);
  // The answer's bytes (generation_plugins.cc): straight to the exchange, or, when a plugin of
  // the request has response hooks, through them on its worker and back to the strand in the
  // order they were sent (the strand never waits on a plugin). Streams: OutStart (200,
  // text/event-stream), OutEvents (complete SSE events: each is one proxy_on_response_body),
  // OutEnd. Non-streamed: OutRespond (200, application/json, the whole body once).
  bool ResponseHooks() const;
  void OutStart(http::Headers headers);
  void OutEvents(std::string events);
  void OutEnd();
  void OutRespond(std::string body, http::Headers headers);
  // A response hook closed the stream: no more of the model's output; OnFinished ends it
  // cleanly.
  void StopByPlugin(const std::string& plugin);
  // Runs `then` on the strand once every event sent so far has come back from the response
  // hooks (one may close the stream); false, doing nothing, when there are none.
  bool AfterPluginEvents(std::function<void()> then);
  void FinishStoppedStream(const scheduler::Finished& f);
  // Answers with `error` (its HTTP status) and completes with `outcome`.
  void Refuse(Outcome outcome, const Error& error);
  void Refuse(const tenancy::Rejection& rejection);
  void Refuse(const MeterRefusal& refusal);
  // The usage record of an admitted request (docs/finops.md), at the completion point.
  // `acknowledge` sends the answer's last bytes: at once, or (--ledger-sync full) once the
  // record is committed.
  // Returns the record's price; nullopt when no record was written.
  std::optional<Metering::Priced> RecordUsage(Outcome outcome, const scheduler::Finished* finished,
                                              std::function<void()> acknowledge);
  // The completion point. `finished`: the scheduler's report, when the request reached it.
  // `acknowledge`: the last bytes of a successful answer, sent once the usage is recorded.
  void Complete(Outcome outcome, const scheduler::Finished* finished,
                std::function<void()> acknowledge = nullptr);
  http::Headers ResponseHeaders() const;
  // The console's record of this request (console.h), at the completion point.
  void RecordTimeline(Outcome outcome, const scheduler::Finished* finished,
                      std::optional<Metering::Priced> priced);
  std::int64_t SinceArrivalNs() const;

  App& app_;
  std::shared_ptr<http::Exchange> exchange_;
  const api::Endpoint kind_;
  const bool chat_;
  const std::string endpoint_;
  api::GenerationParams params_;
  std::string plugin_body_;  // the body as plugins rewrote it (parsed once more)
  // The runner its request hook ran on: the same one serves its response and completion
  // hooks, even when the plugins file is reloaded meanwhile (server/plugins_watch.h).
  std::shared_ptr<plugins::HookRunner> plugin_runner_;
  // The request hook's stream contexts, until the completion point hands them back.
  std::shared_ptr<plugins::Flow> plugin_flow_;
  // Completed while its request hook still ran (the client left): the verdict completes it.
  std::function<void()> complete_plugins_late_;
  bool plugin_hook_pending_ = false;          // on the workers, its verdict not back yet
  std::function<void()> pending_completion_;  // the completion hook, after the answer's bytes
  bool answer_sent_ = false;                  // the acknowledge of Complete ran
  bool plugin_stopped_ = false;               // a response hook closed the stream
  bool finishing_ = false;    // OnFinished writes the last events (not the model's output)
  bool events_back_ = false;  // OnFinished waited for the events in the response hooks
  api::EmbeddingParams embed_params_;
  std::string model_id_;
  std::string request_id_;             // x-request-id
  std::shared_ptr<LiveRequest> live_;  // in the console's live view from admission to Complete
  std::optional<std::int64_t> model_ready_ns_;  // since arrival
  std::optional<std::int64_t> queued_ns_;
  std::string kept_output_;  // --console-keep-text, streamed answers
  ModelMetrics* model_metrics_ = nullptr;
  SteadyTime arrival_{};
  std::int64_t arrival_unix_ns_ = 0;  // the same instant on the wall clock (usage records)
  std::int64_t prompt_tokens_ = 0;    // once tokenized
  std::optional<double> cold_start_s_;
  ledger::Reservation reservation_;  // the request's worst-case cost, held until Complete
  tenancy::Caller caller_;
  std::shared_ptr<tenancy::Grant> grant_;  // the tenant's limits held by this request
  std::unique_ptr<ModelLease> lease_;      // while set, the model stays loaded
  api::ResponseMeta meta_;
  // One per scheduler request (embeddings: per input, in input order, as submitted).
  std::vector<std::shared_ptr<scheduler::RequestStream>> streams_;
  std::vector<scheduler::GenerateRequest> unsubmitted_;  // embedding inputs not yet submitted
  std::size_t next_input_ = 0;                           // of unsubmitted_
  int in_flight_ = 0;                                    // submitted, not finished
  std::vector<std::vector<float>> embeddings_;           // by input
  scheduler::Finished total_;                            // embeddings: the inputs' sum so far
  bool failed_ = false;  // an input failed or was cancelled: the others are cancelled
  std::string text_;     // non-streamed responses; the whole output for /v1/responses
  // Chat and Responses with tools or a reasoning template: how the model's output reads as
  // reasoning, content and tool calls (RenderChat), and the reading of it (n = 1; with n > 1
  // each choice has its own).
  std::optional<chat::OutputParser> output_parser_;
  std::unique_ptr<ChatOutput> chat_output_;
  std::unique_ptr<api::ResponsesEncoder> responses_;  // /v1/responses
  std::vector<engine::TokenLogprobs> logprobs_;       // non-streamed, when asked for
  std::size_t logprob_offset_ = 0;  // streamed: bytes of text before the next token's
  struct Choice {
    std::string text;  // non-streamed: the output; once read (finished), its content
    std::vector<engine::ToolCall> calls;      // non-streamed, once read
    std::string reasoning;                    // non-streamed, once read
    std::unique_ptr<ChatOutput> chat_output;  // with tools or reasoning
    std::vector<engine::TokenLogprobs> logprobs;
    std::size_t logprob_offset = 0;  // streamed
    api::ResponseMeta meta;          // streamed: meta_ with this choice's index
    std::optional<engine::FinishReason> finish;
  };
  std::vector<Choice> choices_;  // n > 1 only
  int choices_open_ = 0;         // not finished yet
  int http_status_ = 0;
  bool stream_started_ = false;
  bool client_gone_ = false;
  bool admitted_ = false;             // took a sequence slot (the Admitted event)
  std::uint64_t acquire_ticket_ = 0;  // while it waits for its model (ModelManager::Abandon)
  bool done_ = false;                 // Complete ran
  // Set while the scheduler owns the request, so events always find this object.
  std::shared_ptr<Generation> keep_alive_;
};

}  // namespace ember::server
