#include "chat/chat.h"

#include <chat.h>
#include <common.h>
#include <json-schema-to-grammar.h>
#include <log.h>

#include <ctime>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <utility>

#include "chat/schema_check.h"

namespace ember::chat {

struct ChatTemplate::Templates {
  common_chat_templates_ptr ptr;
  bool supports_tools = false;
};

struct OutputParser::Impl {
  common_chat_parser_params params;
  std::string format_name;
  bool single_call = false;  // parallel_tool_calls false
};

namespace {

common_chat_msg ToCommon(const Message& m) {
  common_chat_msg out;
  out.role = m.role;
  out.content = m.content;
  out.tool_call_id = m.tool_call_id;
  for (const ToolCall& c : m.tool_calls) out.tool_calls.push_back({c.name, c.arguments, c.id});
  return out;
}

TriggerKind ToKind(common_grammar_trigger_type type) {
  switch (type) {
    case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
      return TriggerKind::kToken;
    case COMMON_GRAMMAR_TRIGGER_TYPE_WORD:
      return TriggerKind::kWord;
    case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
      return TriggerKind::kPattern;
    case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL:
      return TriggerKind::kPatternFull;
  }
  return TriggerKind::kWord;
}

// A tool's parameters as common wants them (JSON text of an object), checked: malformed JSON,
// and for an enforced call (strict, required or named) a schema the grammar cannot enforce,
// are the caller's error, not a failure deep in the library.
Result<common_chat_tool> ToCommon(const Tool& t, std::size_t index, bool enforced) {
  const std::string param = "tools[" + std::to_string(index) + "].function.parameters";
  if (t.name.empty()) return InvalidArgument("a tool needs a name", "tools");
  std::string parameters =
      t.parameters.empty() ? R"({"type":"object","properties":{}})" : t.parameters;
  if (enforced || t.strict) {
    auto schema = ParseEnforceableSchema(parameters);
    if (!schema) return InvalidArgument(schema.error().message, param);
  } else {
    if (parameters.size() > kMaxSchemaBytes)
      return InvalidArgument(
          "tool parameters are larger than " + std::to_string(kMaxSchemaBytes) + " bytes", param);
    common_json json = common_json::parse_no_throw(parameters);
    if (json.is_discarded() || !json.is_object())
      return InvalidArgument("tool parameters must be a JSON schema object", param);
  }
  return common_chat_tool{t.name, t.description, std::move(parameters)};
}

// `t` formatted in the local time zone (as common formats its own dates), as a JSON string.
std::string QuotedLocalTime(std::chrono::system_clock::time_point t, const char* format) {
  std::time_t time = std::chrono::system_clock::to_time_t(t);
  std::tm local{};
  localtime_r(&time, &local);
  char buf[64];
  std::size_t n = std::strftime(buf, sizeof(buf), format, &local);
  return "\"" + std::string(buf, n) + "\"";
}

struct Inputs {
  common_chat_templates_inputs all;                    // what the prompt shows
  std::optional<common_chat_templates_inputs> forced;  // kNamed: only the named tool
};

Result<Inputs> ToInputs(const RenderRequest& r) {
  Inputs in;
  common_chat_templates_inputs& c = in.all;
  for (const Message& m : r.messages) c.messages.push_back(ToCommon(m));
  const ToolChoiceMode mode = r.tool_choice.mode;
  const bool enforced = mode == ToolChoiceMode::kRequired || mode == ToolChoiceMode::kNamed;
  for (std::size_t i = 0; i < r.tools.size(); ++i) {
    auto tool = ToCommon(r.tools[i], i, enforced);
    if (!tool) return std::unexpected(tool.error());
    c.tools.push_back(std::move(*tool));
  }
  if (enforced && r.tools.empty())
    return InvalidArgument("tool_choice requires a tool but no tools were given", "tool_choice");
  c.tool_choice = mode == ToolChoiceMode::kNone   ? COMMON_CHAT_TOOL_CHOICE_NONE
                  : mode == ToolChoiceMode::kAuto ? COMMON_CHAT_TOOL_CHOICE_AUTO
                                                  : COMMON_CHAT_TOOL_CHOICE_REQUIRED;
  c.parallel_tool_calls = r.parallel_tool_calls;
  c.add_generation_prompt = r.add_generation_prompt;
  c.use_jinja = true;
  if (r.now) {
    // common takes strftime_now's time from `now` but fills date_string and datetime from the
    // clock: those come from the request too.
    c.now = *r.now;
    c.chat_template_kwargs["date_string"] = QuotedLocalTime(*r.now, "%d %b %Y");
    c.chat_template_kwargs["datetime"] = QuotedLocalTime(*r.now, "%b %d %Y");
  }
  c.reasoning_format = COMMON_REASONING_FORMAT_AUTO;
  if (r.response_format == ResponseFormat::kJsonObject) {
    c.json_schema = R"({"type":"object"})";
  } else if (r.response_format == ResponseFormat::kJsonSchema) {
    auto schema = ParseEnforceableSchema(r.json_schema);
    if (!schema) return InvalidArgument(schema.error().message, "response_format");
    c.json_schema = r.json_schema;
  }
  if (mode == ToolChoiceMode::kNamed) {
    in.forced = c;
    in.forced->tools.clear();
    for (const common_chat_tool& t : c.tools)
      if (t.name == r.tool_choice.function) in.forced->tools.push_back(t);
    if (in.forced->tools.empty())
      return InvalidArgument(
          "tool_choice names '" + r.tool_choice.function + "', which is not one of the tools",
          "tool_choice");
  }
  return in;
}

// common honours parallel_tool_calls false inside one call block but still lets the grammar
// repeat the block ("tool-calls ::= (tool-call space)+"): one block it is.
void AllowOneCallBlock(std::string& grammar) {
  for (std::string_view rule :
       {"tool-calls ::= (tool-call space)+\n", "tool-calls ::= (tool-call? space)+\n"}) {
    std::size_t at = grammar.find(rule);
    if (at != std::string::npos)
      grammar.replace(at, rule.size(), "tool-calls ::= tool-call space\n");
  }
}

// common's grammar for a required call lets free text come first ("root ::= ... until-N?
// tool-calls": anything up to the call's opening tag), so a weak model can write on and never
// call. A required or named call comes first: the free text goes.
void RequireCallFirst(std::string& grammar) {
  std::size_t root = grammar.find("root ::= ");
  if (root != 0) {
    root = grammar.find("\nroot ::= ");
    if (root == std::string::npos) return;
    ++root;
  }
  const std::size_t end = grammar.find('\n', root);
  std::string line =
      grammar.substr(root, end == std::string::npos ? std::string::npos : end - root);
  static const std::regex kFreeText(R"( until-[0-9]+\?)");
  std::string stripped = std::regex_replace(line, kFreeText, "");
  grammar.replace(root, line.size(), stripped);
}

// Whether common's grammar for a response_format is its plain form: the generation prompt,
// then the value with optional whitespace or a ```json fence (common/chat.cpp, the json_schema
// case of a template without reasoning or tools).
bool SchemaOnly(const std::string& grammar) {
  static const std::regex kRoot(
      R"((^|\n)root ::= (\"([^"\\]|\\.)*\" )?space space \(\"```json\" space )"
      R"(response-format space \"```\" \| space response-format space\)(\n|$))");
  return grammar.find("\nresponse-format ::= response-format-schema\n") != std::string::npos &&
         std::regex_search(grammar, kRoot);
}

