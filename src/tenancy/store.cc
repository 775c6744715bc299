#include "tenancy/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include "common/file_io.h"
#include "common/log.h"
#include "common/money.h"
#include "tenancy/validate.h"

namespace ember::tenancy {
namespace fs = std::filesystem;

namespace {

using detail::Quote;

// Bare TOML keys are A-Za-z0-9_-; anything else (a tenant name with '.') is quoted.
std::string TomlKey(std::string_view key) {
  for (char c : key) {
    const bool bare = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-';
    if (!bare) return Quote(key);
  }
  return key.empty() ? Quote(key) : std::string(key);
}

void AppendLimits(std::string& out, const Limits& limits) {
  for (const LimitField& f : kLimitFields) {
    if (const auto& v = limits.*f.member; v) out += StrCat(f.key, " = ", *v, "\n");
  }
}

std::unexpected<Error> IoError(std::string_view what, const fs::path& path) {
  return Unavailable(StrCat("cannot ", what, " ", path.string(), ": ", std::strerror(errno)));
}

// Closes the descriptor (and so releases a flock on it) on every path out of EditConfig.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

// Writes `text` to `tmp`, fsyncs it and renames it over `file`, then fsyncs the directory so
// the rename itself survives a crash. The new file keeps the old one's permissions.
Status ReplaceFile(const fs::path& file, const fs::path& tmp, std::string_view text) {
  struct stat old{};
  const mode_t mode = ::stat(file.c_str(), &old) == 0 ? (old.st_mode & 07777) : 0644;
  {
    Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!out.ok()) return IoError("create", tmp);
    if (::fchmod(out.get(), mode) != 0) return IoError("set the permissions of", tmp);
    if (!WriteAllToFd(out.get(), text)) return IoError("write", tmp);
    if (::fsync(out.get()) != 0) return IoError("fsync", tmp);
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) return IoError("rename over", file);
  const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  if (!SyncDirectory(dir)) return IoError("fsync the directory", dir);
  return {};
}

}  // namespace

fs::path ConfigPath(const fs::path& data_dir) { return data_dir / kConfigFileName; }

std::string FormatConfig(const Config& config) {
  std::string out =
      "# ember's tenants and API keys (docs/tenancy.md). Written by `ember tenants` and\n"
      "# `ember keys`, which rewrite it whole (comments are not kept); it may also be edited by\n"
      "# hand. A running server picks up changes within a second and keeps the previous\n"
      "# configuration if a change is invalid. Keys are stored as SHA-256 hashes only.\n";
  for (const Tenant& t : config.tenants) {
    out += StrCat("\n[tenants.", TomlKey(t.name), "]\n");
    if (!t.display_name.empty()) out += StrCat("display_name = ", Quote(t.display_name), "\n");
    out += StrCat("weight = ", detail::FormatDouble(t.weight), "\n");
    out += StrCat("priority = \"", PriorityName(t.priority), "\"\n");
    out += StrCat("enabled = ", t.enabled ? "true" : "false", "\n");
    AppendLimits(out, t.limits);
    if (t.hard_budget) out += StrCat("hard_budget = ", FormatDollars(*t.hard_budget), "\n");
    if (t.soft_budget) out += StrCat("soft_budget = ", FormatDollars(*t.soft_budget), "\n");
    if (t.hard_budget || t.soft_budget || t.budget_window != BudgetWindow::kMonth) {
      out += StrCat("budget_window = \"", BudgetWindowName(t.budget_window), "\"\n");
    }
    for (const auto& [model, limits] : t.model_limits) {
      out += StrCat("\n[tenants.", TomlKey(t.name), ".models.", Quote(model), "]\n");
      AppendLimits(out, limits);
    }
  }
  for (const ApiKey& k : config.keys) {
    out += StrCat("\n[[keys]]\nid = ", Quote(k.id), "\ntenant = ", Quote(k.tenant),
                  "\nsha256 = ", Quote(k.sha256_hex), "\ncreated = ", k.created, "\n");
  }
  return out;
}

Result<Config> ReadConfigFile(const fs::path& file) {
  Fd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.ok()) {
    if (errno == ENOENT) return Config{};
    return IoError("read", file);
  }
  std::string text;
  char buf[1 << 14];
  for (;;) {
    const ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("read", file);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return ParseConfig(text, file.string());
}

Status EditConfig(const fs::path& data_dir, const std::function<Status(Config&)>& edit) {
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) {
    return Unavailable(
        StrCat("cannot create the data directory ", data_dir.string(), ": ", ec.message()));
  }
  const fs::path file = ConfigPath(data_dir);
  const fs::path lock_path = fs::path(file) += ".lock";
  // A separate lock file, not tenants.toml itself: the rename below replaces tenants.toml's
  // inode, and a lock on the old inode would not exclude a writer that opened the new one.
  Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock.ok()) return IoError("open", lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return IoError("lock", lock_path);
  }

  auto config = ReadConfigFile(file);
  if (!config) return std::unexpected(config.error());
  const Config before = *config;
  if (auto ok = edit(*config); !ok) return ok;
  if (*config == before && StampOf(file)) return {};  // nothing to write: no reload either
  if (auto ok = ValidateConfig(*config); !ok) return ok;
  const std::string text = FormatConfig(*config);
  // The file must read back as what was meant; a mismatch is a bug here, not the user's.
  auto reread = ParseConfig(text, file.string());
  if (!reread) return Internal("the edited tenants file does not parse: " + reread.error().message);
  if (*reread != *config) return Internal("the edited tenants file does not read back the same");
  return ReplaceFile(file, fs::path(file) += ".tmp", text);
}

std::optional<FileStamp> StampOf(const fs::path& file) {
  struct stat st{};
  if (::stat(file.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{
      static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
      static_cast<std::int64_t>(st.st_size),
      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

}  // namespace ember::tenancy
