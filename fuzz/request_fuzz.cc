// libFuzzer target: arbitrary bytes as the body of POST /v1/completions, /v1/chat/completions,
// /v1/responses, /v1/embeddings and /tokenize, through the functions their handlers call
// (server/app.cc), and an accepted Responses request through its encoders (valid JSON whatever
// it holds). Each parser either
// accepts the body with every field inside the limits it promises (api/openai.h,
// engine/types.h) and equal to what an independent JSON parse of the body holds, or rejects it
// with kInvalidArgument, which ToHttpError turns into a 400 carrying OpenAI's error envelope.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "api/embeddings.h"
#include "api/openai.h"
#include "api/responses.h"
#include "api/tokenize.h"
#include "fuzz/fuzz_util.h"

namespace ember::fuzz {
namespace {

using api::Endpoint;
using api::GenerationParams;

// An error message quotes at most a short piece of the body; a client that sends megabytes
// does not get them echoed back.
constexpr std::size_t kMaxMessageBytes = 1024;

void CheckRejected(const Error& error) {
  FUZZ_CHECK(error.code == ErrorCode::kInvalidArgument, "code %d", static_cast<int>(error.code));
  FUZZ_CHECK(!error.message.empty(), "param '%s'", error.param.c_str());
  FUZZ_CHECK(error.message.size() <= kMaxMessageBytes, "%zu bytes: %.200s...", error.message.size(),
             error.message.c_str());
  const api::HttpError http = api::ToHttpError(error);
  FUZZ_CHECK(http.status == 400, "status %d", http.status);
  const auto doc = ParseStrict(http.body);
  FUZZ_CHECK(doc && doc->is_object() && doc->size() == 1, "body %s", http.body.c_str());
  const Json e = Member(*doc, "error");
  FUZZ_CHECK(e.is_object() && e.size() == 4, "body %s", http.body.c_str());
  FUZZ_CHECK(Member(e, "message") == ReferenceRepair(error.message), "body %s", http.body.c_str());
  FUZZ_CHECK(Member(e, "type") == "invalid_request_error", "body %s", http.body.c_str());
  FUZZ_CHECK(Member(e, "code") == "invalid_value", "body %s", http.body.c_str());
  const Json param = Member(e, "param");
  FUZZ_CHECK(error.param.empty() ? param.is_null() : param == ReferenceRepair(error.param),
             "body %s", http.body.c_str());
}

bool InRange(float v, float lo, float hi) { return v >= lo && v <= hi; }

void CheckStrings(const GenerationParams& p) {
  FUZZ_CHECK(IsValidUtf8(p.model), "model");
  for (const std::string& s : p.stop) FUZZ_CHECK(IsValidUtf8(s), "stop");
  for (const engine::ChatMessage& m : p.messages) FUZZ_CHECK(IsValidUtf8(m.content), "content");
  if (const auto* text = std::get_if<std::string>(&p.prompt)) {
    FUZZ_CHECK(IsValidUtf8(*text), "prompt");
  }
}

void CheckLimits(const GenerationParams& p) {
  if (p.max_tokens) {
    FUZZ_CHECK(*p.max_tokens >= 1 && *p.max_tokens <= 1'000'000, "max_tokens %d", *p.max_tokens);
  }
  const engine::SamplingParams& s = p.sampling;
  FUZZ_CHECK(InRange(s.temperature, 0, 2), "temperature %g", s.temperature);
  FUZZ_CHECK(s.top_p > 0 && s.top_p <= 1, "top_p %g", s.top_p);
  FUZZ_CHECK(s.top_k >= 0, "top_k %d", s.top_k);
  FUZZ_CHECK(InRange(s.min_p, 0, 1), "min_p %g", s.min_p);
  const int max_top = p.endpoint == Endpoint::kChatCompletions ? engine::kMaxTopLogprobs : 5;
  FUZZ_CHECK(s.top_logprobs >= 0 && s.top_logprobs <= max_top, "top_logprobs %d", s.top_logprobs);
  FUZZ_CHECK(s.logprobs || s.top_logprobs == 0, "top_logprobs without logprobs");
  FUZZ_CHECK(InRange(s.presence_penalty, -2, 2), "presence_penalty %g", s.presence_penalty);
  FUZZ_CHECK(InRange(s.frequency_penalty, -2, 2), "frequency_penalty %g", s.frequency_penalty);
  FUZZ_CHECK(p.stop.size() <= 4, "%zu stop strings", p.stop.size());
  for (const std::string& stop : p.stop) FUZZ_CHECK(!stop.empty(), "empty stop string");
  FUZZ_CHECK(p.stream || !p.include_usage, "include_usage without stream");
  // A deterministic request is greedy or seeded: otherwise its output could not repeat.
  FUZZ_CHECK(!s.deterministic || s.temperature == 0 || s.seed.has_value(),
             "deterministic sampling without a seed");
}

// What the parser accepted agrees with nlohmann's own reading of the body.
void CheckAgreesWithBody(const GenerationParams& p, const Json& body) {
  const Json model = Member(body, "model");
  FUZZ_CHECK(p.model == (model.is_string() ? model.get<std::string>() : ""), "model");
  FUZZ_CHECK(p.stream == (Member(body, "stream") == true), "stream");
  FUZZ_CHECK(p.sampling.deterministic == (Member(body, "deterministic") == true), "deterministic");
  // The Responses API has no "logprobs" member (its top_logprobs must be 0): ignored there like
  // any other member it does not define.
  const Json logprobs = Member(body, "logprobs");
  FUZZ_CHECK(
      p.sampling.logprobs == (p.endpoint == Endpoint::kChatCompletions ? logprobs == true
                              : p.endpoint == Endpoint::kCompletions ? logprobs.is_number_integer()
                                                                     : false),
      "logprobs");
  // The Responses API has no stop sequences: a "stop" member there is ignored like any other
  // member it does not define.
  const Json stop = Member(body, "stop");
  const std::size_t stops = p.endpoint == Endpoint::kResponses ? 0
                            : stop.is_string()                 ? 1
                                                               : stop.size();
  FUZZ_CHECK(p.stop.size() == stops, "stop count");
  const char* max_key =
      p.endpoint == Endpoint::kResponses ? "max_output_tokens"
      : p.endpoint == Endpoint::kChatCompletions && !Member(body, "max_completion_tokens").is_null()
          ? "max_completion_tokens"
          : "max_tokens";
  const Json max_tokens = Member(body, max_key);
  FUZZ_CHECK(max_tokens.is_null() ? !p.max_tokens : p.max_tokens == max_tokens.get<int>(),
             "max_tokens");
}

// Whatever an accepted Responses request holds (instructions, metadata, tools), its Response
// object and every event of its stream are valid JSON.
void CheckResponseEncodings(const GenerationParams& p) {
  const api::ResponseMeta meta{.id = "resp-fuzz",
                               .created = 1,
                               .model = p.model,
                               .system_fingerprint = {},
                               .cold_start_seconds = {}};
  api::ResponsesEncoder encoder(p, meta);
  const api::ResponseOutput output{p.model, {}};
  const auto whole = ParseStrict(encoder.Whole(output, engine::FinishReason::kStop, {}));
  FUZZ_CHECK(whole && whole->is_object(), "Response object");
  std::string stream = encoder.Start();
  stream += encoder.TextDelta(p.model);
  stream += encoder.Finish(output, engine::FinishReason::kLength, {});
  std::size_t at = 0;
  while (at < stream.size()) {
    const std::size_t data = stream.find("\ndata: ", at);
    const std::size_t end = stream.find("\n\n", at);
    FUZZ_CHECK(data != std::string::npos && end != std::string::npos && data < end, "frame");
    const auto event = ParseStrict(stream.substr(data + 7, end - data - 7));
    FUZZ_CHECK(event && event->is_object(), "event %.200s", stream.c_str() + at);
    at = end + 2;
  }
}

void CheckAccepted(const GenerationParams& p, Endpoint endpoint, std::string_view body) {
  FUZZ_CHECK(p.endpoint == endpoint, "endpoint");
  CheckLimits(p);
  CheckStrings(p);
  const auto doc = ParseStrict(body);
  FUZZ_CHECK(doc && doc->is_object(), "accepted a body that is not a JSON object");
  CheckAgreesWithBody(p, *doc);
  if (endpoint == Endpoint::kResponses) {
    const Json input = Member(*doc, "input");
    const std::size_t instructions = Member(*doc, "instructions").is_null() ? 0 : 1;
    // Function calls join the assistant message before them: at most one message per item.
    FUZZ_CHECK(!p.messages.empty() &&
                   p.messages.size() <= instructions + (input.is_string() ? 1 : input.size()),
               "message count");
    CheckResponseEncodings(p);
    return;
  }
  if (endpoint == Endpoint::kChatCompletions) {
    FUZZ_CHECK(!p.messages.empty(), "no messages");
    FUZZ_CHECK(p.messages.size() == Member(*doc, "messages").size(), "message count");
    for (const engine::ChatMessage& m : p.messages) {
      FUZZ_CHECK(
          m.role == "system" || m.role == "user" || m.role == "assistant" || m.role == "tool",
          "role %s", m.role.c_str());
    }
    return;
  }
  FUZZ_CHECK(p.messages.empty(), "completion with messages");
  if (const auto* tokens = std::get_if<std::vector<engine::Token>>(&p.prompt)) {
    FUZZ_CHECK(!tokens->empty(), "empty token prompt");
    for (engine::Token t : *tokens) FUZZ_CHECK(t >= 0, "token %d", t);
  }
}

void CheckTokenize(std::string_view body) {
  auto params = api::ParseTokenizeRequest(body);
  if (!params) return CheckRejected(params.error());
  const auto doc = ParseStrict(body);
  FUZZ_CHECK(doc && doc->is_object(), "accepted a body that is not a JSON object");
  FUZZ_CHECK(Member(*doc, "content") == params->content, "content");
  FUZZ_CHECK(params->add_special == (Member(*doc, "add_special") != false), "add_special");
}

// An accepted embeddings body holds 1..2048 inputs, none empty, with valid token ids and
// UTF-8 text, in the body's order; `dimensions` is positive.
void CheckEmbeddings(std::string_view body) {
  auto params = api::ParseEmbeddingRequest(body);
  if (!params) return CheckRejected(params.error());
  const auto doc = ParseStrict(body);
  FUZZ_CHECK(doc && doc->is_object(), "accepted a body that is not a JSON object");
  const Json model = Member(*doc, "model");
  FUZZ_CHECK(params->model == (model.is_string() ? model.get<std::string>() : ""), "model");
  FUZZ_CHECK(!params->inputs.empty() && params->inputs.size() <= api::kMaxEmbeddingInputs,
             "%zu inputs", params->inputs.size());
  const Json input = Member(*doc, "input");
  const bool one = input.is_string() || (input.is_array() && input.front().is_number());
  FUZZ_CHECK(params->inputs.size() == (one ? 1 : input.size()), "input count");
  for (const api::EmbeddingInput& in : params->inputs) {
    if (const auto* text = std::get_if<std::string>(&in)) {
      FUZZ_CHECK(!text->empty() && IsValidUtf8(*text), "input text");
    } else {
      const auto& tokens = std::get<std::vector<engine::Token>>(in);
      FUZZ_CHECK(!tokens.empty(), "empty token input");
      for (engine::Token t : tokens) FUZZ_CHECK(t >= 0, "token %d", t);
    }
  }
  FUZZ_CHECK(!params->dimensions || *params->dimensions >= 1, "dimensions");
  const Json format = Member(*doc, "encoding_format");
  FUZZ_CHECK((params->format == api::EmbeddingFormat::kBase64) == (format == "base64"), "format");
}

}  // namespace
}  // namespace ember::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ember;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (const api::Endpoint endpoint :
       {api::Endpoint::kCompletions, api::Endpoint::kChatCompletions, api::Endpoint::kResponses}) {
    auto params = endpoint == api::Endpoint::kCompletions       ? api::ParseCompletionRequest(body)
                  : endpoint == api::Endpoint::kChatCompletions ? api::ParseChatRequest(body)
                                                                : api::ParseResponsesRequest(body);
    if (params) {
      fuzz::CheckAccepted(*params, endpoint, body);
    } else {
      fuzz::CheckRejected(params.error());
    }
  }
  fuzz::CheckTokenize(body);
  fuzz::CheckEmbeddings(body);
  return 0;
}
