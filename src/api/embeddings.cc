#include "api/embeddings.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>

#include "api/json_write.h"
#include "api/request_json.h"
#include "common/log.h"

namespace ember::api {

namespace {

constexpr std::int64_t kMaxTokenId = std::numeric_limits<std::int32_t>::max();
constexpr std::string_view kKnownFields[] = {"model", "input", "encoding_format", "dimensions",
                                             "user"};

Status RejectUnknownFields(const Json& request) {
  for (const auto& [key, value] : request.items()) {
    bool known = false;
    for (std::string_view k : kKnownFields) known = known || key == k;
    if (!known) {
      return InvalidArgument(
          StrCat("unrecognized request argument: ", Truncated(key),
                 " (/v1/embeddings takes model, input, encoding_format, dimensions, user)"),
          Truncated(key, 100));
    }
  }
  return {};
}

bool IsTokenId(const Json& id) {
  if (id.is_number_unsigned()) return id.get<std::uint64_t>() <= kMaxTokenId;
  return id.is_number_integer() && id.get<std::int64_t>() >= 0 &&
         id.get<std::int64_t>() <= kMaxTokenId;
}

// `ids` is a non-empty array; `where` names it in messages ("input" or "input[3]").
Result<std::vector<engine::Token>> ReadTokenIds(const Json& ids, const std::string& where) {
  std::vector<engine::Token> tokens;
  tokens.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!IsTokenId(ids[i])) {
      return InvalidArgument(
          StrCat("token ids must be integers >= 0; ", where, "[", i, "] is ", Describe(ids[i])),
          "input");
    }
    tokens.push_back(static_cast<engine::Token>(ids[i].get<std::int64_t>()));
  }
  return tokens;
}

// A string, an array of strings, an array of token ids, or an array of token-id arrays.
Status ParseInput(const Json& request, EmbeddingParams& params) {
  const Json* input = FindField(request, "input");
  if (input == nullptr) {
    return InvalidArgument(
        "input is required: a string, an array of strings, an array of token ids or an array "
        "of token-id arrays",
        "input");
  }
  if (input->is_string()) {
    if (input->get_ref<const std::string&>().empty()) {
      return InvalidArgument("input must not be an empty string", "input");
    }
    params.inputs.emplace_back(input->get<std::string>());
    return {};
  }
  if (!input->is_array()) {
    return InvalidArgument(
        "input must be a string, an array of strings, an array of token ids or an array of "
        "token-id arrays, got " +
            Describe(*input),
        "input");
  }
  if (input->empty()) return InvalidArgument("input must not be an empty array", "input");
  const Json& first = input->front();
  if (first.is_number()) {  // one input given as token ids
    auto tokens = ReadTokenIds(*input, "input");
    if (!tokens) return std::unexpected(tokens.error());
    params.inputs.emplace_back(std::move(*tokens));
    return {};
  }
  if (input->size() > kMaxEmbeddingInputs) {
    return InvalidArgument(StrCat("input holds at most ", kMaxEmbeddingInputs, " inputs, got ",
                                  input->size(), "; split them over several requests"),
                           "input");
  }
  const bool strings = first.is_string();
  for (std::size_t i = 0; i < input->size(); ++i) {
    const Json& item = (*input)[i];
    const std::string where = StrCat("input[", i, "]");
    if (strings) {
      if (!item.is_string()) {
        return InvalidArgument(
            StrCat("input mixes strings with other values: ", where, " is ", Describe(item)),
            "input");
      }
      if (item.get_ref<const std::string&>().empty()) {
        return InvalidArgument(StrCat(where, " must not be an empty string"), "input");
      }
      params.inputs.emplace_back(item.get<std::string>());
    } else {
      if (!item.is_array()) {
        return InvalidArgument(
            StrCat("input must be a string, an array of strings, an array of token ids or an "
                   "array of token-id arrays; ",
                   where, " is ", Describe(item)),
            "input");
      }
      if (item.empty()) {
        return InvalidArgument(StrCat(where, " must not be an empty array"), "input");
      }
      auto tokens = ReadTokenIds(item, where);
      if (!tokens) return std::unexpected(tokens.error());
      params.inputs.emplace_back(std::move(*tokens));
    }
  }
  return {};
}

