// Checks that llama.cpp's JSON schema converter enforces every keyword of a schema, before
// chat/ hands the schema to it: the converter skips what it does not know (docs/chat.md lists
// what is refused and why). Internal to chat/; includes common's JSON type.
#pragma once

#include <json.h>

#include <string>
#include <string_view>

#include "common/error.h"

namespace ember::chat {

// The schema text parsed, after the size and nesting limits (chat.h) and the keyword check;
// kInvalidArgument naming the first keyword that cannot be enforced, and where.
[[nodiscard]] Result<common_json> ParseEnforceableSchema(std::string_view text);

}  // namespace ember::chat
