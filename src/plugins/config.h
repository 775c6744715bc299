// The plugins file (docs/plugins.md, "Configuration file"): which plugins exist, their
// configuration blobs, limits and failure policy, and which chain of them runs for a route,
// optionally per tenant. Pure data and parsing (TOML through common/toml_reader.h); no Wasmtime.
// Thread-compatible: built once at load or reload, then read by any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "plugins/plugin.h"

namespace ember::plugins {

enum class FailurePolicy { kFailClosed, kFailOpen };

struct PluginEntry {
  std::string name;
  std::string path;  // the .wasm file, relative to the plugins file's directory
  std::string configuration;
  std::string vm_configuration;
  FailurePolicy failure = FailurePolicy::kFailClosed;
  Limits limits;
};

struct Chain {
  std::string route;   // a request path ("/v1/chat/completions"), or "*"
  std::string tenant;  // empty: every tenant without a chain of its own for this route
  std::vector<std::string> plugins;  // names, run in this order
};

struct PluginsConfig {
  std::vector<PluginEntry> plugins;
  std::vector<Chain> chains;

  // The chain for a request: the tenant's own for the route, else the route's, else the
  // tenant's for "*", else "*"; nullptr when none applies (no plugin runs).
  const Chain* ChainFor(std::string_view route, std::string_view tenant) const;
  const PluginEntry* Find(std::string_view name) const;
};

// Errors are kInvalidArgument "FILE:LINE: reason".
[[nodiscard]] Result<PluginsConfig> ParsePluginsConfig(std::string_view text,
                                                       std::string_view file_name);

}  // namespace ember::plugins
