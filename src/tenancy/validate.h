// Helpers shared by the files of tenancy/. Checks of single values shared by ParseConfig (which
// adds FILE:LINE) and ValidateConfig (which adds the tenant or key): each returns why the value is
// invalid, or nullopt when it is valid. Internal to tenancy/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ember::tenancy::detail {

std::optional<std::string> CheckTenantName(std::string_view name);
std::optional<std::string> CheckDisplayName(std::string_view text);
std::optional<std::string> CheckWeight(double weight);
std::optional<std::string> CheckLimit(std::string_view key, std::int64_t value);
std::optional<std::string> CheckModelId(std::string_view id);
std::optional<std::string> CheckKeyId(std::string_view id);
std::optional<std::string> CheckSha256Hex(std::string_view hex);
std::optional<std::string> CheckCreated(std::int64_t created);

// Valid UTF-8 without control characters other than tab.
bool IsCleanText(std::string_view text);

// `text` as a double-quoted string that is both a TOML basic string and a JSON string: quote,
// backslash and control characters escaped, other UTF-8 as is.
std::string Quote(std::string_view text);

// The shortest decimal that reads back as exactly `value`, always with a '.' or an exponent
// (TOML would read "2" as an integer).
std::string FormatDouble(double value);

}  // namespace ember::tenancy::detail
