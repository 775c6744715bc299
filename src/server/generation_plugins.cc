// The request hooks of WebAssembly plugins (docs/plugins.md) in a generation's path: after
// authentication and parsing, before the model and admission. The chain runs on the plugin
// workers (plugins/hook_runner.h); its verdict comes back to the exchange's strand, where the
// request is answered (a plugin's local response, or 503 for a fail-closed failure) or goes on,
// with a rewritten body parsed once more. At the completion point (Complete), how the request
// ended goes back to the workers for proxy_on_log, without waiting for it.
#include <cctype>

#include "api/openai.h"
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
  plugins::HookRunner* runner = app_.plugins_;
  if (runner == nullptr || !runner->Applies(endpoint_, caller_.tenant)) return false;
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
                                 const std::optional<Metering::Priced>& priced) {
#ifndef EMBER_HAVE_PLUGINS
  (void)outcome;
  (void)finished;
  (void)priced;
#else
  plugins::HookRunner* runner = app_.plugins_;
  if (runner == nullptr) return;
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
  if (plugin_flow_) return runner->Complete(std::move(plugin_flow_), std::move(data));
  if (!plugin_hook_pending_) return;
  // Its request hook is still running: the verdict hands the flow over, then completes it.
  complete_plugins_late_ = [this, runner, data = std::move(data)]() mutable {
    if (plugin_flow_) runner->Complete(std::move(plugin_flow_), std::move(data));
  };
#endif
}

}  // namespace ember::server
