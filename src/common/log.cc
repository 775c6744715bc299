#include "common/log.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace ember::log {
namespace {

Level ThresholdFromEnv() {
  const char* value = std::getenv("EMBER_LOG_LEVEL");
  if (value == nullptr) return Level::kInfo;
  if (std::strcmp(value, "debug") == 0) return Level::kDebug;
  if (std::strcmp(value, "warn") == 0) return Level::kWarn;
  if (std::strcmp(value, "error") == 0) return Level::kError;
  return Level::kInfo;
}

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

}  // namespace

bool Enabled(Level level) {
  static const Level threshold = ThresholdFromEnv();
  return level >= threshold;
}

void Write(Level level, std::string_view message) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  // One fprintf per line: stdio locks the stream, so lines from threads never interleave.
  std::fprintf(stderr, "%s.%03dZ %s %.*s\n", stamp, static_cast<int>(millis), LevelName(level),
               static_cast<int>(message.size()), message.data());
}

}  // namespace ember::log
