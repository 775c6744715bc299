// The request hooks of WebAssembly plugins (docs/plugins.md) in a generation's path: after
// authentication and parsing, before the model and admission. The chain runs on the plugin
// workers (plugins/hook_runner.h); its verdict comes back to the exchange's strand, where the
// request is answered (a plugin's local response, or 503 for a fail-closed failure) or goes on,
// with a rewritten body parsed once more. At the completion point (Complete), how the request
// ended goes back to the workers for proxy_on_log, without waiting for it.
#include <cctype>

#include "api/openai.h"
#include "common/log.h"
#include "server/app.h"
#include "server/generation.h"

#ifdef EMBER_HAVE_PLUGINS
#include "plugins/hook_runner.h"
#endif

namespace ember::server {

bool Generation::StartPlugins() {
#ifndef EMBER_HAVE_PLUGINS
  return false;
#else
  std::shared_ptr<plugins::HookRunner> runner = app_.plugins();
  if (runner == nullptr || !runner->Applies(endpoint_, caller_.tenant)) return false;
  plugin_runner_ = runner;
  const http::Request& http = exchange_->request();
  plugins::RequestData data;
  data.headers = {{":method", http.method}, {":path", http.path}};
  for (const auto& [name, value] : http.headers) {
    if (name == "authorization" || name == "Authorization") continue;  // the key stays here
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    data.headers.emplace_back(std::move(lower), value);
  }
  data.body = http.body;
  data.tenant = caller_.tenant;
  data.key_id = caller_.key_id;
  data.model = params_.model;
  data.request_id = request_id_;
  auto self = shared_from_this();
  plugin_hook_pending_ = true;
  runner->RunRequest(endpoint_, std::move(data), [self](plugins::RequestVerdict verdict) {
    auto held = std::make_shared<plugins::RequestVerdict>(std::move(verdict));
    self->exchange_->Post([self, held] {
      Generation& g = *self;
      g.plugin_hook_pending_ = false;
      g.plugin_flow_ = std::move(held->flow);
      if (g.done_) {
        if (g.complete_plugins_late_) g.complete_plugins_late_();
        return;
      }
      if (held->failure) {
        g.app_.metrics_.CountRejected("plugin_failed");
        return g.Refuse(Outcome::kPluginFailed,
                        Error{ErrorCode::kUnavailable, held->failure->message, ""});
      }
      if (held->local_response) {
        g.app_.metrics_.CountRejected("plugin_rejected");
        http::Headers headers = g.ResponseHeaders();
        for (auto& header : held->local_response->headers) headers.push_back(std::move(header));
        g.http_status_ = held->local_response->status;
        g.app_.Reply(*g.exchange_, g.endpoint_, g.http_status_,
                     std::move(held->local_response->body), std::move(headers));
        return g.Complete(Outcome::kPluginRejected, nullptr);
      }
      if (held->body_changed) {
        g.plugin_body_ = std::move(held->request.body);
        if (!g.Parse(g.plugin_body_)) return;
      }
      g.AfterParse();
    });
  });
  return true;
#endif
}

void Generation::CompletePlugins(Outcome outcome, const scheduler::Finished* finished,
                                 const std::optional<Metering::Priced>& priced, bool after_answer) {
#ifndef EMBER_HAVE_PLUGINS
  (void)outcome;
  (void)finished;
  (void)priced;
  (void)after_answer;
#else
  plugins::HookRunner* runner = plugin_runner_.get();
  if (runner == nullptr) return;  // no hook ran for it
  plugins::CompletionData data;
  data.prompt_tokens = prompt_tokens_;
  if (finished != nullptr) {
    data.prompt_tokens = finished->usage.prompt_tokens;
    data.completion_tokens = finished->usage.completion_tokens;
    data.cached_tokens = finished->usage.cached_tokens;
    data.finish_reason = finished->reason == engine::FinishReason::kCancelled
                             ? "cancelled"
                             : std::string(api::FinishReasonString(finished->reason));
  }
  if (priced) data.cost_microdollars = priced->cost;
  data.outcome = std::string(OutcomeName(outcome));
  data.http_status = http_status_;
  if (plugin_flow_ && after_answer) {
    pending_completion_ = [this, runner, data = std::move(data)]() mutable {
      runner->Complete(std::move(plugin_flow_), std::move(data));
    };
    return;
  }
  if (plugin_flow_) return runner->Complete(std::move(plugin_flow_), std::move(data));
  if (!plugin_hook_pending_) return;
  // Its request hook is still running: the verdict hands the flow over, then completes it.
  complete_plugins_late_ = [this, runner, data = std::move(data)]() mutable {
    if (plugin_flow_) runner->Complete(std::move(plugin_flow_), std::move(data));
  };
#endif
}

// --- The answer through response hooks ----------------------------------------------------

bool Generation::ResponseHooks() const {
#ifdef EMBER_HAVE_PLUGINS
  return plugin_runner_ != nullptr && plugin_runner_->HasResponseHooks(plugin_flow_);
#else
  return false;
#endif
}

#ifdef EMBER_HAVE_PLUGINS
namespace {

plugins::Headers ToPluginHeaders(int status, std::string_view content_type,
                                 const http::Headers& headers) {
  plugins::Headers out = {{":status", std::to_string(status)},
                          {"content-type", std::string(content_type)}};
  for (const auto& [name, value] : headers) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.emplace_back(std::move(lower), value);
  }
  return out;
}

// The status, content type and other headers a plugin left.
struct HttpHead {
  int status = 200;
  std::string content_type;
  http::Headers headers;
};
HttpHead FromPluginHeaders(plugins::Headers headers, int status, std::string content_type) {
  HttpHead head{status, std::move(content_type), {}};
  for (auto& [name, value] : headers) {
    if (name == ":status") {
      const int parsed = std::atoi(value.c_str());
      if (parsed >= 200 && parsed <= 599) head.status = parsed;
    } else if (name == "content-type") {
      head.content_type = std::move(value);
    } else if (!name.empty() && name[0] != ':') {
      head.headers.emplace_back(std::move(name), std::move(value));
    }
  }
  return head;
}

// Runs the response hooks on the flow's worker; `then` runs on the exchange's strand.
void RunHooks(plugins::HookRunner& runner, std::shared_ptr<plugins::Flow> flow,
              std::shared_ptr<Generation> self, http::Exchange& exchange,
              plugins::ResponseData data, bool headers, bool body,
              std::function<void(plugins::ResponseVerdict&)> then) {
  runner.RunResponse(
      std::move(flow), std::move(data), headers, body,
      [self = std::move(self), ex = &exchange, then = std::move(then)](plugins::ResponseVerdict v) {
        auto held = std::make_shared<plugins::ResponseVerdict>(std::move(v));
        ex->Post([self, held, then] { then(*held); });
      });
}

}  // namespace
#endif

