// Tests of the Responses API: requests into chat messages and settings, each mistake a 400
// naming the field, and the Response object and its event stream in OpenAI's shapes.
#include "api/responses.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ember::api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

GenerationParams ParseOk(std::string_view body) {
  auto result = ParseResponsesRequest(body);
  EXPECT_TRUE(result.has_value()) << body << " -> " << (result ? "" : result.error().message);
  return result ? *result : GenerationParams{};
}

TEST(ParseResponsesTest, StringInputIsOneUserMessageAfterTheInstructions) {
  const GenerationParams p = ParseOk(
      R"({"model":"m","instructions":"Be brief.","input":"Hi","max_output_tokens":20,
          "temperature":0.5,"stream":true,"store":true,"metadata":{"team":"search"},"user":"u1"})");
  EXPECT_EQ(p.endpoint, Endpoint::kResponses);
  EXPECT_EQ(p.model, "m");
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[0].content, "Be brief.");
  EXPECT_EQ(p.messages[1].role, "user");
  EXPECT_EQ(p.messages[1].content, "Hi");
  EXPECT_EQ(p.max_tokens, 20);
  EXPECT_FLOAT_EQ(p.sampling.temperature, 0.5f);
  EXPECT_TRUE(p.stream);
  EXPECT_EQ(p.responses.instructions, "Be brief.");
  EXPECT_EQ(p.responses.metadata, R"({"team":"search"})");
  EXPECT_EQ(p.responses.user, "u1");
}

TEST(ParseResponsesTest, ItemsBecomeMessagesInOrder) {
  const GenerationParams p = ParseOk(R"({"input":[
      {"role":"developer","content":"Rules"},
      {"type":"message","role":"user","content":[{"type":"input_text","text":"a"},
                                                {"type":"input_text","text":"b"}]},
      {"role":"assistant","content":[{"type":"output_text","text":"c"}]},
      {"role":"user","content":"d"}]})");
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[1].content, "ab");
  EXPECT_EQ(p.messages[2].role, "assistant");
  EXPECT_EQ(p.messages[2].content, "c");
  EXPECT_EQ(p.messages[3].content, "d");
}

TEST(ParseResponsesTest, ToolsAndFormatAreReadInTheirFlatForm) {
  auto bad_choice = ParseResponsesRequest(
      R"({"input":"x","tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],
          "tool_choice":{"type":"function","name":"g"}})");
  ASSERT_FALSE(bad_choice);
  EXPECT_EQ(bad_choice.error().param, "tool_choice.name");
  const GenerationParams p = ParseOk(
      R"({"input":"x","tools":[{"type":"function","name":"f","description":"d",
          "parameters":{"type":"object"},"strict":true}],
          "tool_choice":{"type":"function","name":"f"},"parallel_tool_calls":false,
          "text":{"format":{"type":"json_schema","name":"p","schema":{"type":"object"}}}})");
  ASSERT_EQ(p.tools.size(), 1u);
  EXPECT_EQ(p.tools[0].name, "f");
  EXPECT_EQ(p.tools[0].description, "d");
  EXPECT_TRUE(p.tools[0].strict);
  EXPECT_EQ(p.tool_choice.mode, ToolChoice::Mode::kNamed);
  EXPECT_FALSE(p.parallel_tool_calls);
  EXPECT_EQ(p.response_format.type, ResponseFormat::Type::kJsonSchema);
  EXPECT_EQ(p.response_format.name, "p");
  EXPECT_EQ(p.response_format.schema, R"({"type":"object"})");
  auto bad_format =
      ParseResponsesRequest(R"({"input":"x","text":{"format":{"type":"json_schema"}}})");
  ASSERT_FALSE(bad_format);
  EXPECT_EQ(bad_format.error().param, "text.format.name");
}

TEST(ParseResponsesTest, ReasoningItemsSentBackAreAcceptedAndDropped) {
  const GenerationParams p = ParseOk(R"({"input":[
      {"role":"user","content":"Hi"},
      {"type":"reasoning","id":"rs-1","summary":[],
       "content":[{"type":"reasoning_text","text":"A greeting."}]},
      {"role":"assistant","content":[{"type":"output_text","text":"Hello!"}]},
      {"role":"user","content":"Bye"}]})");
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_EQ(p.messages[1].role, "assistant");
  EXPECT_EQ(p.messages[1].content, "Hello!");
}

