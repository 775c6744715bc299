// `ember tenants add|set|list|remove` and `ember keys create|list|revoke`: edits of the tenancy
// store (tenancy/store.h) in --data-dir. main.cc constructs one TenancyCommands before parsing
// and hands it the parse error or the run. Exit codes: 0 done, 1 the command could not be
// done (unknown tenant or key, invalid file, I/O), 2 the command line is wrong. Errors go to
// stderr and never contain a key or a key's hash.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>

namespace ember::cli {

class TenancyCommands {
 public:
  // Adds the `tenants` and `keys` subcommands to `app`, which must outlive this object.
  explicit TenancyCommands(CLI::App& app);
  ~TenancyCommands();
  TenancyCommands(const TenancyCommands&) = delete;
  TenancyCommands& operator=(const TenancyCommands&) = delete;

  // Whether the command line named `tenants` or `keys` (also after a parse error in them).
  bool Selected() const;
  // Prints a parse error (or --help) as CLI11 does; the exit code is 2 for a usage error under
  // `tenants`/`keys`, CLI11's own for every other command.
  int ParseFailed(CLI::App& app, const CLI::ParseError& error) const;
  // Runs the selected command; returns the exit code.
  int Run();

  struct Flags;

 private:
  std::unique_ptr<Flags> flags_;
};

}  // namespace ember::cli
