// Helpers shared by the libFuzzer targets in fuzz/: an invariant check that aborts (so libFuzzer
// saves the input as a crash even in an NDEBUG build), strict JSON readers, a reference UTF-8
// repair written independently of api/utf8.cc to check the encoders against, and the small
// readers of the targets' input formats.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#define FUZZ_CHECK(cond, ...)                                                           \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                \
      std::fprintf(stderr, "\n");                                                       \
      std::abort();                                                                     \
    }                                                                                   \
  } while (false)

namespace ember::fuzz {

using Json = nlohmann::json;

// `text` parsed as JSON, or nullopt when it is not JSON. nlohmann rejects invalid UTF-8 inside
// strings, so a value it returns holds only well-formed UTF-8.
inline std::optional<Json> ParseStrict(std::string_view text) {
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return std::nullopt;
  return doc;
}

// `text` parsed as JSON the way an encoder must write it: strict, and no object names a member
// twice (RFC 8259 leaves such an object to each reader: most keep the last, some the first).
inline std::optional<Json> ParseEncoded(std::string_view text) {
  std::vector<std::set<std::string>> names;  // one set per object being read
  bool repeated = false;
  Json doc = Json::parse(
      text,
      [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
        if (event == Json::parse_event_t::object_start) names.emplace_back();
        if (event == Json::parse_event_t::object_end) names.pop_back();
        if (event == Json::parse_event_t::key &&
            !names.back().insert(parsed.get<std::string>()).second) {
          repeated = true;
        }
        return true;
      },
      /*allow_exceptions=*/false);
  if (doc.is_discarded() || repeated) return std::nullopt;
  return doc;
}

// The member `key` of `object`, or null when absent.
inline Json Member(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? Json() : *it;
}

// `text` cut at every `separator`: n separators give n + 1 parts, empty ones included.
inline std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const std::size_t end = text.find(separator);
    parts.push_back(text.substr(0, end));
    if (end == std::string_view::npos) return parts;
    text.remove_prefix(end + 1);
  }
}

// The decimal integer `text` begins with; 0 when it begins with none.
inline std::int64_t Number(std::string_view text) {
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

inline bool IsValidUtf8(std::string_view text) {
  try {
    (void)Json(std::string(text)).dump();  // error_handler strict: throws on invalid UTF-8
    return true;
  } catch (const Json::exception&) {
    return false;
  }
}

// Each maximal ill-formed subpart replaced by U+FFFD: the WHATWG Encoding Standard's UTF-8
// decoder (https://encoding.spec.whatwg.org/#utf-8-decoder), with the same bounds state.
inline std::string ReferenceRepair(std::string_view in) {
  constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  std::string pending;  // bytes of the code point being decoded
  int needed = 0;
  unsigned char lower = 0x80;
  unsigned char upper = 0xBF;
  std::size_t i = 0;
  while (i < in.size()) {
    const auto byte = static_cast<unsigned char>(in[i]);
    if (needed == 0) {
      ++i;
      if (byte <= 0x7F) {
        out += static_cast<char>(byte);
      } else if (byte >= 0xC2 && byte <= 0xDF) {
        needed = 1;
      } else if (byte >= 0xE0 && byte <= 0xEF) {
        if (byte == 0xE0) lower = 0xA0;
        if (byte == 0xED) upper = 0x9F;
        needed = 2;
      } else if (byte >= 0xF0 && byte <= 0xF4) {
        if (byte == 0xF0) lower = 0x90;
        if (byte == 0xF4) upper = 0x8F;
        needed = 3;
      } else {
        out += kReplacement;
      }
      if (needed != 0) pending.assign(1, static_cast<char>(byte));
      continue;
    }
    if (byte < lower || byte > upper) {  // the byte is not consumed: it starts the next try
      needed = 0;
      lower = 0x80;
      upper = 0xBF;
      pending.clear();
      out += kReplacement;
      continue;
    }
    lower = 0x80;
    upper = 0xBF;
    pending += static_cast<char>(byte);
    ++i;
    if (--needed == 0) {
      out += pending;
      pending.clear();
    }
  }
  if (needed != 0) out += kReplacement;
  return out;
}

}  // namespace ember::fuzz
