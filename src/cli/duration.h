// Parses durations given on the command line or in EMBER_* variables: "30s", "500ms",
// "2m", or a bare number of seconds ("30", "0.5").
#pragma once

#include <chrono>
#include <string_view>

#include "common/error.h"

namespace ember::cli {

[[nodiscard]] Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

}  // namespace ember::cli
