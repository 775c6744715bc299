// Tests of ChatOutput, the reading of one choice's output as reasoning, content and tool calls,
// with real templates from the pinned llama.cpp source: what a stream sends adds up to what the
// end reads, and the call ids of a response's choices never repeat.
#include "server/chat_templates.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace ember::server {
namespace {

chat::OutputParser ParserFor(const std::string& template_name) {
  std::ifstream in(std::string(EMBER_LLAMA_TEMPLATES_DIR) + "/" + template_name);
  std::stringstream text;
  text << in.rdbuf();
  auto tmpl = chat::ChatTemplate::Create(text.str(), "<s>", "</s>");
  EXPECT_TRUE(tmpl.has_value()) << template_name;
  if (!tmpl) return {};
  chat::RenderRequest request;
  request.messages = {{"user", "Weather in Paris?", {}, ""}};
  request.tools = {{"get_weather", "The weather now",
                    R"({"type":"object","properties":{"city":{"type":"string"}}})", false}};
  auto rendered = (*tmpl)->Render(request);
  EXPECT_TRUE(rendered.has_value()) << rendered.error().message;
  return rendered ? rendered->parser : chat::OutputParser{};
}

// Mistral Nemo's format carries the model's own call ids.
constexpr char kNemoCall[] =
    R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}])";

TEST(ChatOutputTest, StreamedFragmentsAddUpToTheFinalCall) {
  ChatOutput output(ParserFor("mistralai-Mistral-Nemo-Instruct-2407.jinja"));
  const std::string text = kNemoCall;
  std::string arguments;
  std::string id;
  for (std::size_t at = 0; at < text.size(); at += 5) {
    ChatOutput::Update update = output.Add(text.substr(at, 5));
    EXPECT_EQ(update.content, "") << "no call text leaks into content";
    for (const api::ToolCallFragment& f : update.calls) {
      if (!f.name.empty()) id = f.id;
      arguments += f.arguments;
    }
  }
  ChatOutput::Final final = output.Finish();
  for (const api::ToolCallFragment& f : final.rest.calls) arguments += f.arguments;
  ASSERT_EQ(final.calls.size(), 1u);
  // The call was announced (its name) before the model wrote its id: the announced id stays.
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(final.calls[0].id, id);
  EXPECT_EQ(final.calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(arguments, final.calls[0].arguments);
}

TEST(ChatOutputTest, ChoicesOfOneResponseNeverShareACallId) {
  const chat::OutputParser parser = ParserFor("mistralai-Mistral-Nemo-Instruct-2407.jinja");
  auto ids = std::make_shared<CallIds>();
  // Three choices that wrote the same call, model id and all: one streamed, two read whole.
  ChatOutput streamed(parser, ids);
  ChatOutput second(parser, ids);
  ChatOutput third(parser, ids);
  std::string announced;
  for (const api::ToolCallFragment& f : streamed.Add(kNemoCall).calls) {
    if (!f.name.empty()) announced = f.id;
  }
  second.Append(kNemoCall);
  third.Append(kNemoCall);
  const ChatOutput::Final a = streamed.Finish();
  const ChatOutput::Final b = second.Finish();
  const ChatOutput::Final c = third.Finish();
  ASSERT_EQ(a.calls.size(), 1u);
  ASSERT_EQ(b.calls.size(), 1u);
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(a.calls[0].id, "abc123def") << "the first keeps the model's id";
  EXPECT_EQ(a.calls[0].id, announced) << "the id a stream announced is the final one";
  EXPECT_TRUE(b.calls[0].id.starts_with("call_")) << b.calls[0].id;
  EXPECT_TRUE(c.calls[0].id.starts_with("call_")) << c.calls[0].id;
  EXPECT_NE(b.calls[0].id, c.calls[0].id);
  EXPECT_EQ(b.calls[0].arguments, a.calls[0].arguments);
  // Outputs that do not share the set keep the model's id: separate responses.
  ChatOutput alone(parser);
  alone.Append(kNemoCall);
  EXPECT_EQ(alone.Finish().calls.at(0).id, "abc123def");
}

TEST(ChatOutputTest, EachChoiceIsReadApart) {
  const chat::OutputParser parser = ParserFor("Qwen-Qwen2.5-7B-Instruct.jinja");
  auto ids = std::make_shared<CallIds>();
  ChatOutput calls(parser, ids);
  ChatOutput talks(parser, ids);
  calls.Append("<tool_call>\n{\"name\": \"get_weather\", ");
  talks.Append("It is sunny");
  calls.Append("\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
  talks.Append(" in Paris.");
  const ChatOutput::Final call = calls.Finish();
  const ChatOutput::Final text = talks.Finish();
  ASSERT_EQ(call.calls.size(), 1u);
  EXPECT_EQ(call.calls[0].name, "get_weather");
  EXPECT_EQ(call.content, "");
  EXPECT_TRUE(text.calls.empty());
  EXPECT_EQ(text.content, "It is sunny in Paris.");
}

TEST(ChatOutputTest, ReasoningStreamsApartFromTheContent) {
  // Qwen3's template: a reasoning block, read without tools too.
  std::ifstream in(std::string(EMBER_LLAMA_TEMPLATES_DIR) + "/Qwen-Qwen3-0.6B.jinja");
  std::stringstream source;
  source << in.rdbuf();
  auto tmpl = chat::ChatTemplate::Create(source.str(), "", "<|im_end|>");
  ASSERT_TRUE(tmpl.has_value());
  chat::RenderRequest request;
  request.messages = {{"user", "Hi", {}, ""}};
  auto rendered = (*tmpl)->Render(request);
  ASSERT_TRUE(rendered.has_value());
  ASSERT_TRUE(rendered->reasoning);
  ChatOutput output(rendered->parser);
  const std::string text = "<think>\nSomeone greets me.\n</think>\n\nHello there!";
  std::string reasoning, content;
  for (std::size_t at = 0; at < text.size(); at += 3) {
    ChatOutput::Update update = output.Add(text.substr(at, 3));
    EXPECT_EQ(update.content.find("<think>"), std::string::npos);
    EXPECT_EQ(update.reasoning.find("</think>"), std::string::npos) << update.reasoning;
    reasoning += update.reasoning;
    content += update.content;
  }
  ChatOutput::Final final = output.Finish();
  reasoning += final.rest.reasoning;
  content += final.rest.content;
  EXPECT_EQ(final.reasoning, "Someone greets me.\n");
  EXPECT_EQ(final.content, "Hello there!");
  EXPECT_TRUE(final.calls.empty());
  EXPECT_EQ(reasoning, final.reasoning);
  EXPECT_EQ(content, final.content);
}

}  // namespace
}  // namespace ember::server
