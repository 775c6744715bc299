// chat/: a model's chat template, tool calls and structured output, through llama.cpp's common
// chat library (its Jinja engine, its tool-call format detection and parsers, its JSON schema
// to GBNF converter). This header is the whole interface: ember's own types in and out, no
// llama.cpp or JSON-library types (docs/chat.md). Nothing here throws: every exception of the
// library is caught here and returned as an Error.
//
// Callers: the chat endpoint (render the prompt and the constraint for a request, parse the
// model's output into content and tool calls, streamed or not). A ChatTemplate is immutable
// after Create; Render and Parse keep no state between calls, so any thread may call them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace ember::chat {

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text (an object), as the model wrote it
};

// One message of the conversation. role: system, developer, user, assistant or tool.
struct Message {
  std::string role;
  std::string content;
  std::vector<ToolCall> tool_calls;  // assistant messages
  std::string tool_call_id;          // tool messages: the call they answer
};

struct Tool {
  std::string name;
  std::string description;
  std::string parameters;  // JSON schema text of the arguments; empty: no arguments
  bool strict = false;     // the arguments' schema is enforced exactly (refused if it cannot be)
};

enum class ToolChoiceMode { kNone, kAuto, kRequired, kNamed };

struct ToolChoice {
  ToolChoiceMode mode = ToolChoiceMode::kAuto;
  std::string function;  // kNamed: the one tool the model must call
};

enum class ResponseFormat { kText, kJsonObject, kJsonSchema };

struct RenderRequest {
  std::vector<Message> messages;
  std::vector<Tool> tools;
  ToolChoice tool_choice;
  bool parallel_tool_calls = true;  // false: at most one call
  ResponseFormat response_format = ResponseFormat::kText;
  std::string json_schema;  // kJsonSchema: the schema's JSON text
  bool add_generation_prompt = true;
  // The time templates print (Llama 3.x's "Today Date"); unset: now. Deterministic callers set
  // it so that the prompt is a function of the request.
  std::optional<std::chrono::system_clock::time_point> now;
};

// When a lazy grammar starts to apply (common's grammar triggers): at a word, at the match of
// a regex pattern (anywhere, or of the whole output so far), or at a token.
enum class TriggerKind { kWord, kPattern, kPatternFull, kToken };

struct GrammarTrigger {
  TriggerKind kind = TriggerKind::kWord;
  std::string value;   // the word or pattern (for kToken: the token's text)
  int32_t token = -1;  // kToken only
};

// How to read one request's output: the template's tool-call format and its parser. Opaque; a
// copy shares the parser.
class OutputParser {
 public:
  struct Impl;
  OutputParser() = default;
  explicit OutputParser(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  // The format common detected ("Content-only", "peg-native", ...), for logs and tests.
  std::string FormatName() const;
  const Impl* impl() const { return impl_.get(); }

 private:
  std::shared_ptr<const Impl> impl_;  // null: the output is all content
};

struct Rendered {
  std::string prompt;
  // GBNF; empty: unconstrained. A grammar for a required call may begin with
  // generation_prompt (the text the prompt already ends with): the sampler is to be advanced
  // over that text before the first generated token, as llama.cpp's server does.
  std::string grammar;
  bool grammar_lazy = false;  // the grammar applies only after one of the triggers
  std::vector<GrammarTrigger> triggers;
  std::vector<std::string> additional_stops;  // stop strings the format adds
  std::vector<std::string> preserved_tokens;  // special tokens the output may contain as text
  std::string generation_prompt;  // the assistant prefix the template ends the prompt with
  // The grammar lets the model write nothing but the response_format's JSON value (after the
  // generation prompt, with at most whitespace or a ```json fence around it): no reasoning
  // block, no call. The value alone, enforced by the schema itself, is then the same answer.
  bool schema_only = false;
  // The template's answer may open with a reasoning block (Qwen3's <think>…</think>, as common
  // detects it): its parser separates reasoning_content from the content, with or without
  // tools. False for templates without one, whose output the parser would return unchanged.
  bool reasoning = false;
  OutputParser parser;
};

struct ParsedMessage {
  std::string content;
  std::string reasoning_content;
  std::vector<ToolCall> tool_calls;
};

// One fragment of OpenAI's streamed `delta.tool_calls`: id and name on a call's first
// fragment only, then pieces of its arguments.
struct ToolCallDelta {
  std::size_t index = 0;
  std::string id;
  std::string name;
  std::string arguments;
};

class ChatTemplate {
 public:
  // `source` is the model's Jinja chat template (GGUF tokenizer.chat_template); bos and eos
  // are the texts of those tokens. kInvalidArgument when the Jinja engine cannot parse it
  // (callers fall back to libllama's built-in templates).
  [[nodiscard]] static Result<std::unique_ptr<ChatTemplate>> Create(std::string_view source,
                                                                    std::string_view bos,
                                                                    std::string_view eos);
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&) = delete;
  ChatTemplate& operator=(const ChatTemplate&) = delete;

  // The prompt and the constraint for one request. kInvalidArgument for a request the template
  // or the constraint cannot serve: tools for a template without tool support (unless
  // tool_choice is none), a required or named tool_choice where the template has no
  // tool-call format to enforce, a tool_choice naming no tool, malformed tool parameters, a
  // schema keyword that cannot be enforced (response_format; the parameters of strict tools,
  // and of every tool when a call is required), a schema over the limits below.
  [[nodiscard]] Result<Rendered> Render(const RenderRequest& request) const;

  // Whether the template renders tools and tool calls (its Jinja reads them).
  bool SupportsTools() const;

 private:
  struct Templates;
  explicit ChatTemplate(std::unique_ptr<Templates> templates);
  std::unique_ptr<Templates> templates_;
};

// The model's output `text` (without the prompt) read with `parser`. is_partial: more output
// may follow (streaming). Output that does not match the format comes back whole as content;
// an error only for an internal failure of the library.
[[nodiscard]] Result<ParsedMessage> Parse(const OutputParser& parser, std::string_view text,
                                          bool is_partial);

// The tool-call fragments that take a stream's client from `sent` (the calls sent so far) to
// `after` (the latest parse). A call is announced (id, name, arguments so far) once it has a
// name; then each fragment carries the new suffix of its arguments. A call whose arguments are
// not an extension of what was sent yields nothing (until they are again), so what a client
// concatenates is always a prefix of the final arguments.
std::vector<ToolCallDelta> DiffToolCalls(const ParsedMessage& sent, const ParsedMessage& after);

// Adds `deltas` to `sent` (the streaming caller's record of what its client has).
void ApplyToolCallDeltas(ParsedMessage& sent, const std::vector<ToolCallDelta>& deltas);

// Limits on a JSON schema (response_format, strict tool parameters): nesting deeper, or text
// longer, is kInvalidArgument.
inline constexpr std::size_t kMaxSchemaBytes = 64 * 1024;
inline constexpr int kMaxSchemaDepth = 32;

// A JSON schema as a GBNF grammar. kInvalidArgument naming the keyword when the schema uses one
// the converter would not enforce (docs/chat.md lists them), or is over the limits.
[[nodiscard]] Result<std::string> JsonSchemaToGrammar(std::string_view schema);

}  // namespace ember::chat
