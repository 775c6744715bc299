// POST /tokenize: {"content": string, "add_special": bool (default true), "model": string
// (default: the first --model)} -> {"tokens": [...]}.
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
  std::string model;  // empty: the server's default model
};

[[nodiscard]] Result<TokenizeParams> ParseTokenizeRequest(std::string_view body);
std::string EncodeTokens(std::span<const engine::Token> tokens);

}  // namespace ember::api