void Generation::OutStart(http::Headers headers) {
#ifdef EMBER_HAVE_PLUGINS
  if (ResponseHooks()) {
    plugins::ResponseData data;
    data.headers = ToPluginHeaders(200, "text/event-stream", headers);
    RunHooks(*plugin_runner_, plugin_flow_, shared_from_this(), *exchange_, std::move(data), true,
             false, [this](plugins::ResponseVerdict& v) {
               // The status of a started stream stays 200: a plugin may change its headers.
               HttpHead head =
                   FromPluginHeaders(std::move(v.response.headers), 200, "text/event-stream");
               exchange_->StartStream(200, "text/event-stream", std::move(head.headers));
               if (v.close_stream || v.failure) StopByPlugin(v.decided_by);
             });
    return;
  }
#endif
  exchange_->StartStream(200, "text/event-stream", std::move(headers));
}

void Generation::OutEvents(std::string events) {
#ifdef EMBER_HAVE_PLUGINS
  if (ResponseHooks()) {
    // One callback per complete event: the encoders write whole events ("...\n\n"), sometimes
    // several in one string (the Responses API), which are cut apart here.
    const bool model_output = !finishing_;
    if (model_output && plugin_stopped_) return;  // the model's output after a close
    std::size_t at = 0;
    while (at < events.size()) {
      std::size_t end = events.find("\n\n", at);
      end = end == std::string::npos ? events.size() : end + 2;
      plugins::ResponseData data;
      data.body = events.substr(at, end - at);
      data.end_of_stream = data.body == api::kSseDone;
      at = end;
      RunHooks(*plugin_runner_, plugin_flow_, shared_from_this(), *exchange_, std::move(data),
               false, true, [this, model_output](plugins::ResponseVerdict& v) {
                 // After a close, what the model still produced is dropped; the stream's own
                 // ending (finish chunk, usage, [DONE]) goes out.
                 if (model_output && plugin_stopped_) return;
                 if (!v.failure && !v.response.body.empty()) {
                   exchange_->Write(std::move(v.response.body));
                 }
                 if (v.close_stream || v.failure) StopByPlugin(v.decided_by);
               });
    }
    return;
  }
#endif
  exchange_->Write(std::move(events));
}

