#include "chat/chat.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace ember::chat {
namespace {

std::string ReadTemplate(const std::string& name) {
  std::ifstream in(std::string(EMBER_LLAMA_TEMPLATES_DIR) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Tool Weather() {
  return Tool{"get_weather", "Current weather in a city",
              R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})",
              false};
}
Tool Time() {
  return Tool{"get_time", "Current time in a timezone",
              R"({"type":"object","properties":{"tz":{"type":"string"}},"required":["tz"]})",
              false};
}

constexpr char kLlama31[] = "meta-llama-Llama-3.1-8B-Instruct.jinja";
constexpr char kQwen25[] = "Qwen-Qwen2.5-7B-Instruct.jinja";
constexpr char kQwen3[] = "Qwen-Qwen3-0.6B.jinja";
constexpr char kNemo[] = "mistralai-Mistral-Nemo-Instruct-2407.jinja";
constexpr char kGemma2[] = "google-gemma-2-2b-it.jinja";  // no tools in its template

std::unique_ptr<ChatTemplate> Load(const char* name) {
  auto t = ChatTemplate::Create(ReadTemplate(name), "<|begin_of_text|>", "<|eot_id|>");
  EXPECT_TRUE(t.has_value()) << name << ": " << (t ? "" : t.error().message);
  return t ? std::move(*t) : nullptr;
}

RenderRequest WeatherRequest(ToolChoiceMode mode = ToolChoiceMode::kAuto,
                             std::string function = "") {
  RenderRequest r;
  r.messages = {{"system", "Be brief.", {}, ""}, {"user", "Weather in Paris?", {}, ""}};
  r.tools = {Weather(), Time()};
  r.tool_choice = {mode, std::move(function)};
  return r;
}

Rendered MustRender(const ChatTemplate& t, const RenderRequest& r) {
  auto out = t.Render(r);
  EXPECT_TRUE(out.has_value()) << out.error().message;
  return out ? std::move(*out) : Rendered{};
}

ParsedMessage MustParse(const OutputParser& p, const std::string& text, bool partial) {
  auto out = Parse(p, text, partial);
  EXPECT_TRUE(out.has_value()) << out.error().message;
  return out ? std::move(*out) : ParsedMessage{};
}

// Every prefix of `output` parsed as partial never shows a call that the final parse does not
// extend; and the fragments DiffToolCalls sends while `output` arrives in uneven chunks add up
// to exactly the final calls.
void ExpectStreamsLikeFinal(const OutputParser& parser, const std::string& output) {
  ParsedMessage final = MustParse(parser, output, false);
  for (std::size_t cut = 0; cut <= output.size(); ++cut) {
    ParsedMessage part = MustParse(parser, output.substr(0, cut), true);
    ASSERT_LE(part.tool_calls.size(), final.tool_calls.size()) << "after " << cut << " bytes";
    for (std::size_t i = 0; i < part.tool_calls.size(); ++i) {
      const ToolCall& c = part.tool_calls[i];
      if (!c.name.empty()) {
        EXPECT_EQ(c.name, final.tool_calls[i].name) << cut;
      }
      EXPECT_TRUE(final.tool_calls[i].arguments.starts_with(c.arguments))
          << "after " << cut << " bytes: " << c.arguments << " is not a prefix of "
          << final.tool_calls[i].arguments;
    }
  }
  ParsedMessage sent;
  std::size_t fragments = 0;
  for (std::size_t pos = 0, step = 1; pos < output.size(); pos += step, step = step % 7 + 1) {
    auto deltas = DiffToolCalls(sent, MustParse(parser, output.substr(0, pos + step), true));
    fragments += deltas.size();
    ApplyToolCallDeltas(sent, deltas);
  }
  ApplyToolCallDeltas(sent, DiffToolCalls(sent, final));
  ASSERT_EQ(sent.tool_calls.size(), final.tool_calls.size());
  for (std::size_t i = 0; i < final.tool_calls.size(); ++i) {
    EXPECT_EQ(sent.tool_calls[i].name, final.tool_calls[i].name);
    EXPECT_EQ(sent.tool_calls[i].arguments, final.tool_calls[i].arguments);
  }
  if (!final.tool_calls.empty()) {
    EXPECT_GT(fragments, final.tool_calls.size());
  }
}

TEST(ChatTemplate, RefusesATemplateItCannotParse) {
  auto t = ChatTemplate::Create("{% for m in messages %}{{ m.content }", "", "");
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(t.error().message.find("chat template"), std::string::npos) << t.error().message;
  EXPECT_FALSE(ChatTemplate::Create("", "", "").has_value());
}

TEST(Llama31, RendersToolsAndParsesAJsonCall) {
  auto t = Load(kLlama31);
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->SupportsTools());
  Rendered r = MustRender(*t, WeatherRequest());
  EXPECT_NE(r.prompt.find("\"get_weather\""), std::string::npos);
  EXPECT_NE(r.prompt.find("Weather in Paris?"), std::string::npos);
  EXPECT_TRUE(r.prompt.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));

  const std::string call = R"({"name": "get_weather", "parameters": {"city": "Paris"}})";
  ParsedMessage m = MustParse(r.parser, call, false);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(m.content, "");
  ExpectStreamsLikeFinal(r.parser, call);

  ParsedMessage text = MustParse(r.parser, "It is sunny.", false);
  EXPECT_EQ(text.content, "It is sunny.");
  EXPECT_TRUE(text.tool_calls.empty());
}

