#include "cli/byte_size.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

#include "common/log.h"

namespace ember::cli {

Result<std::uint64_t> ParseByteSize(std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const double value = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || !std::isfinite(value) || value < 0 ||
      s.find_first_of("xXpP") != std::string::npos) {
    return InvalidArgument(StrCat("invalid size '", s, "': use e.g. 2GiB, 512MiB or 1073741824"));
  }
  std::string unit(end);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("IB")) {
    unit.erase(unit.size() - 2);
  } else if (unit.size() == 2 && unit.back() == 'B') {
    unit.pop_back();
  } else if (unit == "B") {
    unit.clear();
  }
  double scale = 1;
  if (unit.empty()) {
    scale = 1;
  } else if (unit == "K") {
    scale = 1024.0;
  } else if (unit == "M") {
    scale = 1024.0 * 1024;
  } else if (unit == "G") {
    scale = 1024.0 * 1024 * 1024;
  } else if (unit == "T") {
    scale = 1024.0 * 1024 * 1024 * 1024;
  } else {
    return InvalidArgument(StrCat("invalid size unit in '", s, "': use B, KiB, MiB, GiB or TiB"));
  }
  const double bytes = value * scale;
  if (bytes > 1.8e19) return InvalidArgument(StrCat("size '", s, "' is too large"));
  return static_cast<std::uint64_t>(std::llround(bytes));
}

}  // namespace ember::cli
