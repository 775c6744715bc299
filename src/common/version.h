// ember's own version (CMake's project version), for --version, logs and ember_build_info.
#pragma once

#include <string_view>

namespace ember {

inline constexpr std::string_view kVersion = EMBER_VERSION;

}  // namespace ember