TEST(Llama31, TheDateInThePromptComesFromTheRequest) {
  auto t = Load(kLlama31);
  ASSERT_TRUE(t);
  RenderRequest req = WeatherRequest();
  req.now = std::chrono::system_clock::time_point(std::chrono::seconds(1699963200));
  EXPECT_NE(MustRender(*t, req).prompt.find("Today Date: 14 Nov 2023"), std::string::npos)
      << MustRender(*t, req).prompt;
}

TEST(Llama31, RequiredCallIsAGrammarOverEveryTool) {
  auto t = Load(kLlama31);
  ASSERT_TRUE(t);
  Rendered r = MustRender(*t, WeatherRequest(ToolChoiceMode::kRequired));
  EXPECT_FALSE(r.grammar_lazy);
  EXPECT_NE(r.grammar.find("get_weather"), std::string::npos) << r.grammar;
  EXPECT_NE(r.grammar.find("get_time"), std::string::npos) << r.grammar;
}

const std::string kQwenTwoCalls =
    "Checking. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
    "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}\n"
    "</tool_call>";

// common's required-call grammar lets free text come before the call; a weak model would
// write on and never call. chat/ makes the call come first.
TEST(Qwen25, RequiredCallComesFirstWithNoFreeTextBeforeIt) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  for (const ToolChoiceMode mode : {ToolChoiceMode::kRequired, ToolChoiceMode::kNamed}) {
    Rendered r =
        MustRender(*t, WeatherRequest(mode, mode == ToolChoiceMode::kNamed ? "get_weather" : ""));
    EXPECT_FALSE(r.grammar_lazy);
    const std::size_t root = r.grammar.find("root ::= ");
    ASSERT_NE(root, std::string::npos) << r.grammar;
    const std::string line = r.grammar.substr(root, r.grammar.find('\n', root) - root);
    EXPECT_EQ(line.find("until-"), std::string::npos) << line;
    EXPECT_NE(line.find("tool-calls"), std::string::npos) << line;
  }
  // auto keeps its free text: there the model chooses.
  Rendered automatic = MustRender(*t, WeatherRequest());
  EXPECT_TRUE(automatic.grammar_lazy);
}

TEST(Qwen25, LazyGrammarTriggeredByToolCallTag) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  Rendered r = MustRender(*t, WeatherRequest());
  EXPECT_TRUE(r.grammar_lazy);
  ASSERT_EQ(r.triggers.size(), 1u);
  EXPECT_EQ(r.triggers[0].kind, TriggerKind::kWord);
  EXPECT_EQ(r.triggers[0].value, "<tool_call>\n");
  EXPECT_NE(r.grammar.find("tool-get-weather"), std::string::npos);
  EXPECT_EQ(r.preserved_tokens, (std::vector<std::string>{"<tool_call>", "</tool_call>"}));
  EXPECT_TRUE(r.prompt.ends_with("<|im_start|>assistant\n"));
}

