// Small helpers for the hand-written JSON encoders (no DOM on the per-token path). Internal
// to api/.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/openai.h"

namespace ember::api {

inline void AppendInt(std::string& out, std::int64_t value) {
  char buf[24];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, result.ptr);
}

// A JSON string literal: quotes included, contents escaped.
inline void AppendQuoted(std::string& out, std::string_view text) {
  out += '"';
  AppendJsonEscaped(out, text);
  out += '"';
}

}  // namespace ember::api