TEST(ParseResponsesTest, FunctionCallItemsBecomeTheAssistantsCallsAndToolMessages) {
  const GenerationParams p = ParseOk(R"({"input":[
      {"role":"user","content":"Weather in Paris and Rome?"},
      {"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
      {"type":"function_call","call_id":"c2","name":"get_weather","arguments":"{\"city\":\"Rome\"}"},
      {"type":"function_call_output","call_id":"c1","output":"18C"},
      {"type":"function_call_output","call_id":"c2","output":"21C"}]})");
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_EQ(p.messages[1].role, "assistant");
  ASSERT_EQ(p.messages[1].tool_calls.size(), 2u);
  EXPECT_EQ(p.messages[1].tool_calls[1].id, "c2");
  EXPECT_EQ(p.messages[1].tool_calls[1].arguments, R"({"city":"Rome"})");
  EXPECT_EQ(p.messages[2].role, "tool");
  EXPECT_EQ(p.messages[2].tool_call_id, "c1");
  EXPECT_EQ(p.messages[3].content, "21C");
}

struct RejectCase {
  std::string body;
  std::string param;
  std::string message_part;
};

void PrintTo(const RejectCase& c, std::ostream* os) { *os << c.body; }

class ResponsesRejectTest : public ::testing::TestWithParam<RejectCase> {};

TEST_P(ResponsesRejectTest, NamesTheFieldAndSaysWhy) {
  auto result = ParseResponsesRequest(GetParam().body);
  ASSERT_FALSE(result.has_value()) << "accepted: " << GetParam().body;
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(result.error().param, GetParam().param);
  EXPECT_THAT(result.error().message, HasSubstr(GetParam().message_part));
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ResponsesRejectTest,
    ::testing::Values(
        RejectCase{R"({})", "input", "input is required"},
        RejectCase{R"({"input":[]})", "input", "non-empty array"},
        RejectCase{R"({"input":5})", "input", "got 5"},
        RejectCase{R"({"input":[{"role":"user"}]})", "input[0].content", "is required"},
        RejectCase{R"({"input":[{"role":"robot","content":"x"}]})", "input[0].role", "got 'robot'"},
        RejectCase{R"({"input":[{"role":"user","content":[{"type":"input_image"}]}]})",
                   "input[0].content[0].type", "got 'input_image'"},
        RejectCase{R"({"input":[{"type":"function_call_output","output":"1"}]})",
                   "input[0].call_id", "is required"},
        RejectCase{
            R"({"input":[{"type":"function_call","call_id":"c","name":"f","arguments":"[1]"}]})",
            "input[0].arguments", "JSON text of an object"},
        RejectCase{R"({"input":[{"type":"file_search_call"}]})", "input[0].type",
                   "got 'file_search_call'"},
        RejectCase{R"({"input":"x","instructions":1})", "instructions", "must be a string"},
        RejectCase{R"({"input":"x","max_output_tokens":0})", "max_output_tokens", "between 1 and"},
        RejectCase{R"({"input":"x","previous_response_id":"resp_1"})", "previous_response_id",
                   "keeps no responses"},
        RejectCase{R"({"input":"x","conversation":"conv_1"})", "conversation",
                   "keeps no conversations"},
        RejectCase{R"({"input":"x","background":true})", "background", "not supported"},
        RejectCase{R"({"input":"x","truncation":"auto"})", "truncation", "never drops input"},
        RejectCase{R"({"input":"x","include":["reasoning.encrypted_content"]})", "include",
                   "not supported"},
        RejectCase{R"({"input":"x","reasoning":{"effort":"high"}})", "reasoning",
                   "no reasoning settings"},
        RejectCase{R"({"input":"x","metadata":{"k":1}})", "metadata", "values strings"},
        RejectCase{R"({"input":"x","store":"yes"})", "store", "true or false"},
        RejectCase{R"({"input":"x","text":{"format":{"type":"yaml"}}})", "text.format.type",
                   "got 'yaml'"},
        RejectCase{R"({"input":"x","text":{"verbosity":"low"}})", "text.verbosity",
                   "not supported"},
        RejectCase{R"({"input":"x","tools":[{"type":"web_search"}]})", "tools[0].type",
                   "function tools are the only ones served"},
        RejectCase{R"({"input":"x","temperature":3})", "temperature", "between 0 and 2"}));

