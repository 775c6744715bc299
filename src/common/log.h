// Minimal leveled logging to stderr, one line per call, safe from any thread.
// EMBER_LOG_LEVEL=debug|info|warn|error selects the threshold (default info).
// g++ 12 has no <format>; StrCat streams its arguments instead.
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <utility>

namespace ember {

template <typename... Args>
std::string StrCat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return std::move(out).str();
}

namespace log {

enum class Level { kDebug, kInfo, kWarn, kError };

bool Enabled(Level level);
void Write(Level level, std::string_view message);

template <typename... Args>
void Debug(Args&&... args) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
void Info(Args&&... args) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
void Warn(Args&&... args) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
void Error(Args&&... args) {
  if (Enabled(Level::kError)) Write(Level::kError, StrCat(std::forward<Args>(args)...));
}

}  // namespace log
}  // namespace ember
