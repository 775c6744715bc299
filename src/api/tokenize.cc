#include "api/tokenize.h"

#include "api/request_json.h"

namespace ember::api {

Result<TokenizeParams> ParseTokenizeRequest(std::string_view body) {
  auto json = ParseJsonObject(body);
  if (!json) return std::unexpected(json.error());
  TokenizeParams params;
  const Json* content = FindField(*json, "content");
  if (content == nullptr || !content->is_string()) {
    return InvalidArgument("body must be {\"content\": string}", "content");
  }
  params.content = content->get<std::string>();
  if (const Json* add_special = FindField(*json, "add_special")) {
    if (!add_special->is_boolean())
      return InvalidArgument("add_special must be a boolean", "add_special");
    params.add_special = add_special->get<bool>();
  }
  if (const Json* model = FindField(*json, "model"); model != nullptr && !model->is_null()) {
    if (!model->is_string() || model->get_ref<const std::string&>().empty())
      return InvalidArgument("model must be a non-empty string", "model");
    params.model = model->get<std::string>();
  }
  return params;
}

std::string EncodeTokens(std::span<const engine::Token> tokens) {
  std::string out = "{\"tokens\":[";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(tokens[i]);
  }
  out += "]}";
  return out;
}

}  // namespace ember::api
