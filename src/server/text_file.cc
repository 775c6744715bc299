#include "server/text_file.h"

#include <fstream>
#include <sstream>

#include "common/log.h"

namespace ember::server {

Status ReadNonEmptyTextFile(const std::filesystem::path& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Unavailable(StrCat("cannot open ", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Unavailable(StrCat("cannot read ", path.string()));
  out = std::move(text).str();
  if (out.empty()) return InvalidArgument(StrCat(path.string(), " is empty"));
  return {};
}

}  // namespace ember::server