Status ParseOptions(const Json& request, EmbeddingParams& params) {
  if (const Json* model = FindField(request, "model")) {
    if (!model->is_string()) {
      return InvalidArgument("model must be a string, got " + Describe(*model), "model");
    }
    params.model = model->get<std::string>();
  }
  if (const Json* format = FindField(request, "encoding_format")) {
    const std::string value = format->is_string() ? format->get<std::string>() : "";
    if (value == "float") {
      params.format = EmbeddingFormat::kFloat;
    } else if (value == "base64") {
      params.format = EmbeddingFormat::kBase64;
    } else {
      return InvalidArgument(
          StrCat("encoding_format must be \"float\" or \"base64\", got ",
                 format->is_string() ? StrCat("\"", Truncated(value), "\"") : Describe(*format)),
          "encoding_format");
    }
  }
  auto dimensions = ReadInt(request, "dimensions", 1, std::numeric_limits<std::int32_t>::max());
  if (!dimensions) return std::unexpected(dimensions.error());
  if (dimensions->has_value()) params.dimensions = static_cast<int>(**dimensions);
  if (const Json* user = FindField(request, "user"); user != nullptr && !user->is_string()) {
    return InvalidArgument("user must be a string, got " + Describe(*user), "user");
  }
  return {};
}

void AppendFloat(std::string& out, float value) {
  // "-0" would read back as the integer 0 in most JSON parsers, losing the sign bit.
  if (value == 0.0f && std::signbit(value)) {
    out += "-0.0";
    return;
  }
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);  // shortest round trip
  out.append(buf, result.ptr);
}

}  // namespace

Result<EmbeddingParams> ParseEmbeddingRequest(std::string_view body) {
  auto request = ParseJsonObject(body);
  if (!request) return std::unexpected(request.error());
  EmbeddingParams params;
  try {  // Every accessor is type-checked first; this only guards against a missed check.
    if (Status st = RejectUnknownFields(*request); !st) return std::unexpected(st.error());
    if (Status st = ParseInput(*request, params); !st) return std::unexpected(st.error());
    if (Status st = ParseOptions(*request, params); !st) return std::unexpected(st.error());
  } catch (const Json::exception& e) {
    return InvalidArgument(std::string("request body has an unexpected shape: ") + e.what());
  }
  return params;
}

std::string Base64Floats(std::span<const float> values) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  bytes.reserve(values.size() * 4);
  for (float v : values) {
    const auto bits = std::bit_cast<std::uint32_t>(v);
    for (int shift = 0; shift < 32; shift += 8) bytes += static_cast<char>((bits >> shift) & 0xff);
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto byte = [&bytes](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k]));
  };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(n >> shift) & 63];
  }
  if (const std::size_t rest = bytes.size() - i; rest > 0) {
    const std::uint32_t n = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string EncodeEmbeddings(std::string_view model, std::span<const std::vector<float>> vectors,
                             EmbeddingFormat format, int prompt_tokens) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"object\":\"embedding\",\"index\":";
    AppendInt(out, static_cast<std::int64_t>(i));
    out += ",\"embedding\":";
    if (format == EmbeddingFormat::kBase64) {
      out += '"';
      out += Base64Floats(vectors[i]);
      out += '"';
    } else {
      out += '[';
      for (std::size_t j = 0; j < vectors[i].size(); ++j) {
        if (j > 0) out += ',';
        AppendFloat(out, vectors[i][j]);
      }
      out += ']';
    }
    out += '}';
  }
  out += "],\"model\":";
  AppendQuoted(out, model);
  out += ",\"usage\":{\"prompt_tokens\":";
  AppendInt(out, prompt_tokens);
  out += ",\"total_tokens\":";
  AppendInt(out, prompt_tokens);
  out += "}}";
  return out;
}

}  // namespace ember::api
