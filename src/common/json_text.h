// Text that is both a JSON and a TOML value, for ember's small hand-written encoders
// (tenants.toml, the tenants and keys JSON, the ledger's reports): no DOM and no third-party
// JSON library outside api/ (CONVENTIONS.md: one adapter per third-party library).
#pragma once

#include <string>
#include <string_view>

namespace ember {

// `text` as a double-quoted string that is both a TOML basic string and a JSON string: quote,
// backslash and control characters escaped, other bytes as they are (callers pass valid UTF-8:
// validated names, or ember's own text).
std::string Quote(std::string_view text);

// The shortest decimal that reads back as exactly `value`, always with a '.' or an exponent
// (TOML would read "2" as an integer).
std::string FormatDouble(double value);

}  // namespace ember