const ResponseMeta kMeta{.id = "resp_abc",
                         .created = 1700000000,
                         .model = "stories",
                         .system_fingerprint = {},
                         .cold_start_seconds = {}};

GenerationParams Params() {
  GenerationParams p = ParseOk(R"({"input":"Hi","instructions":"Be brief.","max_output_tokens":8,
                                   "temperature":0.7,"metadata":{"k":"v"}})");
  return p;
}

TEST(ResponsesEncoderTest, WholeResponseHasOpenAIsShape) {
  const ResponsesEncoder encoder(Params(), kMeta);
  engine::Usage usage;
  usage.prompt_tokens = 5;
  usage.completion_tokens = 3;
  usage.cached_tokens = 1;
  const Json r = Json::parse(encoder.Whole({"Hello!", {}}, engine::FinishReason::kStop, usage));
  EXPECT_EQ(r["id"], "resp_abc");
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["created_at"], 1700000000);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_TRUE(r["incomplete_details"].is_null());
  EXPECT_EQ(r["model"], "stories");
  EXPECT_EQ(r["instructions"], "Be brief.");
  EXPECT_EQ(r["max_output_tokens"], 8);
  EXPECT_EQ(r["temperature"].dump(), "0.7");
  EXPECT_EQ(r["metadata"], Json({{"k", "v"}}));
  EXPECT_EQ(r["store"], false);
  EXPECT_EQ(r["text"]["format"]["type"], "text");
  EXPECT_EQ(r["tool_choice"], "auto");
  ASSERT_EQ(r["output"].size(), 1u);
  const Json& item = r["output"][0];
  EXPECT_EQ(item["type"], "message");
  EXPECT_EQ(item["role"], "assistant");
  EXPECT_EQ(item["status"], "completed");
  EXPECT_THAT(item["id"].get<std::string>(), ::testing::StartsWith("msg-"));
  ASSERT_EQ(item["content"].size(), 1u);
  EXPECT_EQ(item["content"][0]["type"], "output_text");
  EXPECT_EQ(item["content"][0]["text"], "Hello!");
  EXPECT_EQ(item["content"][0]["annotations"], Json::array());
  EXPECT_EQ(r["usage"]["input_tokens"], 5);
  EXPECT_EQ(r["usage"]["input_tokens_details"]["cached_tokens"], 1);
  EXPECT_EQ(r["usage"]["output_tokens"], 3);
  EXPECT_EQ(r["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
  EXPECT_EQ(r["usage"]["total_tokens"], 8);
}

TEST(ResponsesEncoderTest, CutByTheLimitIsIncomplete) {
  const ResponsesEncoder encoder(Params(), kMeta);
  const Json r = Json::parse(encoder.Whole({"Hel", {}}, engine::FinishReason::kLength, {}));
  EXPECT_EQ(r["status"], "incomplete");
  EXPECT_EQ(r["incomplete_details"]["reason"], "max_output_tokens");
}

struct Event {
  std::string name;  // the SSE "event:" line
  Json data;
};

// Splits a stream into its events, checking each frame's form.
std::vector<Event> Events(const std::string& stream) {
  std::vector<Event> events;
  std::size_t at = 0;
  while (at < stream.size()) {
    const std::size_t end = stream.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "a frame ends with a blank line";
    if (end == std::string::npos) break;
    const std::string frame = stream.substr(at, end - at);
    at = end + 2;
    EXPECT_TRUE(frame.starts_with("event: ")) << frame;
    const std::size_t newline = frame.find('\n');
    Event e{frame.substr(7, newline - 7), {}};
    EXPECT_TRUE(frame.compare(newline + 1, 6, "data: ") == 0) << frame;
    e.data = Json::parse(frame.substr(newline + 7));
    EXPECT_EQ(e.data["type"], e.name);
    events.push_back(std::move(e));
  }
  return events;
}

std::vector<std::string> Names(const std::vector<Event>& events) {
  std::vector<std::string> names;
  for (const Event& e : events) names.push_back(e.name);
  return names;
}

TEST(ResponsesEncoderTest, StreamIsOpenAIsEventSequence) {
  ResponsesEncoder encoder(Params(), kMeta);
  std::string stream = encoder.Start();
  stream += encoder.TextDelta("Hel");
  stream += encoder.TextDelta("lo");
  engine::Usage usage;
  usage.prompt_tokens = 5;
  usage.completion_tokens = 2;
  stream += encoder.Finish({"Hello", {}}, engine::FinishReason::kStop, usage);
  const std::vector<Event> events = Events(stream);
  EXPECT_THAT(
      Names(events),
      ElementsAre("response.created", "response.in_progress", "response.output_item.added",
                  "response.content_part.added", "response.output_text.delta",
                  "response.output_text.delta", "response.output_text.done",
                  "response.content_part.done", "response.output_item.done", "response.completed"));
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].data["sequence_number"], i) << events[i].name;
  }
  EXPECT_EQ(events[0].data["response"]["status"], "in_progress");
  EXPECT_EQ(events[0].data["response"]["output"], Json::array());
  const std::string item_id = events[2].data["item"]["id"];
  EXPECT_EQ(events[4].data["item_id"], item_id);
  EXPECT_EQ(events[4].data["delta"], "Hel");
  EXPECT_EQ(events[5].data["delta"], "lo");
  EXPECT_EQ(events[6].data["text"], "Hello");
  EXPECT_EQ(events[8].data["item"]["content"][0]["text"], "Hello");
  const Json& done = events[9].data["response"];
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["output"][0]["id"], item_id);
  EXPECT_EQ(done["usage"]["output_tokens"], 2);
}

