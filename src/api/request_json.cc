#include "api/request_json.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "api/utf8.h"

namespace ember::api {

namespace {

// Tracks [ and { outside string literals. Malformed input is left to the real parser.
bool NestsDeeperThan(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// nlohmann quotes the token it stopped at ("last read: '...'", control characters spelled
// <U+000A>): for an unterminated string or a run of whitespace that is the rest of the body,
// several times over. An error message keeps this much of it.
constexpr std::size_t kMaxParseErrorBytes = 256;

// nlohmann messages start with "[json.exception.parse_error.101] "; users need only the rest.
std::string_view WithoutExceptionTag(std::string_view what) {
  if (what.starts_with("[json.exception.")) {
    const std::size_t end = what.find("] ");
    if (end != std::string_view::npos) return what.substr(end + 2);
  }
  return what;
}

std::string InvalidUtf8Message(std::string_view body, std::size_t offset) {
  char buf[160];
  std::snprintf(buf, sizeof(buf),
                "request body is not valid UTF-8: byte 0x%02X at offset %zu does not start a "
                "well-formed UTF-8 sequence; encode the body as UTF-8",
                static_cast<unsigned>(static_cast<unsigned char>(body[offset])), offset);
  return buf;
}

}  // namespace

Result<Json> ParseJsonObject(std::string_view body) {
  if (const auto bad = FindInvalidUtf8(body))
    return InvalidArgument(InvalidUtf8Message(body, *bad));
  if (NestsDeeperThan(body, kMaxJsonDepth)) {
    return InvalidArgument("request body is not valid JSON: nesting is deeper than " +
                           std::to_string(kMaxJsonDepth) + " levels");
  }
  Json doc;
  try {
    doc = Json::parse(body);
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for numbers like 1e999
    return InvalidArgument("request body is not valid JSON: " +
                           Truncated(WithoutExceptionTag(e.what()), kMaxParseErrorBytes));
  }
  if (!doc.is_object()) {
    return InvalidArgument("request body must be a JSON object, got " + Describe(doc));
  }
  return doc;
}

const Json* FindField(const Json& object, std::string_view key) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Describe(const Json& value) {
  if (value.is_number()) return value.dump();
  switch (value.type()) {
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::null:
      return "null";
    default:
      return "an unsupported value";
  }
}

Result<std::optional<std::int64_t>> ReadInt(const Json& object, std::string_view key,
                                            std::int64_t min, std::int64_t max) {
  const Json* value = FindField(object, key);
  if (value == nullptr) return std::nullopt;
  bool in_range = false;
  std::int64_t result = 0;
  if (value->is_number_unsigned()) {
    const auto u = value->get<std::uint64_t>();
    in_range =
        u <= static_cast<std::uint64_t>(max) && (min <= 0 || u >= static_cast<std::uint64_t>(min));
    result = static_cast<std::int64_t>(u);
  } else if (value->is_number_integer()) {
    result = value->get<std::int64_t>();
    in_range = result >= min && result <= max;
  }
  if (!in_range) {
    return InvalidArgument(std::string(key) + " must be an integer between " + std::to_string(min) +
                               " and " + std::to_string(max) + ", got " + Describe(*value),
                           std::string(key));
  }
  return result;
}

Status ReadNumber(const Json& object, std::string_view key, NumberRange range, float& out) {
  const Json* value = FindField(object, key);
  if (value == nullptr) return {};
  const double v = value->is_number() ? value->get<double>() : 0.0;
  const bool above_min = range.min_exclusive ? v > range.min : v >= range.min;
  if (!value->is_number() || !above_min || v > range.max) {
    char bounds[96];
    std::snprintf(bounds, sizeof(bounds),
                  range.min_exclusive ? "greater than %g and at most %g" : "between %g and %g",
                  range.min, range.max);
    return InvalidArgument(
        std::string(key) + " must be a number " + bounds + ", got " + Describe(*value),
        std::string(key));
  }
  out = static_cast<float>(v);
  // A double just above an exclusive minimum can round onto it as a float (top_p 1e-50 -> 0).
  if (range.min_exclusive && out <= range.min) {
    out = std::nextafter(static_cast<float>(range.min), std::numeric_limits<float>::infinity());
  }
  return {};
}

Status ReadBool(const Json& object, std::string_view key, bool& out) {
  const Json* value = FindField(object, key);
  if (value == nullptr) return {};
  if (!value->is_boolean()) {
    return InvalidArgument(std::string(key) + " must be true or false, got " + Describe(*value),
                           std::string(key));
  }
  out = value->get<bool>();
  return {};
}

std::string Truncated(std::string_view value, std::size_t max_bytes) {
  if (value.size() <= max_bytes) return std::string(value);
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  return std::string(value.substr(0, cut)) + "...";
}

}  // namespace ember::api
