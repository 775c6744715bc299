// The n > 1 part of Generation: one scheduler request whose n sequences share a stream; each
// event names its choice. A read output (tools, reasoning) is read apart per choice (its own
// ChatOutput). Usage sums the choices (the scheduler counts the prompt in choice 0's only, since it
// was computed once); the request completes once, after the last choice.
#include <algorithm>
#include <iterator>

#include "server/app.h"
#include "server/generation.h"

namespace ember::server {

using engine::FinishReason;

void Generation::OnChoiceText(scheduler::TextDelta& delta) {
  if (delta.choice < 0 || delta.choice >= static_cast<int>(choices_.size())) return;
  Choice& c = choices_[delta.choice];
  const bool logprobs = params_.sampling.logprobs;
  if (!params_.stream) {
    c.text += delta.text;
    if (c.chat_output) c.chat_output->Append(delta.text);
    if (logprobs) {
      std::move(delta.logprobs.begin(), delta.logprobs.end(), std::back_inserter(c.logprobs));
    }
    return;
  }
  EnsureStreamStarted();
  // Read (tools, reasoning) as with one choice: content for good as content, reasoning as
  // reasoning, a call as its fragments.
  ChatOutput::Update update;
  if (c.chat_output) update = c.chat_output->Add(delta.text);
  const std::string& text = c.chat_output ? update.content : delta.text;
  const api::ChoiceLogprobs chunk_logprobs{delta.logprobs, c.logprob_offset};
  const api::ChoiceLogprobs* lp = logprobs ? &chunk_logprobs : nullptr;
  if (!chat_) {
    OutEvents(api::EncodeCompletionChunk(c.meta, text, std::nullopt, params_.include_usage, lp));
  } else if (!text.empty() || !update.calls.empty() || !update.reasoning.empty() ||
             !delta.logprobs.empty()) {
    OutEvents(api::EncodeChatChunk(c.meta, text, std::nullopt, params_.include_usage, lp,
                                   update.calls, update.reasoning));
  }
  for (const engine::TokenLogprobs& t : delta.logprobs) c.logprob_offset += t.chosen.piece.size();
}

void Generation::OnChoiceFinished(scheduler::Finished& f) {
  if (f.choice < 0 || f.choice >= static_cast<int>(choices_.size()) || choices_[f.choice].finish) {
    return;
  }
  Choice& c = choices_[f.choice];
  const bool ok =
      !f.error && (f.reason == FinishReason::kStop || f.reason == FinishReason::kLength);
  c.finish = f.reason;
  // A read choice (tools, reasoning) is read whole: its reasoning, content, calls and what a stream
  // has not sent yet. One that ends with calls (not at its length limit) finishes with
  // "tool_calls".
  ChatOutput::Update rest;
  if (c.chat_output && ok) {
    ChatOutput::Final read = c.chat_output->Finish();
    c.text = std::move(read.content);
    c.calls = std::move(read.calls);
    c.reasoning = std::move(read.reasoning);
    rest = std::move(read.rest);
    if (!c.calls.empty() && f.reason == FinishReason::kStop) c.finish = FinishReason::kToolCalls;
  }
  --choices_open_;
  // The sum the completion point sees: the prompt once (choice 0 carries it), every choice's
  // output and engine time; the request's queue and first token are its first choice's.
  total_.usage.prompt_tokens += f.usage.prompt_tokens;
  total_.usage.completion_tokens += f.usage.completion_tokens;
  total_.usage.cached_tokens += f.usage.cached_tokens;
  total_.timings.engine += f.timings.engine;
  if (f.choice == 0) {
    total_.timings.queue = f.timings.queue;
    total_.timings.first_token = f.timings.first_token;
    total_.trace = f.trace;
  }
  total_.timings.total = std::max(total_.timings.total, f.timings.total);
  if (!ok) {
    // The first failure is the request's (an error wins over a cancellation), and it ends the
    // other choices: the answer can no longer be whole.
    if (!total_.error && (f.error || !failed_)) {
      total_.reason = f.reason;
      total_.error = f.error;
    }
    if (!failed_) {
      failed_ = true;
      CancelAll();
    }
  }
  if (ok && params_.stream && !failed_ && !client_gone_) {
    EnsureStreamStarted();
    // The finishing chunk carries what the choice's stream held back (its last content and
    // call fragments) with its finish reason.
    OutEvents(chat_ ? api::EncodeChatChunk(c.meta, rest.content, c.finish, params_.include_usage,
                                           nullptr, rest.calls, rest.reasoning)
                    : api::EncodeCompletionChunk(c.meta, "", f.reason, params_.include_usage));
  }
  if (choices_open_ > 0) return;
  if (!failed_) total_.reason = choices_[0].finish.value_or(FinishReason::kStop);
  OnFinished(total_);
}

std::string Generation::ChoicesBody(const engine::Usage& usage) const {
  std::vector<api::ChoiceLogprobs> logprobs;
  logprobs.reserve(choices_.size());
  std::vector<api::EncodedChoice> encoded;
  encoded.reserve(choices_.size());
  for (const Choice& c : choices_) {
    logprobs.push_back({c.logprobs, 0});
    encoded.push_back({c.text, c.finish.value_or(FinishReason::kStop),
                       params_.sampling.logprobs ? &logprobs.back() : nullptr, c.calls,
                       c.reasoning});
  }
  return api::EncodeChoices(meta_, params_.endpoint, encoded, usage);
}

}  // namespace ember::server
