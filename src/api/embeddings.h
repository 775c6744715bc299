// POST /v1/embeddings: request parsing and the response body, in OpenAI's shapes. Pure
// functions, callable from any thread. Model-dependent checks (token ids < n_vocab, each input
// within the model's context, `dimensions` equal to the model's size) are the caller's.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/error.h"
#include "engine/types.h"

namespace ember::api {

// OpenAI's limit on inputs per request.
inline constexpr std::size_t kMaxEmbeddingInputs = 2048;

enum class EmbeddingFormat {
  kFloat,   // a JSON array of numbers
  kBase64,  // the float32 values' little-endian bytes, base64 (the official SDKs' default)
};

using EmbeddingInput = std::variant<std::string, std::vector<engine::Token>>;

struct EmbeddingParams {
  std::string model;                   // as sent; may be empty
  std::vector<EmbeddingInput> inputs;  // 1..kMaxEmbeddingInputs, none empty
  EmbeddingFormat format = EmbeddingFormat::kFloat;
  std::optional<int> dimensions;
};

// kInvalidArgument naming the field (`param`) on any client mistake: malformed JSON, a field
// OpenAI does not define, wrong types, an empty or too long input list, an empty input.
[[nodiscard]] Result<EmbeddingParams> ParseEmbeddingRequest(std::string_view body);

// {"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],"model":...,
// "usage":{"prompt_tokens":N,"total_tokens":N}}. Floats are written in their shortest form that
// reads back as the same float32.
std::string EncodeEmbeddings(std::string_view model, std::span<const std::vector<float>> vectors,
                             EmbeddingFormat format, int prompt_tokens);

// Standard base64 (RFC 4648, with padding) of the floats' little-endian IEEE-754 bytes.
std::string Base64Floats(std::span<const float> values);

}  // namespace ember::api
