// Request parsing shared by both endpoints, and ParseCompletionRequest (/v1/completions).
#include "api/request_parse.h"

#include <array>
#include <cstdint>
#include <limits>

#include "api/openai.h"

namespace ember::api {

namespace {

constexpr std::size_t kMaxStopStrings = 4;
constexpr std::int64_t kMaxCompletionLogprobs = 5;  // OpenAI's limit for the legacy endpoint
constexpr std::int64_t kMaxInt32 = std::numeric_limits<std::int32_t>::max();

bool IsFalse(const Json& value) { return value.is_boolean() && !value.get<bool>(); }
bool IsEmptyObject(const Json& value) { return value.is_object() && value.empty(); }
bool IsEmptyString(const Json& value) {
  return value.is_string() && value.get_ref<const std::string&>().empty();
}

constexpr UnsupportedField kCommonUnsupported[] = {
    {"logit_bias", IsEmptyObject, "logit_bias is not supported"},
};

constexpr UnsupportedField kCompletionUnsupported[] = {
    {"best_of", IsOne,
     "best_of must be 1: ember does not rank candidates server-side (n returns several choices)"},
    {"echo", IsFalse, "echo is not supported: the response never repeats the prompt"},
    {"suffix", IsEmptyString, "suffix is not supported: ember does not do fill-in-the-middle"},
};

Status ParseSeed(const Json& request, engine::SamplingParams& sampling) {
  const Json* seed = FindField(request, "seed");
  if (seed == nullptr) return {};
  if (seed->is_number_unsigned()) {
    sampling.seed = seed->get<std::uint64_t>();
  } else if (seed->is_number_integer()) {
    sampling.seed = static_cast<std::uint64_t>(seed->get<std::int64_t>());
  } else {
    return InvalidArgument("seed must be an integer, got " + Describe(*seed), "seed");
  }
  return {};
}

Status ParseTokenIds(const Json& ids, GenerationParams& params) {
  if (ids.empty())
    return InvalidArgument("prompt must not be an empty array of token ids", "prompt");
  std::vector<engine::Token> tokens;
  tokens.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const Json& id = ids[i];
    const bool valid = id.is_number_unsigned()
                           ? id.get<std::uint64_t>() <= static_cast<std::uint64_t>(kMaxInt32)
                           : id.is_number_integer() && id.get<std::int64_t>() >= 0 &&
                                 id.get<std::int64_t>() <= kMaxInt32;
    if (!valid) {
      return InvalidArgument("prompt token ids must be integers >= 0; prompt[" + std::to_string(i) +
                                 "] is " + Describe(id),
                             "prompt");
    }
    tokens.push_back(static_cast<engine::Token>(id.get<std::int64_t>()));
  }
  params.prompt = std::move(tokens);
  return {};
}

// A string, an array of token ids, or a one-element list holding either.
Status ParsePrompt(const Json& request, GenerationParams& params) {
  const Json* prompt = FindField(request, "prompt");
  if (prompt == nullptr) {
    return InvalidArgument("prompt is required: send a string or an array of token ids", "prompt");
  }
  if (prompt->is_string()) {
    params.prompt = prompt->get<std::string>();
    return {};
  }
  if (!prompt->is_array()) {
    return InvalidArgument(
        "prompt must be a string or an array of token ids, got " + Describe(*prompt), "prompt");
  }
  if (prompt->empty()) return InvalidArgument("prompt must not be an empty array", "prompt");
  const Json& first = prompt->front();
  if (!first.is_string() && !first.is_array()) return ParseTokenIds(*prompt, params);
  if (prompt->size() > 1) {
    return InvalidArgument(
        "only one prompt per request is supported; send each prompt as its own request", "prompt");
  }
  if (first.is_array()) return ParseTokenIds(first, params);
  params.prompt = first.get<std::string>();
  return {};
}

Status ParseCompletionMaxTokens(const Json& request, GenerationParams& params) {
  auto max_tokens = ReadMaxTokens(request, "max_tokens");
  if (!max_tokens) return std::unexpected(max_tokens.error());
  params.max_tokens = *max_tokens;
  return {};
}

// The legacy logprobs: the number of alternatives, 0..5 (0: the sampled token's alone). false
// is read as null, as before logprobs were supported.
Status ParseCompletionLogprobs(const Json& request, GenerationParams& params) {
  const Json* value = FindField(request, "logprobs");
  if (value == nullptr || IsFalse(*value)) return {};
  auto n = ReadInt(request, "logprobs", 0, kMaxCompletionLogprobs);
  if (!n) return std::unexpected(n.error());
  params.sampling.logprobs = true;
  params.sampling.top_logprobs = static_cast<int>(**n);
  return {};
}

Status RejectUnsupportedCompletion(const Json& request, GenerationParams& /*params*/) {
  return RejectUnsupported(request, kCompletionUnsupported);
}

}  // namespace

bool IsOne(const Json& value) {
  return value.is_number_integer() && value.get<std::int64_t>() == 1;
}

Status RejectUnsupported(const Json& request, std::span<const UnsupportedField> fields) {
  for (const UnsupportedField& field : fields) {
    const Json* value = FindField(request, field.key);
    if (value != nullptr && !field.is_default(*value)) {
      return InvalidArgument(std::string(field.message), std::string(field.key));
    }
  }
  return {};
}

Result<std::optional<int>> ReadMaxTokens(const Json& request, std::string_view key) {
  auto value = ReadInt(request, key, 1, kMaxTokensLimit);
  if (!value) return std::unexpected(value.error());
  if (!value->has_value()) return std::nullopt;
  return static_cast<int>(**value);
}