TEST(Qwen25, ParsesCallsCompleteStreamedTruncatedAndMalformed) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  Rendered r = MustRender(*t, WeatherRequest());
  ParsedMessage m = MustParse(r.parser, kQwenTwoCalls, false);
  EXPECT_EQ(m.content, "Checking. ");
  ASSERT_EQ(m.tool_calls.size(), 2u);
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(m.tool_calls[1].name, "get_time");
  EXPECT_EQ(m.tool_calls[1].arguments, R"({"tz": "CET"})");
  ExpectStreamsLikeFinal(r.parser, kQwenTwoCalls);

  // cut by max_tokens: no half call, all of it is content
  const std::string cut = "<tool_call>\n{\"name\": \"get_weather\", \"argu";
  ParsedMessage truncated = MustParse(r.parser, cut, false);
  EXPECT_TRUE(truncated.tool_calls.empty());
  EXPECT_EQ(truncated.content, cut);
  const std::string cut_in_args = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"ci";
  EXPECT_TRUE(MustParse(r.parser, cut_in_args, false).tool_calls.empty());

  for (const std::string bad : {"<tool_call>not json</tool_call>",
                                "<tool_call>\n{\"x\": 1}\n"
                                "</tool_call>"}) {
    ParsedMessage malformed = MustParse(r.parser, bad, false);
    EXPECT_TRUE(malformed.tool_calls.empty()) << bad;
    EXPECT_EQ(malformed.content, bad);
  }
}

TEST(Qwen25, RendersHistoryWithCallsAndToolResults) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  RenderRequest req = WeatherRequest();
  req.messages.push_back({"assistant", "", {{"call_1", "get_weather", R"({"city":"Paris"})"}}, ""});
  req.messages.push_back({"tool", "18 degrees, sunny", {}, "call_1"});
  Rendered r = MustRender(*t, req);
  EXPECT_NE(r.prompt.find("\"name\": \"get_weather\""), std::string::npos) << r.prompt;
  EXPECT_NE(r.prompt.find("Paris"), std::string::npos);
  EXPECT_NE(r.prompt.find("<tool_response>\n18 degrees, sunny\n</tool_response>"),
            std::string::npos)
      << r.prompt;
}

TEST(Qwen25, NamedToolChoiceForcesThatTool) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  Rendered r = MustRender(*t, WeatherRequest(ToolChoiceMode::kNamed, "get_time"));
  EXPECT_FALSE(r.grammar_lazy);
  EXPECT_NE(r.grammar.find("get_time"), std::string::npos) << r.grammar;
  EXPECT_EQ(r.grammar.find("get_weather"), std::string::npos) << r.grammar;
  EXPECT_NE(r.prompt.find("get_weather"), std::string::npos);  // the prompt shows every tool
  ParsedMessage m = MustParse(
      r.parser,
      "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>",
      false);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "get_time");

  auto unknown = t->Render(WeatherRequest(ToolChoiceMode::kNamed, "get_stock"));
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().param, "tool_choice");
  RenderRequest no_tools = WeatherRequest(ToolChoiceMode::kRequired);
  no_tools.tools.clear();
  EXPECT_FALSE(t->Render(no_tools).has_value());
}

TEST(Qwen25, ParallelToolCallsFalseAllowsOneCall) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  RenderRequest req = WeatherRequest(ToolChoiceMode::kRequired);
  Rendered parallel = MustRender(*t, req);
  req.parallel_tool_calls = false;
  Rendered single = MustRender(*t, req);
  EXPECT_NE(parallel.grammar.find("tool-calls ::= (tool-call space)+\n"), std::string::npos)
      << parallel.grammar;
  EXPECT_NE(single.grammar.find("tool-calls ::= tool-call space\n"), std::string::npos)
      << single.grammar;
  // inside a block, no second call either
  EXPECT_NE(parallel.grammar.find("(space \",\" space (tool-get-weather"), std::string::npos);
  EXPECT_EQ(single.grammar.find("(space \",\" space (tool-get-weather"), std::string::npos);
  // and the parser keeps the first call of an output with two
  EXPECT_EQ(MustParse(parallel.parser, kQwenTwoCalls, false).tool_calls.size(), 2u);
  ParsedMessage one = MustParse(single.parser, kQwenTwoCalls, false);
  ASSERT_EQ(one.tool_calls.size(), 1u);
  EXPECT_EQ(one.tool_calls[0].name, "get_weather");
}

