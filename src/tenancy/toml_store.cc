// ParseConfig: common/toml_reader.h reads the text into nodes, and the Parser below checks
// them against the tenants.toml schema, each error with its FILE:LINE.
#include <algorithm>
#include <array>
#include <exception>
#include <span>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/money.h"
#include "common/toml_reader.h"
#include "tenancy/store.h"
#include "tenancy/validate.h"

namespace ember::tenancy {
namespace {

using Value = toml::Node;
using Entry = std::pair<const std::string*, const Value*>;

constexpr std::array<std::string_view, 2> kRootKeys = {"tenants", "keys"};
constexpr std::array<std::string_view, 14> kTenantKeys = {
    "display_name", "weight",      "priority",       "enabled",      "rpm",
    "input_tpm",    "output_tpm",  "max_concurrent", "max_queued",   "max_tokens",
    "models",       "hard_budget", "soft_budget",    "budget_window"};
constexpr std::array<std::string_view, 4> kKeyKeys = {"id", "tenant", "sha256", "created"};

// A table's entries, in file order (so tenants keep their order and the first error in the
// file is the one reported).
std::vector<Entry> InFileOrder(const Value& table) {
  std::vector<Entry> entries;
  for (const auto& [key, value] : table.table) entries.emplace_back(&key, value.get());
  return entries;
}

class Parser {
 public:
  explicit Parser(std::string_view file) : file_(file) {}

  Result<Config> Parse(const Value& root) {
    Config config;
    for (const auto& [key, value] : InFileOrder(root)) {
      if (auto ok = CheckKnown(*key, *value, "at the top level", kRootKeys); !ok) {
        return std::unexpected(ok.error());
      }
      if (*key == "tenants") {
        if (!value->is_table()) return Fail(*value, "tenants must be a table of tenants");
        for (const auto& [name, tenant] : InFileOrder(*value)) {
          auto parsed = ParseTenant(*name, *tenant);
          if (!parsed) return std::unexpected(parsed.error());
          config.tenants.push_back(*std::move(parsed));
        }
      }
    }
    if (const Value* found = root.Find("keys")) {
      const Value& keys = *found;
      if (!keys.is_array()) return Fail(keys, "keys must be an array of tables ([[keys]])");
      for (const auto& key : keys.array) {
        auto parsed = ParseKey(*key, config);
        if (!parsed) return std::unexpected(parsed.error());
        config.keys.push_back(*std::move(parsed));
      }
    }
    return config;
  }

 private:
  std::unexpected<Error> Fail(const Value& at, std::string_view why) const {
    return toml::ErrorAt(file_, at, why);
  }

  Status CheckKnown(const std::string& key, const Value& value, std::string_view where,
                    std::span<const std::string_view> allowed) const {
    return toml::CheckKey(file_, key, value, where, allowed);
  }

  Result<std::string> String(const Value& v, std::string_view key) const {
    if (!v.is_string()) return Fail(v, StrCat(key, " must be a string, not ", toml::KindName(v)));
    return v.string;
  }

  Result<std::int64_t> Integer(const Value& v, std::string_view key) const {
    if (!v.is_integer())
      return Fail(v, StrCat(key, " must be an integer, not ", toml::KindName(v)));
    return v.integer;
  }

  // One limit key into `limits`; false when `key` is not a limit.
  Result<bool> Limit(const std::string& key, const Value& v, Limits& limits) const {
    for (const LimitField& f : kLimitFields) {
      if (f.key != key) continue;
      auto n = Integer(v, key);
      if (!n) return std::unexpected(n.error());
      if (auto why = detail::CheckLimit(key, *n)) return Fail(v, *why);
      limits.*f.member = *n;
      return true;
    }
    return false;
  }

  Result<Tenant> ParseTenant(const std::string& name, const Value& v) const {
    if (auto why = detail::CheckTenantName(name)) return Fail(v, *why);
    if (!v.is_table()) return Fail(v, StrCat("tenant \"", name, "\" must be a table"));
    Tenant t;
    t.name = name;
    const std::string where = StrCat("in tenant \"", name, "\"");
    for (const auto& [key, value] : InFileOrder(v)) {
      if (auto ok = CheckKnown(*key, *value, where, kTenantKeys); !ok) {
        return std::unexpected(ok.error());
      }
      auto is_limit = Limit(*key, *value, t.limits);
      if (!is_limit) return std::unexpected(is_limit.error());
      if (*is_limit) continue;
      Status ok = ParseTenantField(*key, *value, t);
      if (!ok) return std::unexpected(ok.error());
    }
    return t;
  }