Rendered FromCommon(common_chat_params p, const common_chat_templates_inputs& in) {
  Rendered out;
  out.prompt = std::move(p.prompt);
  out.grammar = std::move(p.grammar);
  if (!in.parallel_tool_calls) AllowOneCallBlock(out.grammar);
  if (in.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && !p.grammar_lazy) {
    RequireCallFirst(out.grammar);
  }
  out.grammar_lazy = p.grammar_lazy;
  for (const common_grammar_trigger& t : p.grammar_triggers)
    out.triggers.push_back({ToKind(t.type), t.value, t.token});
  out.additional_stops = std::move(p.additional_stops);
  out.preserved_tokens = std::move(p.preserved_tokens);
  out.generation_prompt = p.generation_prompt;
  out.reasoning = p.supports_thinking;
  out.schema_only = !in.json_schema.empty() && !p.grammar_lazy &&
                    (in.tools.empty() || in.tool_choice == COMMON_CHAT_TOOL_CHOICE_NONE) &&
                    SchemaOnly(out.grammar);
  auto impl = std::make_shared<OutputParser::Impl>();
  impl->params = common_chat_parser_params(p);
  impl->params.reasoning_format = in.reasoning_format;
  impl->params.parse_tool_calls =
      !in.tools.empty() && in.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
  if (!p.parser.empty()) impl->params.parser.load(p.parser);
  impl->format_name = common_chat_format_name(p.format);
  impl->single_call = !in.parallel_tool_calls;
  out.parser = OutputParser(std::move(impl));
  return out;
}

