// The console's web page (console/, built by scripts/console.sh): its files read once at
// start-up from --console-dir (or <exe>/../share/ember/console), kept in memory and served
// under /console/ with a Content-Security-Policy that allows only the page's own files.
//
// Threads: Load at start-up; Find from any thread afterwards (read-only).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/error.h"

namespace ember::server {

struct ConsoleAsset {
  std::string content_type;
  std::string body;
  bool immutable = false;  // a content-hashed file under assets/
};

class ConsoleAssets {
 public:
  // Every file under `dir` (index.html required). Errors name the folder.
  [[nodiscard]] static Result<ConsoleAssets> Load(const std::string& dir);
  // The console's default folder beside the binary, "" when there is none.
  static std::string DefaultDir();
  // `path` as requested ("/console", "/console/", "/console/assets/x.js"); null if none.
  const ConsoleAsset* Find(std::string_view path) const;
  bool empty() const { return files_.empty(); }

  static constexpr std::string_view kSecurityPolicy =
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
      "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

 private:
  std::map<std::string, ConsoleAsset, std::less<>> files_;  // by path under the folder
};

}  // namespace ember::server
