#include "server/chat_templates.h"

#include <utility>

#include "common/ids.h"
#include "common/log.h"

namespace ember::server {

namespace {

std::string NewToolCallId() {
  std::string id = NewRequestId("call");
  id[4] = '_';  // "call_…", as OpenAI's ids read
  return id;
}

chat::Message ToChatMessage(const engine::ChatMessage& m) {
  chat::Message out;
  out.role = m.role;
  out.content = m.content;
  out.tool_call_id = m.tool_call_id;
  for (const engine::ToolCall& c : m.tool_calls)
    out.tool_calls.push_back({c.id, c.name, c.arguments});
  return out;
}

}  // namespace

ChatTemplates::ChatTemplates(std::map<std::string, std::string> overrides)
    : overrides_(std::move(overrides)) {}

std::shared_ptr<const chat::ChatTemplate> ChatTemplates::For(const engine::ModelInfo& info) {
  const std::string load_key = StrCat(info.path, "|", info.created);
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(info.id);
    if (it != entries_.end() && it->second.load_key == load_key) return it->second.tmpl;
  }
  const auto own = overrides_.find(info.id);
  const auto all = overrides_.find("");
  const std::string& source = own != overrides_.end()   ? own->second
                              : all != overrides_.end() ? all->second
                                                        : info.jinja_template;
  std::shared_ptr<const chat::ChatTemplate> tmpl;
  if (!source.empty()) {
    auto created = chat::ChatTemplate::Create(source, info.bos_text, info.eos_text);
    if (created) {
      tmpl = std::move(*created);
      log::Info("model '", info.id, "': chat requests render with its Jinja template",
                tmpl->SupportsTools() ? " (tools supported)" : " (no tool support)");
    } else {
      log::Warn("model '", info.id, "': its chat template cannot be used for tools and ",
                "structured chat (", created.error().message, "); chat renders with ",
                info.chat_template);
    }
  }
  std::lock_guard lock(mu_);
  entries_[info.id] = Entry{load_key, tmpl};
  return tmpl;
}

chat::RenderRequest ToRenderRequest(const api::GenerationParams& params, bool deterministic) {
  chat::RenderRequest r;
  for (const engine::ChatMessage& m : params.messages) r.messages.push_back(ToChatMessage(m));
  for (const api::ToolDefinition& t : params.tools) {
    r.tools.push_back({t.name, t.description, t.parameters, t.strict});
  }
  switch (params.tool_choice.mode) {
    case api::ToolChoice::Mode::kNone:
      r.tool_choice.mode = chat::ToolChoiceMode::kNone;
      break;
    case api::ToolChoice::Mode::kAuto:
      r.tool_choice.mode = chat::ToolChoiceMode::kAuto;
      break;
    case api::ToolChoice::Mode::kRequired:
      r.tool_choice.mode = chat::ToolChoiceMode::kRequired;
      break;
    case api::ToolChoice::Mode::kNamed:
      r.tool_choice.mode = chat::ToolChoiceMode::kNamed;
      r.tool_choice.function = params.tool_choice.name;
      break;
  }
  r.parallel_tool_calls = params.parallel_tool_calls;
  switch (params.response_format.type) {
    case api::ResponseFormat::Type::kText:
      r.response_format = chat::ResponseFormat::kText;
      break;
    case api::ResponseFormat::Type::kJsonObject:
      r.response_format = chat::ResponseFormat::kJsonObject;
      break;
    case api::ResponseFormat::Type::kJsonSchema:
      r.response_format = chat::ResponseFormat::kJsonSchema;
      r.json_schema = params.response_format.schema;
      break;
  }
  if (deterministic) r.now = std::chrono::system_clock::time_point{};
  return r;
}