TEST(ResponsesEncoderTest, AnAnswerWithNoTextStillHasItsMessageAndEndsIncompleteWhenCut) {
  ResponsesEncoder encoder(Params(), kMeta);
  const std::vector<Event> events =
      Events(encoder.Start() + encoder.Finish({"", {}}, engine::FinishReason::kLength, {}));
  EXPECT_THAT(Names(events),
              ElementsAre("response.created", "response.in_progress", "response.output_item.added",
                          "response.content_part.added", "response.output_text.done",
                          "response.content_part.done", "response.output_item.done",
                          "response.incomplete"));
  EXPECT_EQ(events.back().data["response"]["incomplete_details"]["reason"], "max_output_tokens");
}

TEST(ResponsesEncoderTest, FunctionCallsAreItemsWithArgumentEvents) {
  ResponsesEncoder encoder(Params(), kMeta);
  const engine::ToolCall call{"call_1", "get_weather", R"({"city":"Paris"})"};
  const std::vector<Event> events =
      Events(encoder.Start() + encoder.Finish({"", {call}}, engine::FinishReason::kStop, {}));
  EXPECT_THAT(
      Names(events),
      ElementsAre("response.created", "response.in_progress", "response.output_item.added",
                  "response.function_call_arguments.delta", "response.function_call_arguments.done",
                  "response.output_item.done", "response.completed"));
  EXPECT_EQ(events[2].data["item"]["type"], "function_call");
  EXPECT_EQ(events[3].data["delta"], R"({"city":"Paris"})");
  const Json& item = events.back().data["response"]["output"][0];
  EXPECT_EQ(item["call_id"], "call_1");
  EXPECT_EQ(item["name"], "get_weather");
  EXPECT_EQ(item["arguments"], R"({"city":"Paris"})");
}

// A model whose format carries call ids writes them: a quote or a newline in one must neither
// end the JSON string nor the SSE frame (found by fuzz_responses).
TEST(ResponsesEncoderTest, ACallIdOfAnyBytesIsEscapedInTheArgumentEvents) {
  ResponsesEncoder encoder(Params(), kMeta);
  const engine::ToolCall call{"call_\"1\"\nx", "f", "{}"};
  const std::vector<Event> events =
      Events(encoder.Start() + encoder.Finish({"", {call}}, engine::FinishReason::kStop, {}));
  ASSERT_EQ(events.size(), 7u);
  const Json item_id = events[2].data["item"]["id"];
  EXPECT_EQ(item_id, "fc_call_\"1\"\nx");
  EXPECT_EQ(events[3].data["item_id"], item_id);
  EXPECT_EQ(events[4].data["item_id"], item_id);
  EXPECT_EQ(events.back().data["response"]["output"][0]["call_id"], "call_\"1\"\nx");
}