TEST(Qwen3, ReasoningIsSeparatedFromTheCall) {
  auto t = Load(kQwen3);
  ASSERT_TRUE(t);
  Rendered r = MustRender(*t, WeatherRequest());
  const std::string out =
      "<think>\nParis, so weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
      "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  ParsedMessage m = MustParse(r.parser, out, false);
  EXPECT_EQ(m.reasoning_content, "Paris, so weather.\n");
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"city": "Paris"})");
  ExpectStreamsLikeFinal(r.parser, out);
}

TEST(MistralNemo, ParsesCallsWithTheirIds) {
  auto t = Load(kNemo);
  ASSERT_TRUE(t);
  Rendered r = MustRender(*t, WeatherRequest());
  EXPECT_TRUE(r.grammar_lazy);
  ASSERT_FALSE(r.triggers.empty());
  EXPECT_EQ(r.triggers[0].value, "[TOOL_CALLS]");
  EXPECT_NE(r.prompt.find("[AVAILABLE_TOOLS]"), std::string::npos);
  const std::string out =
      R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}, )"
      R"({"name": "get_time", "arguments": {"tz": "CET"}, "id": "xyz987uvw"}])";
  ParsedMessage m = MustParse(r.parser, out, false);
  ASSERT_EQ(m.tool_calls.size(), 2u);
  EXPECT_EQ(m.tool_calls[0].id, "abc123def");
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(m.tool_calls[1].id, "xyz987uvw");
  ExpectStreamsLikeFinal(r.parser, out);
  ParsedMessage text = MustParse(r.parser, "No tools needed.", false);
  EXPECT_EQ(text.content, "No tools needed.");
  EXPECT_TRUE(text.tool_calls.empty());
  const std::string cut = R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Par)";
  EXPECT_TRUE(MustParse(r.parser, cut, false).tool_calls.empty());
}

TEST(MistralNemo, NamedToolChoiceForcesThatTool) {
  auto t = Load(kNemo);
  ASSERT_TRUE(t);
  Rendered r = MustRender(*t, WeatherRequest(ToolChoiceMode::kNamed, "get_weather"));
  EXPECT_FALSE(r.grammar_lazy);
  EXPECT_NE(r.grammar.find("get_weather"), std::string::npos);
  EXPECT_EQ(r.grammar.find("get_time"), std::string::npos) << r.grammar;
}

TEST(TemplateWithoutTools, RendersChatButRefusesTools) {
  auto t = Load(kGemma2);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->SupportsTools());
  RenderRequest chat;
  chat.messages = {{"user", "Hi", {}, ""}};
  Rendered r = MustRender(*t, chat);
  EXPECT_EQ(r.prompt,
            "<|begin_of_text|><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_TRUE(r.grammar.empty());
  ParsedMessage m = MustParse(r.parser, R"({"name": "get_weather"} and text)", false);
  EXPECT_EQ(m.content, R"({"name": "get_weather"} and text)");
  EXPECT_TRUE(m.tool_calls.empty());

  auto with_tools = t->Render(WeatherRequest());
  ASSERT_FALSE(with_tools.has_value());
  EXPECT_EQ(with_tools.error().param, "tools");
  EXPECT_TRUE(t->Render(WeatherRequest(ToolChoiceMode::kNone)).has_value());
}

TEST(ResponseFormat, JsonSchemaAndJsonObjectBecomeGrammars) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  RenderRequest req;
  req.messages = {{"user", "Weather as JSON", {}, ""}};
  req.response_format = ResponseFormat::kJsonSchema;
  req.json_schema = R"({"type":"object","properties":{"celsius":{"type":"integer"}},
                        "required":["celsius"]})";
  Rendered r = MustRender(*t, req);
  EXPECT_NE(r.grammar.find("celsius"), std::string::npos) << r.grammar;
  EXPECT_FALSE(r.grammar_lazy);

  req.json_schema = R"({"type":"object","properties":{"e":{"type":"string","format":"email"}}})";
  auto refused = t->Render(req);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().param, "response_format");
  EXPECT_NE(refused.error().message.find("'format'"), std::string::npos);

  req.response_format = ResponseFormat::kJsonObject;
  EXPECT_FALSE(MustRender(*t, req).grammar.empty());
}

