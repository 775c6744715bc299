#include "common/ids.h"

#include <atomic>
#include <cstdio>
#include <random>

namespace ember {

std::string NewRequestId(std::string_view prefix) {
  static const std::uint64_t boot =
      std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32);
  static std::atomic<std::uint64_t> counter{0};
  char buf[40];
  std::snprintf(buf, sizeof(buf), "-%016llx%08llx", static_cast<unsigned long long>(boot),
                static_cast<unsigned long long>(counter.fetch_add(1) & 0xffffffffULL));
  return std::string(prefix) + buf;
}

}  // namespace ember