// With tools a stream holds back text that might begin a call; when it turns out to be
// content, Finish has it and no delta yet. A client joining the deltas must still get it all
// (found by fuzz_responses).
TEST(ResponsesEncoderTest, TextNotYetStreamedGoesOutAsOneMoreDeltaBeforeTheTextCloses) {
  ResponsesEncoder encoder(Params(), kMeta);
  std::string stream = encoder.Start() + encoder.TextDelta("Hello ");
  const engine::ToolCall call{"call_1", "f", "{}"};
  stream += encoder.Finish({"Hello <world>", {call}}, engine::FinishReason::kStop, {});
  const std::vector<Event> events = Events(stream);
  ASSERT_EQ(events.size(), 14u);
  EXPECT_EQ(events[4].data["delta"], "Hello ");
  EXPECT_EQ(events[5].name, "response.output_text.delta");
  EXPECT_EQ(events[5].data["delta"], "<world>");
  EXPECT_EQ(events[6].name, "response.output_text.done");
  EXPECT_EQ(events[6].data["text"], "Hello <world>");
}

// Every event's output_index names the item of the final Response's output it is about, and
// sequence numbers count up from 0 with no gap.
void ExpectConsistent(const std::vector<Event>& events) {
  ASSERT_FALSE(events.empty());
  const Json& output = events.back().data["response"]["output"];
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Json& e = events[i].data;
    EXPECT_EQ(e["sequence_number"], i) << events[i].name;
    if (!e.contains("output_index")) continue;
    const std::size_t index = e["output_index"];
    ASSERT_LT(index, output.size()) << e.dump();
    const Json& id = e.contains("item_id") ? e["item_id"] : e["item"]["id"];
    EXPECT_EQ(output[index]["id"], id) << e.dump();
  }
}

std::string ArgumentDeltas(const std::vector<Event>& events, int output_index) {
  std::string arguments;
  for (const Event& e : events) {
    if (e.name == "response.function_call_arguments.delta" &&
        e.data["output_index"] == output_index) {
      arguments += e.data["delta"];
    }
  }
  return arguments;
}

TEST(ResponsesEncoderTest, ACallStreamsAsItFormsAfterTheTextBeforeIt) {
  ResponsesEncoder encoder(Params(), kMeta);
  const std::vector<ToolCallFragment> first{{0, "call_1", "get_weather", ""}};
  const std::vector<ToolCallFragment> second{{0, "", "", R"({"city")"}};
  const std::vector<ToolCallFragment> third{{0, "", "", R"(: "Paris"})"}};
  std::string stream = encoder.Start();
  stream += encoder.TextDelta("Let me check.");
  stream += encoder.CallFragments(first);
  stream += encoder.CallFragments(second);
  stream += encoder.CallFragments(third);
  const engine::ToolCall call{"call_1", "get_weather", R"({"city": "Paris"})"};
  stream += encoder.Finish({"Let me check.", {call}}, engine::FinishReason::kStop, {});
  const std::vector<Event> events = Events(stream);
  EXPECT_THAT(
      Names(events),
      ElementsAre("response.created", "response.in_progress", "response.output_item.added",
                  "response.content_part.added", "response.output_text.delta",
                  "response.output_text.done", "response.content_part.done",
                  "response.output_item.done", "response.output_item.added",
                  "response.function_call_arguments.delta",
                  "response.function_call_arguments.delta", "response.function_call_arguments.done",
                  "response.output_item.done", "response.completed"));
  ExpectConsistent(events);
  // The message is done (index 0) before the call's item is added (index 1).
  EXPECT_EQ(events[7].data["item"]["type"], "message");
  EXPECT_EQ(events[7].data["item"]["content"][0]["text"], "Let me check.");
  const Json& added = events[8].data;
  EXPECT_EQ(added["output_index"], 1);
  EXPECT_EQ(added["item"]["type"], "function_call");
  EXPECT_EQ(added["item"]["id"], "fc_call_1");
  EXPECT_EQ(added["item"]["call_id"], "call_1");
  EXPECT_EQ(added["item"]["name"], "get_weather");
  EXPECT_EQ(added["item"]["arguments"], "");
  EXPECT_EQ(added["item"]["status"], "in_progress");
  EXPECT_EQ(events[9].data["delta"], R"({"city")");
  EXPECT_EQ(events[10].data["delta"], R"(: "Paris"})");
  EXPECT_EQ(ArgumentDeltas(events, 1), call.arguments);
  EXPECT_EQ(events[11].data["arguments"], call.arguments);
  EXPECT_EQ(events[11].data["name"], "get_weather");
  EXPECT_EQ(events[12].data["item"]["status"], "completed");
  EXPECT_EQ(events[12].data["item"]["arguments"], call.arguments);
  const Json& output = events.back().data["response"]["output"];
  ASSERT_EQ(output.size(), 2u);
  EXPECT_EQ(output[0]["content"][0]["text"], "Let me check.");
  EXPECT_EQ(output[1]["arguments"], call.arguments);
  EXPECT_EQ(output[1]["status"], "completed");
}