std::shared_ptr<const engine::Grammar> ToGrammar(const chat::Rendered& rendered) {
  if (rendered.grammar.empty()) return nullptr;
  auto g = std::make_shared<engine::Grammar>();
  g->gbnf = rendered.grammar;
  g->lazy = rendered.grammar_lazy;
  // As llama.cpp's sampler turns common's triggers into patterns: a word matches itself
  // anywhere, a full pattern the whole output.
  for (const chat::GrammarTrigger& t : rendered.triggers) {
    switch (t.kind) {
      case chat::TriggerKind::kWord: {
        std::string escaped;
        for (const char c : t.value) {
          if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) {
            escaped += '\\';
          }
          escaped += c;
        }
        g->trigger_patterns.push_back(std::move(escaped));
        break;
      }
      case chat::TriggerKind::kPattern:
        g->trigger_patterns.push_back(t.value);
        break;
      case chat::TriggerKind::kPatternFull: {
        const std::string& p = t.value;
        g->trigger_patterns.push_back(
            StrCat(p.starts_with('^') ? "" : "^", p, p.ends_with('$') && p.size() > 1 ? "" : "$"));
        break;
      }
      case chat::TriggerKind::kToken:
        g->trigger_tokens.push_back(t.token);
        break;
    }
  }
  if (!g->lazy) g->prefill = rendered.generation_prompt;
  return g;
}

ChatOutput::ChatOutput(chat::OutputParser parser, std::shared_ptr<CallIds> ids)
    : parser_(std::move(parser)), taken_(ids ? std::move(ids) : std::make_shared<CallIds>()) {}

std::string ChatOutput::Claim(const std::string& model_id) {
  std::string id = model_id.empty() || taken_->contains(model_id) ? NewToolCallId() : model_id;
  taken_->insert(id);
  return id;
}

void ChatOutput::AssignIds(std::vector<chat::ToolCallDelta>& deltas) {
  for (chat::ToolCallDelta& d : deltas) {
    if (d.name.empty()) continue;  // a continuation: the call was announced before
    if (ids_.size() <= d.index) ids_.resize(d.index + 1);
    if (ids_[d.index].empty()) ids_[d.index] = Claim(d.id);
    d.id = ids_[d.index];
  }
}

ChatOutput::Update ChatOutput::Diff(const chat::ParsedMessage& now) {
  Update update;
  // Reasoning and content only grow in a stream: text the parser now reads differently (the
  // start of what may become a call, or the end of the reasoning block) waits until it is
  // reasoning or content for good.
  auto grow = [](const std::string& now, std::string& sent, std::string& out) {
    if (now.size() > sent.size() && now.starts_with(sent)) {
      out = now.substr(sent.size());
      sent = now;
    }
  };
  grow(now.reasoning_content, sent_.reasoning_content, update.reasoning);
  grow(now.content, sent_.content, update.content);
  std::vector<chat::ToolCallDelta> deltas = chat::DiffToolCalls(sent_, now);
  AssignIds(deltas);
  chat::ApplyToolCallDeltas(sent_, deltas);
  for (chat::ToolCallDelta& d : deltas) {
    update.calls.push_back({d.index, std::move(d.id), std::move(d.name), std::move(d.arguments)});
  }
  return update;
}

ChatOutput::Update ChatOutput::Add(std::string_view text) {
  raw_ += text;
  auto parsed = chat::Parse(parser_, raw_, /*is_partial=*/true);
  if (!parsed) return {};  // an internal failure: the final parse decides
  return Diff(*parsed);
}

ChatOutput::Final ChatOutput::Finish() {
  Final out;
  auto parsed = chat::Parse(parser_, raw_, /*is_partial=*/false);
  if (!parsed) {
    log::Warn("reading the output as tool calls failed (", parsed.error().message,
              "); it is returned as content");
    parsed = chat::ParsedMessage{raw_, "", {}};
  }
  out.rest = Diff(*parsed);
  out.reasoning = parsed->reasoning_content;
  out.content = parsed->content;
  for (std::size_t i = 0; i < parsed->tool_calls.size(); ++i) {
    const chat::ToolCall& c = parsed->tool_calls[i];
    std::string id = i < ids_.size() && !ids_[i].empty() ? ids_[i] : Claim(c.id);
    out.calls.push_back({std::move(id), c.name, c.arguments});
  }
  return out;
}

}  // namespace ember::server
