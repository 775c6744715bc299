#include "cli/duration.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "common/log.h"

namespace ember::cli {

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const double value = std::strtod(s.c_str(), &end);
  const std::string unit(end == nullptr ? "" : end);
  if (end == s.c_str() || !std::isfinite(value) || value < 0) {
    return InvalidArgument(StrCat("invalid duration '", s, "': use e.g. 30s, 500ms or 2m"));
  }
  double ms = 0;
  if (unit.empty() || unit == "s")
    ms = value * 1000;
  else if (unit == "ms")
    ms = value;
  else if (unit == "m")
    ms = value * 60'000;
  else if (unit == "h")
    ms = value * 3'600'000;
  else
    return InvalidArgument(StrCat("invalid duration unit in '", s, "': use ms, s, m or h"));
  if (ms > 1e12) return InvalidArgument(StrCat("duration '", s, "' is too long"));
  return std::chrono::milliseconds(static_cast<long long>(std::llround(ms)));
}

}  // namespace ember::cli
