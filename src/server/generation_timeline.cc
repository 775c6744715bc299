// Generation's record for the console (request_log.h), written at the completion point.
#include "server/app.h"
#include "server/generation.h"

namespace ember::server {

namespace {
constexpr std::size_t kKeptPromptBytes = 64 << 10;
}  // namespace

std::int64_t Generation::SinceArrivalNs() const { return (Clock::Real().Now() - arrival_).count(); }

void Generation::RecordTimeline(Outcome outcome, const scheduler::Finished* finished,
                                std::optional<Metering::Priced> priced) {
  Console& console = app_.console_;
  console.End(live_);
  app_.metrics_.history().OnCompleted(
      OutcomeName(outcome), caller_.tenant,
      priced ? std::optional<std::int64_t>(priced->cost) : std::nullopt);
  const bool watched = console.feed().subscribers() > 0;
  if (console.options().ring_size == 0 && !watched) return;
  RequestRecord r;
  r.id = request_id_;
  r.response_id = meta_.id;
  r.tenant = caller_.tenant;
  r.model = model_id_;
  r.endpoint = endpoint_;
  r.outcome = std::string(OutcomeName(outcome));
  r.http_status = http_status_;
  r.arrival_unix_ns = arrival_unix_ns_;
  r.model_ready_ns = model_ready_ns_;
  if (cold_start_s_) r.cold_start_ns = static_cast<std::int64_t>(*cold_start_s_ * 1e9);
  r.queued_ns = queued_ns_;
  r.completed_ns = SinceArrivalNs();
  r.prompt_tokens = prompt_tokens_;
  r.choices = params_.n;
  r.seed = params_.sampling.seed;
  r.deterministic =
      params_.sampling.deterministic || app_.options_.determinism == Determinism::kAll;
  r.system_fingerprint = meta_.system_fingerprint;
  if (priced) {
    r.cost = priced->cost;
    r.infra_cost = priced->infra;
  }
  if (finished != nullptr) {
    r.finish_reason = finished->reason == engine::FinishReason::kCancelled
                          ? "cancelled"
                          : std::string(api::FinishReasonString(finished->reason));
    r.prompt_tokens = finished->usage.prompt_tokens;
    r.cached_tokens = finished->usage.cached_tokens;
    r.completion_tokens = finished->usage.completion_tokens;
    if (admitted_) r.admitted_ns = finished->timings.queue.count();
    if (finished->timings.first_token.count() > 0) {
      r.first_token_ns = finished->timings.first_token.count();
    }
    r.trace = finished->trace;
  }
  if (console.options().keep_text) {
    const std::string& body = exchange_->request().body;
    r.prompt_text = body.substr(0, kKeptPromptBytes);
    r.output_text = kept_output_;
  }
  if (watched) {
    // The live view's "request" event: the list line of the record.
    console.feed().Publish("request", RequestSummaryJson(r));
  }
  console.log().Add(std::move(r));
}

}  // namespace ember::server
