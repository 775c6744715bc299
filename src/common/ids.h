// Request ids ("cmpl-…", "chatcmpl-…"): unique per process and unpredictable across restarts.
#pragma once

#include <string>
#include <string_view>

namespace ember {

std::string NewRequestId(std::string_view prefix);

}  // namespace ember
