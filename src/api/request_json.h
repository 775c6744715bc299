// JSON input helpers for the request parsers: body parsing with cheap pre-checks (UTF-8,
// nesting depth) and typed field readers that turn every client mistake into kInvalidArgument
// naming the field. nlohmann::json never throws past these functions. Internal to api/.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace ember::api {

using Json = nlohmann::json;

// Deeper bodies are rejected before nlohmann's recursive parser sees them.
inline constexpr int kMaxJsonDepth = 64;

// Parses a request body that must be one JSON object.
[[nodiscard]] Result<Json> ParseJsonObject(std::string_view body);

// The value of `key`, or nullptr when it is absent or null (null means "use the default").
const Json* FindField(const Json& object, std::string_view key);

// A value for an error message: the number itself, or its JSON type ("a string").
std::string Describe(const Json& value);

// An integer field in [min, max]; floats, strings and out-of-range values are errors.
[[nodiscard]] Result<std::optional<std::int64_t>> ReadInt(const Json& object, std::string_view key,
                                                          std::int64_t min, std::int64_t max);

struct NumberRange {
  double min;
  double max;
  bool min_exclusive = false;
};
// A number field (integer or float) in `range`; `out` keeps its default when absent or null.
[[nodiscard]] Status ReadNumber(const Json& object, std::string_view key, NumberRange range,
                                float& out);

[[nodiscard]] Status ReadBool(const Json& object, std::string_view key, bool& out);

// Text of `value` cut to `max_bytes` for quoting in an error message.
std::string Truncated(std::string_view value, std::size_t max_bytes = 40);

}  // namespace ember::api