// Where the template's grammar lets the model write only the value (after the generation prompt,
// with whitespace or a fence around it), the value may be enforced by its schema alone; not
// where the model may reason first or call a tool.
TEST(ResponseFormat, SchemaOnlyWhereNothingButTheValueMayBeWritten) {
  RenderRequest req;
  req.messages = {{"user", "Weather as JSON", {}, ""}};
  req.response_format = ResponseFormat::kJsonSchema;
  req.json_schema = R"({"type":"object","properties":{"celsius":{"type":"integer"}}})";
  auto qwen25 = Load(kQwen25);
  ASSERT_TRUE(qwen25);
  EXPECT_TRUE(MustRender(*qwen25, req).schema_only);
  req.response_format = ResponseFormat::kText;
  EXPECT_FALSE(MustRender(*qwen25, req).schema_only);
  req.response_format = ResponseFormat::kJsonObject;
  EXPECT_TRUE(MustRender(*qwen25, req).schema_only);

  RenderRequest tools = WeatherRequest();
  tools.response_format = ResponseFormat::kJsonObject;
  EXPECT_FALSE(MustRender(*qwen25, tools).schema_only);

  auto qwen3 = Load(kQwen3);  // a reasoning template: its grammar keeps room for <think>
  ASSERT_TRUE(qwen3);
  Rendered r3 = MustRender(*qwen3, req);
  EXPECT_EQ(r3.schema_only, r3.grammar.find("think") == std::string::npos) << r3.grammar;
}

TEST(StrictTools, UnenforceableParametersAreRefused) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  RenderRequest req = WeatherRequest();
  req.tools[0].parameters = R"({"type":"object","properties":{"n":{"type":"integer",
                                "multipleOf":2}}})";
  EXPECT_TRUE(t->Render(req).has_value());  // auto, not strict: best effort
  req.tools[0].strict = true;
  auto refused = t->Render(req);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().param, "tools[0].function.parameters");
  EXPECT_NE(refused.error().message.find("'multipleOf'"), std::string::npos);
  req.tools[0].parameters = "{not json";
  req.tools[0].strict = false;
  EXPECT_FALSE(t->Render(req).has_value());
}

// A template no parser in common knows: its tool-call format is derived from how it renders
// an assistant's call (common's differential autoparser).
constexpr char kUnknownFamily[] = R"(
{%- if tools %}<|tools|>Tools: {{ tools | tojson }}<|end|>
{% endif -%}
{%- for m in messages -%}
<|{{ m.role }}|>
{{- m.content }}
{%- if m.tool_calls %}{% for c in m.tool_calls %}<call>{"name": "{{ c.function.name }}", "args": {{ c.function.arguments | tojson }}}</call>{% endfor %}{% endif -%}
<|end|>
{% endfor -%}
{%- if add_generation_prompt %}<|assistant|>
{% endif -%})";

TEST(UnknownFamily, DerivesTheCallFormatFromTheTemplate) {
  auto created = ChatTemplate::Create(kUnknownFamily, "", "");
  ASSERT_TRUE(created.has_value()) << created.error().message;
  const ChatTemplate& t = **created;
  Rendered r = MustRender(t, WeatherRequest());
  EXPECT_NE(r.prompt.find("Tools: "), std::string::npos) << r.prompt;
  EXPECT_TRUE(r.prompt.ends_with("<|assistant|>\n")) << r.prompt;
  const std::string out = R"(<call>{"name": "get_weather", "args": {"city": "Paris"}}</call>)";
  ParsedMessage m = MustParse(r.parser, out, false);
  ASSERT_EQ(m.tool_calls.size(), 1u) << r.parser.FormatName() << " content: " << m.content;
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"city": "Paris"})");
  ExpectStreamsLikeFinal(r.parser, out);
  ParsedMessage text = MustParse(r.parser, "Just text.", false);
  EXPECT_EQ(text.content, "Just text.");
  EXPECT_TRUE(text.tool_calls.empty());
  const std::string cut = R"(<call>{"name": "get_weather", "args": {"ci)";
  EXPECT_TRUE(MustParse(r.parser, cut, false).tool_calls.empty());

  Rendered required = MustRender(t, WeatherRequest(ToolChoiceMode::kRequired));
  EXPECT_NE(required.grammar.find("<call>"), std::string::npos) << required.grammar;
  EXPECT_NE(required.grammar.find("get_time"), std::string::npos);
}