  Status ParseTenantField(const std::string& key, const Value& v, Tenant& t) const {
    if (key == "display_name") {
      auto text = String(v, key);
      if (!text) return std::unexpected(text.error());
      if (auto why = detail::CheckDisplayName(*text)) return Fail(v, *why);
      t.display_name = *std::move(text);
    } else if (key == "weight") {
      if (!v.is_integer() && !v.is_floating()) {
        return Fail(v, StrCat("weight must be a number, not ", toml::KindName(v)));
      }
      t.weight = v.is_integer() ? static_cast<double>(v.integer) : v.floating;
      if (auto why = detail::CheckWeight(t.weight)) return Fail(v, *why);
    } else if (key == "priority") {
      auto text = String(v, key);
      if (!text) return std::unexpected(text.error());
      auto priority = ParsePriority(*text);
      if (!priority) {
        return Fail(v,
                    StrCat("priority must be \"interactive\" or \"batch\", not \"", *text, "\""));
      }
      t.priority = *priority;
    } else if (key == "enabled") {
      if (!v.is_boolean()) return Fail(v, StrCat("enabled must be true or false"));
      t.enabled = v.boolean;
    } else if (key == "models") {
      return ParseModels(v, t);
    } else if (key == "hard_budget" || key == "soft_budget") {
      auto micros = toml::Dollars(file_, v, key);  // exactly, never through a double
      if (!micros) return std::unexpected(micros.error());
      (key == "hard_budget" ? t.hard_budget : t.soft_budget) = *micros;
    } else if (key == "budget_window") {
      auto text = String(v, key);
      if (!text) return std::unexpected(text.error());
      auto window = ParseBudgetWindow(*text);
      if (!window) {
        return Fail(v, StrCat("budget_window must be \"day\", \"month\" or \"total\", not \"",
                              *text, "\""));
      }
      t.budget_window = *window;
    }
    return {};
  }

  Status ParseModels(const Value& v, Tenant& t) const {
    if (!v.is_table()) return Fail(v, "models must be a table of model ids");
    for (const auto& [model, limits_value] : InFileOrder(v)) {
      if (auto why = detail::CheckModelId(*model)) return Fail(*limits_value, *why);
      if (!limits_value->is_table()) {
        return Fail(*limits_value, StrCat("models.\"", *model, "\" must be a table of limits"));
      }
      Limits& limits = t.model_limits[*model];
      for (const auto& [key, value] : InFileOrder(*limits_value)) {
        auto is_limit = Limit(*key, *value, limits);
        if (!is_limit) return std::unexpected(is_limit.error());
        if (!*is_limit) {
          std::array<std::string_view, kLimitFields.size()> allowed;
          for (std::size_t i = 0; i < allowed.size(); ++i) allowed[i] = kLimitFields[i].key;
          return CheckKnown(*key, *value,
                            StrCat("in tenant \"", t.name, "\" model \"", *model, "\""), allowed);
        }
      }
    }
    return {};
  }

  Result<ApiKey> ParseKey(const Value& v, const Config& config) const {
    if (!v.is_table()) return Fail(v, "each entry of keys must be a table ([[keys]])");
    ApiKey k;
    bool has_id = false, has_tenant = false, has_hash = false;
    for (const auto& [key, value] : InFileOrder(v)) {
      if (auto ok = CheckKnown(*key, *value, "in [[keys]]", kKeyKeys); !ok) {
        return std::unexpected(ok.error());
      }
      if (*key == "created") {
        auto n = Integer(*value, *key);
        if (!n) return std::unexpected(n.error());
        if (auto why = detail::CheckCreated(*n)) return Fail(*value, *why);
        k.created = *n;
        continue;
      }
      auto text = String(*value, *key);
      if (!text) return std::unexpected(text.error());
      if (*key == "id") {
        if (auto why = detail::CheckKeyId(*text)) return Fail(*value, *why);
        if (std::any_of(config.keys.begin(), config.keys.end(),
                        [&](const ApiKey& other) { return other.id == *text; })) {
          return Fail(*value, StrCat("key id ", *text, " is used twice"));
        }
        k.id = *std::move(text);
        has_id = true;
      } else if (*key == "tenant") {
        if (!config.FindTenant(*text)) return Fail(*value, StrCat("no tenant \"", *text, "\""));
        k.tenant = *std::move(text);
        has_tenant = true;
      } else {
        if (auto why = detail::CheckSha256Hex(*text)) return Fail(*value, *why);
        if (std::any_of(config.keys.begin(), config.keys.end(),
                        [&](const ApiKey& other) { return other.sha256_hex == *text; })) {
          return Fail(*value, "the same key hash appears twice");
        }
        k.sha256_hex = *std::move(text);
        has_hash = true;
      }
    }
    if (!has_id || !has_tenant || !has_hash) {
      return Fail(v, "a key needs id, tenant and sha256");
    }
    return k;
  }

  std::string file_;
};

}  // namespace

Result<Config> ParseConfig(std::string_view text, std::string_view file_name) {
  auto root = toml::Read(text, file_name);  // shape-checked first (common/toml_reader.h)
  if (!root) return std::unexpected(root.error());
  return Parser(file_name).Parse(**root);
}

}  // namespace ember::tenancy