TEST(ResponsesEncoderTest, ParallelCallsKeepTheirOwnIndexesAndCloseInOrder) {
  ResponsesEncoder encoder(Params(), kMeta);
  const std::vector<ToolCallFragment> both{{0, "call_a", "get_weather", R"({"city":)"},
                                           {1, "call_b", "get_time", R"({"tz":)"}};
  const std::vector<ToolCallFragment> rest{{1, "", "", R"("UTC"})"}, {0, "", "", R"("Rome"})"}};
  std::string stream = encoder.Start();
  stream += encoder.CallFragments(both);
  stream += encoder.CallFragments(rest);
  const engine::ToolCall a{"call_a", "get_weather", R"({"city":"Rome"})"};
  const engine::ToolCall b{"call_b", "get_time", R"({"tz":"UTC"})"};
  const std::vector<Event> events =
      Events(stream + encoder.Finish({"", {a, b}}, engine::FinishReason::kStop, {}));
  ExpectConsistent(events);
  EXPECT_EQ(ArgumentDeltas(events, 0), a.arguments);
  EXPECT_EQ(ArgumentDeltas(events, 1), b.arguments);
  std::vector<int> done;
  for (const Event& e : events) {
    if (e.name == "response.output_item.done") done.push_back(e.data["output_index"]);
  }
  EXPECT_THAT(done, ElementsAre(0, 1));
  const Json& output = events.back().data["response"]["output"];
  ASSERT_EQ(output.size(), 2u) << "no message item: the answer is its calls";
  EXPECT_EQ(output[0]["name"], "get_weather");
  EXPECT_EQ(output[1]["call_id"], "call_b");
  EXPECT_EQ(output[1]["arguments"], b.arguments);
}

