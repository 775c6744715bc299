// `ember cost report` and `ember cost advise`: read the usage ledger (DIR/ledger.sqlite, opened
// read-only, also while a server writes it) and print where the money went, or what to change to
// spend less (docs/finops.md). Exit codes: 0 done, 1 the ledger could not be read, 2 the command
// line is wrong.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>

namespace ember::cli {

class CostCommands {
 public:
  // Adds the `cost` subcommand to `app`, which must outlive this object.
  explicit CostCommands(CLI::App& app);
  ~CostCommands();
  CostCommands(const CostCommands&) = delete;
  CostCommands& operator=(const CostCommands&) = delete;

  bool Selected() const;
  int Run();

  struct Flags;

 private:
  std::unique_ptr<Flags> flags_;
};

}  // namespace ember::cli
