// POST /tokenize: {"content": string, "add_special": bool (default true)} -> {"tokens": [...]}.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/error.h"
#include "engine/types.h"

namespace ember::api {

struct TokenizeParams {
  std::string content;
  bool add_special = true;
};

[[nodiscard]] Result<TokenizeParams> ParseTokenizeRequest(std::string_view body);
std::string EncodeTokens(std::span<const engine::Token> tokens);

}  // namespace ember::api
