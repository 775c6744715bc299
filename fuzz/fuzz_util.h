// Helpers shared by the libFuzzer targets in fuzz/: an invariant check that aborts (so libFuzzer
// saves the input as a crash even in an NDEBUG build), a strict JSON reader, and a reference
// UTF-8 repair written independently of api/utf8.cc to check the encoders against.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

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
