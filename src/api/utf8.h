// UTF-8 well-formedness checks (Unicode 15, table 3-7) shared by the request parser, which
// rejects ill-formed bodies, and the JSON escaper, which repairs ill-formed model output.
// Pure functions; internal to api/.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace ember::api {

struct Utf8Scan {
  // valid: `length` bytes form one well-formed code point. Otherwise `length` (>= 1) is the
  // maximal ill-formed subpart, the bytes one U+FFFD replaces (the WHATWG/Unicode practice).
  std::size_t length = 1;
  bool valid = true;
};

// Scans the sequence that starts at text[pos]; pos must be < text.size().
Utf8Scan ScanUtf8(std::string_view text, std::size_t pos);

// The offset of the first byte that is not part of a well-formed sequence, if any.
std::optional<std::size_t> FindInvalidUtf8(std::string_view text);

}  // namespace ember::api
