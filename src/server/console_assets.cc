#include "server/console_assets.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/log.h"

namespace ember::server {

namespace fs = std::filesystem;

namespace {

std::string ContentType(const fs::path& file) {
  const std::string ext = file.extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".json") return "application/json";
  return "application/octet-stream";
}

}  // namespace

Result<ConsoleAssets> ConsoleAssets::Load(const std::string& dir) {
  ConsoleAssets assets;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) return InvalidArgument(StrCat("--console-dir ", dir, ": ", ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec) return InvalidArgument(StrCat("--console-dir ", dir, ": ", ec.message()));
    if (!it->is_regular_file(ec)) continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in) return InvalidArgument(StrCat("--console-dir: cannot read ", it->path().string()));
    const std::string rel = fs::relative(it->path(), dir, ec).generic_string();
    if (ec) return InvalidArgument(StrCat("--console-dir ", dir, ": ", ec.message()));
    assets.files_[rel] = {ContentType(it->path()), bytes.str(), rel.starts_with("assets/")};
  }
  if (!assets.files_.contains("index.html")) {
    return InvalidArgument(
        StrCat("--console-dir ", dir, " has no index.html (build it with scripts/console.sh)"));
  }
  return assets;
}

std::string ConsoleAssets::DefaultDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const fs::path dir = exe.parent_path().parent_path() / "share" / "ember" / "console";
  return fs::exists(dir / "index.html", ec) ? dir.string() : "";
}

const ConsoleAsset* ConsoleAssets::Find(std::string_view path) const {
  if (path == "/console" || path == "/console/") path = "/console/index.html";
  constexpr std::string_view kPrefix = "/console/";
  if (!path.starts_with(kPrefix)) return nullptr;
  path.remove_prefix(kPrefix.size());
  // Only names the folder holds: no "..", nothing outside it.
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : &it->second;
}

}  // namespace ember::server