// common logs its failures to stderr through a thread of its own; chat/ returns them as
// errors instead, so the library's log stays off (its level is a plain global: set once, before
// any call into the library).
void QuietLibraryLog() {
  static std::once_flag once;
  std::call_once(once, [] { common_log_set_verbosity_thold(-1); });
}

// common's Jinja runtime calls std::localtime (strftime_now), which shares one buffer per
// process: one render at a time.
std::mutex& RenderMutex() {
  static std::mutex mutex;
  return mutex;
}

bool IsJsonObject(const std::string& text) {
  common_json json = common_json::parse_no_throw(text);
  return !json.is_discarded() && json.is_object();
}

}  // namespace

std::string OutputParser::FormatName() const { return impl_ ? impl_->format_name : "Content-only"; }

ChatTemplate::ChatTemplate(std::unique_ptr<Templates> templates)
    : templates_(std::move(templates)) {}
ChatTemplate::~ChatTemplate() = default;

Result<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(std::string_view source,
                                                           std::string_view bos,
                                                           std::string_view eos) {
  QuietLibraryLog();
  if (source.empty()) return InvalidArgument("the model has no chat template");
  auto templates = std::make_unique<Templates>();
  try {
    templates->ptr = common_chat_templates_init(nullptr, std::string(source), std::string(bos),
                                                std::string(eos));
    // A template can parse and still fail on every conversation: try one.
    common_chat_templates_inputs probe;
    common_chat_msg ping;
    ping.role = "user";
    ping.content = "ping";
    probe.messages.push_back(std::move(ping));
    std::lock_guard lock(RenderMutex());
    common_chat_templates_apply(templates->ptr.get(), probe);
    auto caps = common_chat_templates_get_caps(templates->ptr.get());
    templates->supports_tools = caps["supports_tools"] && caps["supports_tool_calls"];
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("the chat template cannot be used: ") + e.what());
  }
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(templates)));
}

bool ChatTemplate::SupportsTools() const { return templates_->supports_tools; }

