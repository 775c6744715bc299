// Helpers shared by the files of tenancy/. Checks of single values shared by ParseConfig (which
// adds FILE:LINE) and ValidateConfig (which adds the tenant or key): each returns why the value is
// invalid, or nullopt when it is valid. Internal to tenancy/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/json_text.h"

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

// Quote and FormatDouble live in common/json_text.h (the ledger's reports use them too).
using ember::FormatDouble;
using ember::Quote;

}  // namespace ember::tenancy::detail