Status ParseModel(const Json& request, GenerationParams& params) {
  const Json* model = FindField(request, "model");
  if (model == nullptr) return {};
  if (!model->is_string()) {
    return InvalidArgument("model must be a string, got " + Describe(*model), "model");
  }
  params.model = model->get<std::string>();
  return {};
}

Status ParseSampling(const Json& request, GenerationParams& params) {
  engine::SamplingParams& sampling = params.sampling;
  const struct {
    std::string_view key;
    NumberRange range;
    float* out;
  } numbers[] = {
      {"temperature", {0.0, 2.0}, &sampling.temperature},
      {"top_p", {0.0, 1.0, /*min_exclusive=*/true}, &sampling.top_p},
      {"min_p", {0.0, 1.0}, &sampling.min_p},
      {"presence_penalty", {-2.0, 2.0}, &sampling.presence_penalty},
      {"frequency_penalty", {-2.0, 2.0}, &sampling.frequency_penalty},
  };
  for (const auto& number : numbers) {
    if (auto status = ReadNumber(request, number.key, number.range, *number.out); !status) {
      return status;
    }
  }
  auto top_k = ReadInt(request, "top_k", 0, kMaxInt32);
  if (!top_k) return std::unexpected(top_k.error());
  if (top_k->has_value()) sampling.top_k = static_cast<int>(**top_k);
  if (auto status = ParseSeed(request, sampling); !status) return status;
  if (auto status = ReadBool(request, "deterministic", sampling.deterministic); !status) {
    return status;
  }
  if (sampling.deterministic && sampling.temperature > 0.0f && !sampling.seed) {
    return InvalidArgument(
        "deterministic: true with temperature > 0 needs a seed: without one every request samples "
        "differently (send a seed, or temperature 0 for greedy decoding)",
        "seed");
  }
  return {};
}

Status ParseStop(const Json& request, GenerationParams& params) {
  const Json* stop = FindField(request, "stop");
  if (stop == nullptr) return {};
  if (!stop->is_string() && !stop->is_array()) {
    return InvalidArgument("stop must be a string or an array of strings, got " + Describe(*stop),
                           "stop");
  }
  const Json strings = stop->is_string() ? Json::array({*stop}) : *stop;
  if (strings.size() > kMaxStopStrings) {
    return InvalidArgument("stop holds at most 4 strings, got " + std::to_string(strings.size()),
                           "stop");
  }
  for (const Json& s : strings) {
    if (!s.is_string() || s.get_ref<const std::string&>().empty()) {
      return InvalidArgument("each stop sequence must be a non-empty string, got " +
                                 (s.is_string() ? std::string("\"\"") : Describe(s)),
                             "stop");
    }
    params.stop.push_back(s.get<std::string>());
  }
  return {};
}

Status ParseStream(const Json& request, GenerationParams& params) {
  if (auto status = ReadBool(request, "stream", params.stream); !status) return status;
  const Json* options = FindField(request, "stream_options");
  if (options == nullptr) return {};
  if (!options->is_object()) {
    return InvalidArgument("stream_options must be an object, got " + Describe(*options),
                           "stream_options");
  }
  const Json* include_usage = FindField(*options, "include_usage");
  if (include_usage != nullptr && !include_usage->is_boolean()) {
    return InvalidArgument(
        "stream_options.include_usage must be true or false, got " + Describe(*include_usage),
        "stream_options.include_usage");
  }
  params.include_usage = params.stream && include_usage != nullptr && include_usage->get<bool>();
  return {};
}

Status ParseN(const Json& request, GenerationParams& params) {
  const Json* n = FindField(request, "n");
  if (n == nullptr) return {};
  const bool in_range = n->is_number_unsigned()
                            ? n->get<std::uint64_t>() <= static_cast<std::uint64_t>(kMaxChoices)
                            : n->is_number_integer() && n->get<std::int64_t>() >= 1 &&
                                  n->get<std::int64_t>() <= kMaxChoices;
  if (!in_range || n->get<std::int64_t>() < 1) {
    return InvalidArgument("n must be an integer between 1 and " + std::to_string(kMaxChoices) +
                               ", got " + Describe(*n) +
                               " (each choice takes one of the model's sequence slots)",
                           "n");
  }
  params.n = static_cast<int>(n->get<std::int64_t>());
  return {};
}

Status RejectUnsupportedCommon(const Json& request, GenerationParams& /*params*/) {
  return RejectUnsupported(request, kCommonUnsupported);
}

Result<GenerationParams> RunParseSteps(std::string_view body, Endpoint endpoint,
                                       std::initializer_list<ParseStep> steps) {
  auto request = ParseJsonObject(body);
  if (!request) return std::unexpected(request.error());
  GenerationParams params;
  params.endpoint = endpoint;
  try {  // Every accessor is type-checked first; this only guards against a missed check.
    for (ParseStep step : steps) {
      if (auto status = step(*request, params); !status) return std::unexpected(status.error());
    }
  } catch (const Json::exception& e) {
    return InvalidArgument(std::string("request body has an unexpected shape: ") + e.what());
  }
  return params;
}

Result<GenerationParams> ParseCompletionRequest(std::string_view body) {
  return RunParseSteps(body, Endpoint::kCompletions,
                       {ParseModel, ParsePrompt, ParseCompletionMaxTokens, ParseSampling, ParseStop,
                        ParseStream, ParseResponseFormat, ParseCompletionLogprobs, ParseN,
                        RejectUnsupportedCommon, RejectUnsupportedCompletion});
}

}  // namespace ember::api