TEST(ChatTemplate, RefusesATemplateThatFailsToRender) {
  auto t = ChatTemplate::Create("{{ raise_exception('this template is broken') }}", "", "");
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(t.error().message.find("this template is broken"), std::string::npos)
      << t.error().message;
}

TEST(ChatTemplate, RendersAndParsesFromSeveralThreads) {
  auto t = Load(kLlama31);
  ASSERT_TRUE(t);
  const std::string expected = MustRender(*t, WeatherRequest()).prompt;
  const std::string call = R"({"name": "get_time", "parameters": {"tz": "UTC"}})";
  std::vector<std::thread> threads;
  std::atomic<int> good = 0;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 10; ++j) {
        auto r = t->Render(WeatherRequest());
        if (!r || r->prompt != expected) continue;
        auto m = Parse(r->parser, call, false);
        if (m && m->tool_calls.size() == 1 && m->tool_calls[0].name == "get_time") ++good;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(good.load(), 40);
}

TEST(DiffToolCalls, AnnouncesThenAppends) {
  ParsedMessage sent;
  ParsedMessage a{"", "", {{"id1", "get_weather", R"({"ci)"}}};
  auto d1 = DiffToolCalls(sent, a);
  ASSERT_EQ(d1.size(), 1u);
  EXPECT_EQ(d1[0].index, 0u);
  EXPECT_EQ(d1[0].id, "id1");
  EXPECT_EQ(d1[0].name, "get_weather");
  EXPECT_EQ(d1[0].arguments, R"({"ci)");
  ApplyToolCallDeltas(sent, d1);
  ParsedMessage b{"", "", {{"id1", "get_weather", R"({"city": "Paris"})"}, {"id2", "", ""}}};
  auto d2 = DiffToolCalls(sent, b);
  ASSERT_EQ(d2.size(), 1u);  // the second call has no name yet
  EXPECT_EQ(d2[0].name, "");
  EXPECT_EQ(d2[0].arguments, R"(ty": "Paris"})");
  ApplyToolCallDeltas(sent, d2);
  ParsedMessage rewritten{"", "", {{"id1", "get_weather", R"({"town": "Paris"})"}}};
  EXPECT_TRUE(DiffToolCalls(sent, rewritten).empty());
  EXPECT_EQ(sent.tool_calls[0].arguments, R"({"city": "Paris"})");
}

TEST(Qwen3, ReasoningIsSeparatedWithoutToolsToo) {
  auto t = Load(kQwen3);
  ASSERT_TRUE(t);
  RenderRequest chat;
  chat.messages = {{"user", "Hi", {}, ""}};
  Rendered r = MustRender(*t, chat);
  EXPECT_TRUE(r.reasoning);
  ParsedMessage m = MustParse(r.parser, "<think>\nA greeting.\n</think>\n\nHello!", false);
  EXPECT_EQ(m.reasoning_content, "A greeting.\n");
  EXPECT_EQ(m.content, "Hello!");
  EXPECT_TRUE(m.tool_calls.empty());
  // While the block is open, what there is of it is reasoning, and no content yet.
  ParsedMessage part = MustParse(r.parser, "<think>\nA gree", true);
  EXPECT_EQ(part.reasoning_content, "A gree");
  EXPECT_EQ(part.content, "");
}

TEST(Qwen25, NoReasoningBlockToSeparate) {
  auto t = Load(kQwen25);
  ASSERT_TRUE(t);
  RenderRequest chat;
  chat.messages = {{"user", "Hi", {}, ""}};
  EXPECT_FALSE(MustRender(*t, chat).reasoning);
  EXPECT_FALSE(MustRender(*t, WeatherRequest()).reasoning);
}

}  // namespace
}  // namespace ember::chat
