#include "plugins/config.h"

#include <algorithm>
#include <array>
#include <string>

#include "common/toml_reader.h"

namespace ember::plugins {
namespace {

std::vector<std::string> SplitNames(std::string_view list) {
  std::vector<std::string> names;
  std::size_t at = 0;
  while (at <= list.size()) {
    std::size_t comma = list.find(',', at);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view name = list.substr(at, comma - at);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (!name.empty()) names.emplace_back(name);
    at = comma + 1;
  }
  return names;
}

constexpr std::array<std::string_view, 7> kPluginKeys = {
    "name", "path", "configuration", "vm_configuration", "failure", "fuel_per_call", "memory_mib"};
constexpr std::array<std::string_view, 3> kChainKeys = {"route", "tenant", "plugins"};
constexpr std::array<std::string_view, 2> kTopKeys = {"plugin", "chain"};

}  // namespace

const Chain* PluginsConfig::ChainFor(std::string_view route, std::string_view tenant) const {
  auto find = [&](std::string_view r, std::string_view t) -> const Chain* {
    for (const Chain& c : chains) {
      if (c.route == r && c.tenant == t) return &c;
    }
    return nullptr;
  };
  for (auto [r, t] : {std::pair{route, tenant},
                      {route, std::string_view()},
                      {std::string_view("*"), tenant},
                      {std::string_view("*"), std::string_view()}}) {
    if (const Chain* c = find(r, t)) return c;
  }
  return nullptr;
}

const PluginEntry* PluginsConfig::Find(std::string_view name) const {
  for (const PluginEntry& p : plugins) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Result<PluginsConfig> ParsePluginsConfig(std::string_view text, std::string_view file) {
  auto root = toml::Read(text, file);
  if (!root) return std::unexpected(root.error());
  PluginsConfig config;
  for (const auto& [key, node] : (*root)->table) {
    if (auto ok = toml::CheckKey(file, key, *node, "at the top level", kTopKeys); !ok) {
      return std::unexpected(ok.error());
    }
    if (!node->is_array()) return toml::ErrorAt(file, *node, "use [[" + key + "]] tables");
  }
  auto string = [&](const toml::Node& v, std::string_view what) -> Result<std::string> {
    if (!v.is_string()) {
      return toml::ErrorAt(
          file, v, std::string(what) + " must be a string, not " + std::string(toml::KindName(v)));
    }
    return v.string;
  };
  auto positive = [&](const toml::Node& v, std::string_view what) -> Result<std::int64_t> {
    if (!v.is_integer() || v.integer <= 0) {
      return toml::ErrorAt(file, v, std::string(what) + " must be a positive integer");
    }
    return v.integer;
  };
  if (const toml::Node* list = (*root)->Find("plugin")) {
    for (const auto& table : list->array) {
      PluginEntry p;
      for (const auto& [key, value] : table->table) {
        if (auto ok = toml::CheckKey(file, key, *value, "in [[plugin]]", kPluginKeys); !ok) {
          return std::unexpected(ok.error());
        }
        if (key == "fuel_per_call" || key == "memory_mib") {
          auto n = positive(*value, key);
          if (!n) return std::unexpected(n.error());
          if (key == "fuel_per_call") p.limits.fuel_per_call = static_cast<std::uint64_t>(*n);
          if (key == "memory_mib") {
            if (*n > 4096) return toml::ErrorAt(file, *value, "memory_mib is at most 4096");
            p.limits.memory_bytes = static_cast<std::uint64_t>(*n) << 20;
          }
          continue;
        }
        auto s = string(*value, key);
        if (!s) return std::unexpected(s.error());
        if (key == "name") p.name = *s;
        if (key == "path") p.path = *s;
        if (key == "configuration") p.configuration = *s;
        if (key == "vm_configuration") p.vm_configuration = *s;
        if (key == "failure") {
          if (*s != "fail-closed" && *s != "fail-open") {
            return toml::ErrorAt(file, *value, "failure must be \"fail-closed\" or \"fail-open\"");
          }
          p.failure = *s == "fail-open" ? FailurePolicy::kFailOpen : FailurePolicy::kFailClosed;
        }
      }
      if (p.name.empty() || p.path.empty()) {
        return toml::ErrorAt(file, *table, "a [[plugin]] needs a name and a path");
      }
      if (config.Find(p.name)) {
        return toml::ErrorAt(file, *table, "plugin \"" + p.name + "\" is defined twice");
      }
      config.plugins.push_back(std::move(p));
    }
  }
  if (const toml::Node* list = (*root)->Find("chain")) {
    for (const auto& table : list->array) {
      Chain c;
      for (const auto& [key, value] : table->table) {
        if (auto ok = toml::CheckKey(file, key, *value, "in [[chain]]", kChainKeys); !ok) {
          return std::unexpected(ok.error());
        }
        auto s = string(*value, key);
        if (!s) return std::unexpected(s.error());
        if (key == "route") c.route = *s;
        if (key == "tenant") c.tenant = *s;
        if (key == "plugins") c.plugins = SplitNames(*s);
      }
      if (c.route.empty()) return toml::ErrorAt(file, *table, "a [[chain]] needs a route");
      for (const std::string& name : c.plugins) {
        if (!config.Find(name)) {
          return toml::ErrorAt(file, *table,
                               "chain names plugin \"" + name + "\", which no [[plugin]] defines");
        }
      }
      const bool duplicate = std::any_of(
          config.chains.begin(), config.chains.end(),
          [&](const Chain& other) { return other.route == c.route && other.tenant == c.tenant; });
      if (duplicate) {
        return toml::ErrorAt(file, *table,
                             "a second chain for route \"" + c.route + "\"" +
                                 (c.tenant.empty() ? "" : " and tenant \"" + c.tenant + "\""));
      }
      config.chains.push_back(std::move(c));
    }
  }
  return config;
}

}  // namespace ember::plugins
