// The chat component's side of a served model (issue 15): its Jinja chat template, built once
// per load, and the per-request reading of its output into reasoning, content and tool calls.
//
// ChatTemplates: any thread (one mutex around the map; rendering happens outside it).
// ChatOutput: one request's strand.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "api/openai.h"
#include "chat/chat.h"
#include "engine/engine.h"

namespace ember::server {

class ChatTemplates {
 public:
  // `overrides` (--chat-template-file): template text by model id; the key "" applies to every
  // model without one of its own.
  explicit ChatTemplates(std::map<std::string, std::string> overrides = {});

  // The template chat requests to this loaded model render with: its override, else the
  // model's own (GGUF tokenizer.chat_template). Null when it has neither, or when the Jinja
  // engine cannot use it (logged once per load): such a model renders with libllama's
  // built-in templates or ember's fallback, and cannot serve tools.
  std::shared_ptr<const chat::ChatTemplate> For(const engine::ModelInfo& info);

 private:
  std::map<std::string, std::string> overrides_;
  std::mutex mu_;
  // By model id; replaced when the model was loaded again (ModelInfo::created, path).
  struct Entry {
    std::string load_key;
    std::shared_ptr<const chat::ChatTemplate> tmpl;
  };
  std::map<std::string, Entry> entries_;  // GUARDED_BY(mu_)
};

// The request's messages, tools and formats in the chat component's terms. `deterministic`:
// the date templates print is fixed (the Unix epoch), so the prompt is a function of the
// request (docs/api.md, "Tools and structured output").
chat::RenderRequest ToRenderRequest(const api::GenerationParams& params, bool deterministic);

// The engine's constraint for a rendered request (null when it has no grammar). An eager
// grammar from a template begins with the template's generation prompt: it is prefilled.
std::shared_ptr<const engine::Grammar> ToGrammar(const chat::Rendered& rendered);

// The call ids one response has handed out. A request's choices (n > 1) share one, so that no
// two calls of a response have the same id, even where the model writes the ids itself.
using CallIds = std::unordered_set<std::string>;

// One choice's output read as reasoning, content and tool calls while it streams and when it
// ends: for a request with tools, or a template whose answer may open with a reasoning block
// (chat::Rendered::reasoning). Other output is all content and is not read at all.
class ChatOutput {
 public:
  // `ids`: shared with the other choices of the request; null: this output's own.
  explicit ChatOutput(chat::OutputParser parser, std::shared_ptr<CallIds> ids = nullptr);

  // What a stream sends for the output so far: the reasoning and the content that became
  // final, and the tool-call fragments (calls announced with an id and name, then their
  // arguments' growth). Each only grows: text the parser reads differently later waits.
  struct Update {
    std::string reasoning;
    std::string content;
    std::vector<api::ToolCallFragment> calls;
  };
  Update Add(std::string_view text);
  // Non-streamed: the output grows without being read until Finish.
  void Append(std::string_view text) { raw_ += text; }

  // The whole output read as finished. `rest`: what a stream has not sent yet.
  struct Final {
    std::string reasoning;
    std::string content;
    std::vector<engine::ToolCall> calls;
    Update rest;
  };
  Final Finish();

 private:
  // Gives every announced call an id: the model's, unless its format has none or another call
  // of the response has it already, else a new "call_…".
  void AssignIds(std::vector<chat::ToolCallDelta>& deltas);
  std::string Claim(const std::string& model_id);
  Update Diff(const chat::ParsedMessage& now);

  chat::OutputParser parser_;
  std::string raw_;
  chat::ParsedMessage sent_;
  std::vector<std::string> ids_;  // by call index, as first announced
  std::shared_ptr<CallIds> taken_;
};

}  // namespace ember::server
