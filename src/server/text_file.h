// Reading a small configuration file whole (a chat template, the plugins file).
#pragma once

#include <filesystem>
#include <string>

#include "common/error.h"

namespace ember::server {

// The whole of a small text file into `out`. Unavailable when it cannot be opened or read;
// InvalidArgument when it is empty: an empty template or plugins file is a mistake (or a write
// caught halfway), never "nothing", which would silently drop a template or every guardrail.
[[nodiscard]] Status ReadNonEmptyTextFile(const std::filesystem::path& path, std::string& out);

}  // namespace ember::server