Result<Rendered> ChatTemplate::Render(const RenderRequest& request) const {
  const ToolChoiceMode mode = request.tool_choice.mode;
  if (!request.tools.empty() && mode != ToolChoiceMode::kNone && !templates_->supports_tools) {
    return InvalidArgument("this model's chat template does not support tools", "tools");
  }
  auto in = ToInputs(request);
  if (!in) return std::unexpected(in.error());
  try {
    std::lock_guard lock(RenderMutex());
    common_chat_params params = common_chat_templates_apply(templates_->ptr.get(), in->all);
    if (in->forced) {
      // The prompt shows every tool; the grammar and the parser allow only the named one.
      common_chat_params forced = common_chat_templates_apply(templates_->ptr.get(), *in->forced);
      forced.prompt = std::move(params.prompt);
      params = std::move(forced);
    }
    if ((mode == ToolChoiceMode::kRequired || mode == ToolChoiceMode::kNamed) &&
        params.grammar.empty()) {
      return InvalidArgument(
          "this model's chat template has no tool-call format that can be "
          "enforced, so tool_choice cannot require a call",
          "tool_choice");
    }
    return FromCommon(std::move(params), in->forced ? *in->forced : in->all);
  } catch (const std::bad_alloc&) {
    return Internal("out of memory rendering the chat template");
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("the chat template cannot render this request: ") + e.what(),
                           "messages");
  }
}

Result<ParsedMessage> Parse(const OutputParser& parser, std::string_view text, bool is_partial) {
  ParsedMessage out;
  if (parser.impl() == nullptr) {
    out.content = text;
    return out;
  }
  try {
    common_chat_msg msg = common_chat_parse(std::string(text), is_partial, parser.impl()->params);
    out.content = std::move(msg.content);
    out.reasoning_content = std::move(msg.reasoning_content);
    for (common_chat_tool_call& c : msg.tool_calls) {
      // common's lenient parser also returns a call cut short (max_tokens) with half its
      // arguments: a finished output presents only calls whose arguments are a JSON object.
      if (!is_partial && !IsJsonObject(c.arguments)) throw std::runtime_error("incomplete call");
      out.tool_calls.push_back({std::move(c.id), std::move(c.name), std::move(c.arguments)});
    }
    // parallel_tool_calls false: a second call is dropped, whatever the grammar let through
    if (parser.impl()->single_call && out.tool_calls.size() > 1) out.tool_calls.resize(1);
  } catch (const std::bad_alloc&) {
    return Internal("out of memory parsing the model's output");
  } catch (const std::exception&) {
    out = ParsedMessage{};
    out.content = text;  // not the template's format: all of it is content
  }
  return out;
}

std::vector<ToolCallDelta> DiffToolCalls(const ParsedMessage& sent_so_far,
                                         const ParsedMessage& after) {
  std::vector<ToolCallDelta> out;
  for (std::size_t i = 0; i < after.tool_calls.size(); ++i) {
    const ToolCall& now = after.tool_calls[i];
    if (now.name.empty()) continue;  // not announced until it has a name
    const ToolCall* sent = i < sent_so_far.tool_calls.size() ? &sent_so_far.tool_calls[i] : nullptr;
    if (sent == nullptr || sent->name.empty()) {
      out.push_back({i, now.id, now.name, now.arguments});
      continue;
    }
    if (now.arguments.size() > sent->arguments.size() &&
        now.arguments.starts_with(sent->arguments)) {
      out.push_back({i, "", "", now.arguments.substr(sent->arguments.size())});
    }
  }
  return out;
}

void ApplyToolCallDeltas(ParsedMessage& sent, const std::vector<ToolCallDelta>& deltas) {
  for (const ToolCallDelta& d : deltas) {
    if (sent.tool_calls.size() <= d.index) sent.tool_calls.resize(d.index + 1);
    ToolCall& call = sent.tool_calls[d.index];
    if (!d.name.empty()) call = ToolCall{d.id, d.name, ""};
    call.arguments += d.arguments;
  }
}

Result<std::string> JsonSchemaToGrammar(std::string_view schema) {
  QuietLibraryLog();
  auto json = ParseEnforceableSchema(schema);
  if (!json) return std::unexpected(json.error());
  try {
    return json_schema_to_grammar(*json, /*force_gbnf=*/true);
  } catch (const std::bad_alloc&) {
    return Internal("out of memory converting the JSON schema");
  } catch (const std::exception& e) {
    return InvalidArgument(e.what());
  }
}

}  // namespace ember::chat