TEST(ResponsesEncoderTest, ACallCutByTheLimitEndsIncompleteAndLaterTextIsANewMessage) {
  ResponsesEncoder encoder(Params(), kMeta);
  const std::vector<ToolCallFragment> start{{0, "call_1", "get_weather", R"({"ci)"}};
  std::string stream = encoder.Start();
  stream += encoder.CallFragments(start);
  // What the end reads as content instead (the call never closed).
  stream += encoder.TextDelta("<tool_call>");
  const std::vector<Event> events =
      Events(stream + encoder.Finish({"<tool_call>", {}}, engine::FinishReason::kLength, {}));
  ExpectConsistent(events);
  EXPECT_EQ(std::count_if(
                events.begin(), events.end(),
                [](const Event& e) { return e.name == "response.function_call_arguments.done"; }),
            0);
  const Json& response = events.back().data["response"];
  EXPECT_EQ(events.back().name, "response.incomplete");
  ASSERT_EQ(response["output"].size(), 2u);
  EXPECT_EQ(response["output"][0]["type"], "function_call");
  EXPECT_EQ(response["output"][0]["status"], "incomplete");
  EXPECT_EQ(response["output"][0]["arguments"], R"({"ci)");
  EXPECT_EQ(response["output"][1]["type"], "message");
  EXPECT_EQ(response["output"][1]["content"][0]["text"], "<tool_call>");
}

TEST(ResponsesEncoderTest, ReasoningIsAnItemOfItsOwnBeforeTheText) {
  ResponsesEncoder encoder(Params(), kMeta);
  std::string stream = encoder.Start();
  stream += encoder.ReasoningDelta("A greet");
  stream += encoder.ReasoningDelta("ing.");
  stream += encoder.TextDelta("Hello!");
  ResponseOutput output{"Hello!", {}, "A greeting."};
  const std::vector<Event> events =
      Events(stream + encoder.Finish(output, engine::FinishReason::kStop, {}));
  EXPECT_THAT(
      Names(events),
      ElementsAre("response.created", "response.in_progress", "response.output_item.added",
                  "response.content_part.added", "response.reasoning_text.delta",
                  "response.reasoning_text.delta", "response.reasoning_text.done",
                  "response.content_part.done", "response.output_item.done",
                  "response.output_item.added", "response.content_part.added",
                  "response.output_text.delta", "response.output_text.done",
                  "response.content_part.done", "response.output_item.done", "response.completed"));
  ExpectConsistent(events);
  EXPECT_EQ(events[2].data["item"]["type"], "reasoning");
  EXPECT_EQ(events[2].data["item"]["summary"], Json::array());
  EXPECT_EQ(events[3].data["part"]["type"], "reasoning_text");
  EXPECT_EQ(events[4].data["delta"], "A greet");
  EXPECT_EQ(events[6].data["text"], "A greeting.");
  const Json& output_items = events.back().data["response"]["output"];
  ASSERT_EQ(output_items.size(), 2u);
  EXPECT_EQ(output_items[0],
            Json({{"type", "reasoning"},
                  {"id", output_items[0]["id"]},
                  {"summary", Json::array()},
                  {"content", {{{"type", "reasoning_text"}, {"text", "A greeting."}}}},
                  {"status", "completed"}}));
  EXPECT_EQ(output_items[1]["content"][0]["text"], "Hello!");
  // The same answer whole: the reasoning item first, then the message.
  const Json whole = Json::parse(encoder.Whole(output, engine::FinishReason::kStop, {}));
  ASSERT_EQ(whole["output"].size(), 2u);
  EXPECT_EQ(whole["output"][0]["type"], "reasoning");
  EXPECT_EQ(whole["output"][0]["content"][0]["text"], "A greeting.");
  EXPECT_EQ(whole["output"][1]["type"], "message");
  // No reasoning, no reasoning item.
  const Json plain = Json::parse(encoder.Whole({"Hi", {}, ""}, engine::FinishReason::kStop, {}));
  ASSERT_EQ(plain["output"].size(), 1u);
  EXPECT_EQ(plain["output"][0]["type"], "message");
}

TEST(ResponsesEncoderTest, FailureIsAnErrorEventThenResponseFailed) {
  ResponsesEncoder encoder(Params(), kMeta);
  const Error error{ErrorCode::kInternal, "the engine failed", ""};
  const std::vector<Event> events = Events(encoder.Start() + encoder.Fail(error));
  EXPECT_THAT(Names(events),
              ElementsAre("response.created", "response.in_progress", "error", "response.failed"));
  EXPECT_EQ(events[2].data["message"], "the engine failed");
  EXPECT_EQ(events[3].data["response"]["status"], "failed");
  EXPECT_EQ(events[3].data["response"]["error"]["message"], "the engine failed");
  EXPECT_EQ(events[3].data["response"]["error"]["code"], "server_error");
  // The code follows the failure: a rate limit or the client's own mistake is not the server's.
  const auto code = [](const Error& e) {
    ResponsesEncoder encoder(Params(), kMeta);
    return Events(encoder.Start() + encoder.Fail(e))[3].data["response"]["error"]["code"];
  };
  EXPECT_EQ(code(Error{ErrorCode::kResourceExhausted, "slow down", ""}), "rate_limit_exceeded");
  EXPECT_EQ(code(Error{ErrorCode::kInvalidArgument, "prompt too long", "input"}), "invalid_prompt");
}

}  // namespace
}  // namespace ember::api
