// The embeddings side of Generation (generation.h): one scheduler request per input, at most
// twice the model's slot count in flight, summed into one Finished for the completion point.
#include <algorithm>

#include "common/clock.h"
#include "common/log.h"
#include "server/app.h"
#include "server/generation.h"

namespace ember::server {

using engine::FinishReason;

Status Generation::SubmitMore() {
  scheduler::Scheduler& scheduler = lease_->scheduler();
  // Twice the slots: the inputs that take the slots freed in a step are already queued, so
  // the engine never waits for this strand to hand it the next ones.
  const int window = 2 * std::max(1, scheduler.model().n_parallel);
  while (!failed_ && next_input_ < unsubmitted_.size() && in_flight_ < window) {
    scheduler::GenerateRequest& req = unsubmitted_[next_input_];
    // A later input's queue deadline counts from when it is queued, not from the request's
    // arrival: it waited behind its own request's earlier inputs, not for a slot.
    if (next_input_ > 0) req.arrival = Clock::Real().Now();
    auto stream = std::make_shared<scheduler::RequestStream>();
    std::weak_ptr<Generation> weak = weak_from_this();
    auto ex = exchange_;
    stream->SetNotify([weak, ex] {
      ex->Post([weak] {
        if (auto self = weak.lock()) self->Pump();
      });
    });
    if (Status ok = scheduler.Submit(std::move(req), stream); !ok) {
      if (in_flight_ == 0) return ok;  // nothing of the request runs: refused as it is
      // Queue full with inputs of this request in flight: retried when one of them ends.
      if (ok.error().code == ErrorCode::kResourceExhausted) return {};
      // Draining: the request fails once the inputs in flight have ended.
      failed_ = true;
      total_.reason = FinishReason::kError;
      total_.error = ok.error();
      CancelAll();
      return {};
    }
    streams_.push_back(std::move(stream));
    ++next_input_;
    ++in_flight_;
  }
  if (next_input_ == unsubmitted_.size()) unsubmitted_.clear();
  return {};
}

void Generation::CancelAll() {
  if (!lease_) return;
  for (const auto& stream : streams_) lease_->scheduler().Cancel(stream);
}

Result<std::vector<scheduler::GenerateRequest>> Generation::BuildEmbeddingRequests() {
  scheduler::Scheduler& s = lease_->scheduler();
  const engine::ModelInfo& info = s.model();
  if (embed_params_.dimensions && *embed_params_.dimensions != info.n_embd) {
    return InvalidArgument(StrCat("dimensions must be ", info.n_embd, " (or omitted) for model '",
                                  info.id, "': its embeddings have ", info.n_embd,
                                  " dimensions and it does not support shortening them"),
                           "dimensions");
  }
  // An embedding model takes each input in one step; a generative one in the sequence's context.
  const int limit =
      info.embedding_only() ? std::min(info.n_batch, info.n_ctx_per_seq) : info.n_ctx_per_seq;
  const bool several = embed_params_.inputs.size() > 1;
  std::vector<scheduler::GenerateRequest> reqs;
  reqs.reserve(embed_params_.inputs.size());
  for (std::size_t i = 0; i < embed_params_.inputs.size(); ++i) {
    const std::string where = several ? StrCat("input[", i, "]") : std::string("input");
    scheduler::GenerateRequest req;
    if (auto* text = std::get_if<std::string>(&embed_params_.inputs[i])) {
      auto tokens = s.tokenizer().Tokenize(*text, true);
      if (!tokens) return std::unexpected(tokens.error());
      req.prompt = std::move(*tokens);
    } else {
      req.prompt = std::get<std::vector<engine::Token>>(embed_params_.inputs[i]);
      for (engine::Token t : req.prompt) {
        if (t < 0 || t >= info.n_vocab) {
          return InvalidArgument(
              StrCat(where, ": token id ", t, " is outside the vocabulary [0, ", info.n_vocab, ")"),
              "input");
        }
      }
    }
    const int n = static_cast<int>(req.prompt.size());
    if (n == 0) return InvalidArgument(StrCat(where, " has no tokens"), "input");
    if (n > limit) {
      return InvalidArgument(
          StrCat(where, " (", n, " tokens) exceeds the ", limit,
                 " tokens this model embeds at once",
                 info.embedding_only() ? " (its batch size)" : " (its context per sequence)"),
          "input");
    }
    req.embed = true;
    req.max_tokens = 0;
    req.sampling.temperature = 0.0f;
    req.sampling.deterministic = app_.options_.determinism == Determinism::kAll;
    req.tenant.id = caller_.tenant;
    req.tenant.weight = caller_.weight;
    req.tenant.priority = static_cast<int>(caller_.priority);
    reqs.push_back(std::move(req));
  }
  return reqs;
}

void Generation::OnInputFinished(std::size_t input, scheduler::Finished& f) {
  --in_flight_;
  // The sum the completion point sees: every input's tokens and engine time; the request's
  // queue time is its first input's, its total the last one's.
  const bool first = input == 0;
  total_.usage.prompt_tokens += f.usage.prompt_tokens;
  total_.usage.cached_tokens += f.usage.cached_tokens;
  total_.timings.engine += f.timings.engine;
  if (first) {
    total_.timings.queue = f.timings.queue;
    total_.trace = f.trace;
  }
  total_.timings.total = std::max(total_.timings.total, f.timings.total);
  const bool ok = !f.error && f.reason == FinishReason::kStop;
  if (ok) {
    embeddings_[input] = std::move(f.embedding);
  } else if (!total_.error && (f.error || total_.reason == FinishReason::kStop)) {
    // The first failure is the request's; an error wins over a cancellation.
    total_.reason = f.reason;
    total_.error = f.error;
  }
  if (!ok && !failed_) {
    failed_ = true;
    CancelAll();
  }
  if (!failed_) {
    if (Status more = SubmitMore(); !more) {
      failed_ = true;
      total_.reason = FinishReason::kError;
      total_.error = more.error();
      CancelAll();
    }
  }
  if (in_flight_ > 0 || (!failed_ && next_input_ < unsubmitted_.size())) return;
  // Inputs never submitted (the request failed or its client left first) are not billed.
  if (!failed_) total_.reason = FinishReason::kStop;
  OnFinished(total_);
}

}  // namespace ember::server
