// The tenancy store: one declarative file, DATA_DIR/tenants.toml (docs/tenancy.md has the
// format and why a file). `ember tenants`/`ember keys` edit it through EditConfig; the server
// reads it at start-up with ReadConfigFile and polls StampOf to reload it when it changes.
// Errors name the file and line. Free functions, no shared state: safe from any thread, and
// EditConfig is safe across processes (an exclusive lock file).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "tenancy/config.h"

namespace ember::tenancy {

inline constexpr std::string_view kConfigFileName = "tenants.toml";

// DATA_DIR/tenants.toml.
std::filesystem::path ConfigPath(const std::filesystem::path& data_dir);

// Parses and validates the file's text. Errors are kInvalidArgument "FILE:LINE: reason" with
// the line of the offending key or table; unknown keys are errors. Tenants come back in file
// order, keys in array order.
[[nodiscard]] Result<Config> ParseConfig(std::string_view text, std::string_view file_name);

// The file's text for `config`, deterministic (tenants and keys in vector order, limits in
// kLimitFields order, models by id). ParseConfig(FormatConfig(c)) == c for every valid c.
std::string FormatConfig(const Config& config);

// The checks ParseConfig makes, for a Config built in code (kInvalidArgument, no line).
[[nodiscard]] Status ValidateConfig(const Config& config);

// Reads and parses `file`; a file that does not exist is an empty Config (ember runs open).
[[nodiscard]] Result<Config> ReadConfigFile(const std::filesystem::path& file);

// Read-modify-write of DATA_DIR/tenants.toml, atomic for readers and serialized between
// writers: creates DATA_DIR if missing, holds an exclusive flock on DATA_DIR/tenants.toml.lock
// throughout, reads the file, applies `edit` (its error aborts the edit and is returned),
// validates the result, writes DATA_DIR/tenants.toml.tmp, fsyncs it, renames it over
// tenants.toml and fsyncs the directory. A reader sees the old file or the new one, never a
// mix; a crash leaves the old file in place.
[[nodiscard]] Status EditConfig(const std::filesystem::path& data_dir,
                                const std::function<Status(Config&)>& edit);

// What a poller compares to notice a change. Every EditConfig renames a new file into place,
// so the inode changes even when size and mtime do not.
struct FileStamp {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;

  bool operator==(const FileStamp&) const = default;
};

// stat(2) of `file`, following symlinks (a Kubernetes ConfigMap mount swaps a symlink); nullopt
// when it does not exist or cannot be stat'ed.
std::optional<FileStamp> StampOf(const std::filesystem::path& file);

// JSON for `ember tenants list --json`: an array of objects with name, display_name, weight,
// priority, enabled, the limits that are set (kLimitFields names) and models: {id: {limits}}.
std::string TenantsJson(const Config& config);

// JSON for `ember keys list --json`: an array of {id, tenant, created}. Never the hash.
std::string KeysJson(const Config& config);

}  // namespace ember::tenancy