void Generation::OutEnd() {
#ifdef EMBER_HAVE_PLUGINS
  if (ResponseHooks()) {
    // No callback: it ends the stream after every event sent before it has come back.
    RunHooks(*plugin_runner_, plugin_flow_, shared_from_this(), *exchange_, {}, false, false,
             [this](plugins::ResponseVerdict&) { exchange_->End(); });
    return;
  }
#endif
  exchange_->End();
}

void Generation::OutRespond(std::string body, http::Headers headers) {
#ifdef EMBER_HAVE_PLUGINS
  if (ResponseHooks()) {
    plugins::ResponseData data;
    data.headers = ToPluginHeaders(200, "application/json", headers);
    data.body = std::move(body);
    data.end_of_stream = true;
    RunHooks(*plugin_runner_, plugin_flow_, shared_from_this(), *exchange_, std::move(data), true,
             true, [this](plugins::ResponseVerdict& v) {
               if (v.failure) {
                 api::HttpError http = api::ToHttpError(
                     Error{ErrorCode::kUnavailable, v.failure->message, ""}, 503, "plugin_failed");
                 http::Headers error_headers = ResponseHeaders();
                 error_headers.emplace_back("Retry-After", "1");
                 exchange_->Respond(http.status, "application/json", std::move(http.body),
                                    std::move(error_headers));
                 return;
               }
               HttpHead head =
                   FromPluginHeaders(std::move(v.response.headers), 200, "application/json");
               exchange_->Respond(head.status, std::move(head.content_type),
                                  std::move(v.response.body), std::move(head.headers));
             });
    return;
  }
#endif
  exchange_->Respond(200, "application/json", std::move(body), std::move(headers));
}

bool Generation::AfterPluginEvents(std::function<void()> then) {
#ifdef EMBER_HAVE_PLUGINS
  if (!ResponseHooks()) return false;
  RunHooks(*plugin_runner_, plugin_flow_, shared_from_this(), *exchange_, {}, false, false,
           [then = std::move(then)](plugins::ResponseVerdict&) { then(); });
  return true;
#else
  (void)then;
  return false;
#endif
}

void Generation::StopByPlugin(const std::string& plugin) {
  if (plugin_stopped_ || params_.n > 1) return;  // n > 1: not supported (docs/plugins.md)
  plugin_stopped_ = true;
  log::Info("generation ", meta_.id, ": plugin '", plugin, "' ended the stream");
  if (!finishing_) CancelAll();
}

void Generation::FinishStoppedStream(const scheduler::Finished& f) {
  scheduler::Finished finished = f;
  finished.reason = engine::FinishReason::kContentFilter;
  finished.error.reset();
  if (responses_) {
    api::ResponseOutput output;
    output.text = text_;
    OutEvents(responses_->Finish(output, finished.reason, f.usage));
    return Complete(Outcome::kPluginStopped, &finished, [this] { OutEnd(); });
  }
  OutEvents(chat_ ? api::EncodeChatChunk(meta_, "", finished.reason, params_.include_usage)
                  : api::EncodeCompletionChunk(meta_, "", finished.reason, params_.include_usage));
  if (params_.include_usage) OutEvents(api::EncodeUsageChunk(meta_, params_.endpoint, f.usage));
  Complete(Outcome::kPluginStopped, &finished, [this] {
    OutEvents(std::string(api::kSseDone));
    OutEnd();
  });
}

}  // namespace ember::server
