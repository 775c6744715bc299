#include "cli/tenants_cli.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "common/money.h"
#include "common/sha256.h"
#include "tenancy/config.h"
#include "tenancy/keys.h"
#include "tenancy/store.h"

namespace ember::cli {

using tenancy::Config;
using tenancy::kLimitFields;
using tenancy::LimitField;
using tenancy::Limits;
using tenancy::Tenant;

struct TenancyCommands::Flags {
  CLI::App* tenants = nullptr;
  CLI::App* keys = nullptr;
  CLI::App *add = nullptr, *set = nullptr, *list = nullptr, *remove = nullptr;
  CLI::App *create = nullptr, *key_list = nullptr, *revoke = nullptr;

  std::string data_dir, name, display_name, weight, priority, model, tenant, key_id;
  std::string hard_budget, soft_budget, budget_window;
  std::vector<std::string> limits = std::vector<std::string>(kLimitFields.size());
  std::vector<std::string> clear;
  bool enabled = false, disabled = false, json = false;
  // Which value flags were given, per subcommand (the same variables serve add and set).
  std::vector<CLI::Option*> options;
};

namespace {

// A usage error (exit 2) or a failed command (exit 1), both printed as "ember: message".
struct Failure {
  int code;
  std::string message;
};
using Outcome = std::expected<void, Failure>;

std::unexpected<Failure> Usage(std::string message) {
  return std::unexpected(Failure{2, std::move(message)});
}
std::unexpected<Failure> Failed(std::string message) {
  return std::unexpected(Failure{1, std::move(message)});
}
std::unexpected<Failure> Failed(const Error& e) { return Failed(e.message); }

std::string FlagName(std::string_view key) {
  std::string flag = "--" + std::string(key);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

bool Given(const TenancyCommands::Flags& f, std::string_view flag) {
  // `add` and `set` have options of the same names; only the one that ran has counts.
  return std::any_of(f.options.begin(), f.options.end(),
                     [&](CLI::Option* o) { return o->count() > 0 && o->get_name() == flag; });
}

// Adds the flags `add` and `set` share to `cmd`.
void AddTenantFlags(CLI::App* cmd, TenancyCommands::Flags& f) {
  cmd->add_option("name", f.name, "Tenant name: 1-63 of a-z 0-9 . _ -")->required();
  f.options.push_back(cmd->add_option("--display-name", f.display_name, "Free text"));
  f.options.push_back(
      cmd->add_option("--weight", f.weight, "Fair share relative to other tenants (> 0)"));
  f.options.push_back(cmd->add_option("--priority", f.priority, "interactive or batch"));
  f.options.push_back(
      cmd->add_option("--hard-budget", f.hard_budget,
                      "Spend cap in dollars at list price (--prices): over it, requests get 402"));
  f.options.push_back(cmd->add_option("--soft-budget", f.soft_budget,
                                      "Dollars: crossing it warns (log, metric, webhook)"));
  f.options.push_back(cmd->add_option("--budget-window", f.budget_window,
                                      "When budgets reset: day, month (default) or total"));
  for (std::size_t i = 0; i < kLimitFields.size(); ++i) {
    f.options.push_back(cmd->add_option(FlagName(kLimitFields[i].key), f.limits[i],
                                        "Limit (an integer >= 1); unset: no limit"));
  }
}

Result<std::int64_t> ParseLimit(std::string_view key, const std::string& text) {
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < 1) {
    return InvalidArgument(StrCat(FlagName(key), " must be an integer >= 1, not \"", text,
                                  "\" (--clear ", FlagName(key).substr(2), " removes a limit)"));
  }
  return n;
}

// The limit and tenant flags of `add`/`set` applied to `t` (and to t.model_limits[--model]).
Outcome ApplyTenantFlags(const TenancyCommands::Flags& f, Tenant& t) {
  if (Given(f, "--display-name")) t.display_name = f.display_name;
  if (Given(f, "--weight")) {
    double w = 0;
    auto [end, ec] = std::from_chars(f.weight.data(), f.weight.data() + f.weight.size(), w);
    if (ec != std::errc() || end != f.weight.data() + f.weight.size() || !std::isfinite(w) ||
        w <= 0) {
      return Usage(StrCat("--weight must be a number > 0, not \"", f.weight, "\""));
    }
    t.weight = w;
  }
  if (Given(f, "--priority")) {
    auto p = tenancy::ParsePriority(f.priority);
    if (!p)
      return Usage(StrCat("--priority must be interactive or batch, not \"", f.priority, "\""));
    t.priority = *p;
  }
  if (Given(f, "--hard-budget") || Given(f, "--soft-budget")) {
    if (!f.model.empty()) return Usage("budgets are per tenant; they take no --model");
  }
  if (Given(f, "--hard-budget")) {
    auto micros = ParseDollars(f.hard_budget, "--hard-budget");
    if (!micros) return Usage(micros.error().message);
    t.hard_budget = *micros;
  }
  if (Given(f, "--soft-budget")) {
    auto micros = ParseDollars(f.soft_budget, "--soft-budget");
    if (!micros) return Usage(micros.error().message);
    t.soft_budget = *micros;
  }
  if (Given(f, "--budget-window")) {
    auto window = ParseBudgetWindow(f.budget_window);
    if (!window) {
      return Usage(
          StrCat("--budget-window must be day, month or total, not \"", f.budget_window, "\""));
    }
    t.budget_window = *window;
  }
  if (f.enabled || f.disabled) t.enabled = f.enabled;
  Limits& limits = f.model.empty() ? t.limits : t.model_limits[f.model];
  for (const std::string& name : f.clear) {
    if (name == "hard-budget" || name == "hard_budget" || name == "soft-budget" ||
        name == "soft_budget") {
      (name[0] == 'h' ? t.hard_budget : t.soft_budget) = std::nullopt;
      continue;
    }
    bool known = name == "all";
    for (const LimitField& field : kLimitFields) {
      if (name == "all" || FlagName(field.key) == "--" + name || field.key == name) {
        limits.*field.member = std::nullopt;
        known = true;
      }
    }
    if (!known) return Usage(StrCat("--clear: no limit \"", name, "\""));
  }
  for (std::size_t i = 0; i < kLimitFields.size(); ++i) {
    if (!Given(f, FlagName(kLimitFields[i].key))) continue;
    auto n = ParseLimit(kLimitFields[i].key, f.limits[i]);
    if (!n) return Usage(n.error().message);
    limits.*kLimitFields[i].member = *n;
  }
  // A model entry with no limits left says nothing: drop it rather than keep an empty table.
  if (!f.model.empty() && limits.empty()) t.model_limits.erase(f.model);
  return {};
}

std::string LimitsText(const Limits& limits) {
  std::string out;
  for (const LimitField& field : kLimitFields) {
    if (const auto& v = limits.*field.member; v) {
      out += StrCat(out.empty() ? "" : " ", field.key, "=", *v);
    }
  }
  return out.empty() ? "-" : out;
}

std::string Utc(std::int64_t unix_seconds) {
  const std::time_t t = unix_seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void PrintTenants(const Config& c) {
  if (c.tenants.empty()) {
    std::printf("no tenants: `ember serve` runs open, without API keys\n");
    return;
  }
  std::printf("%-24s %-8s %-11s %-8s %-4s %s\n", "NAME", "WEIGHT", "PRIORITY", "STATE", "KEYS",
              "LIMITS");
  for (const Tenant& t : c.tenants) {
    const auto keys = std::count_if(c.keys.begin(), c.keys.end(),
                                    [&](const tenancy::ApiKey& k) { return k.tenant == t.name; });
    std::printf("%-24s %-8g %-11s %-8s %-4td %s\n", t.name.c_str(), t.weight,
                std::string(tenancy::PriorityName(t.priority)).c_str(),
                t.enabled ? "enabled" : "disabled", static_cast<std::ptrdiff_t>(keys),
                LimitsText(t.limits).c_str());
    if (!t.display_name.empty()) std::printf("  display name: %s\n", t.display_name.c_str());
    if (t.hard_budget || t.soft_budget) {
      std::printf("  budget (%s): hard %s, soft %s\n",
                  std::string(BudgetWindowName(t.budget_window)).c_str(),
                  t.hard_budget ? ("$" + FormatDollars(*t.hard_budget)).c_str() : "-",
                  t.soft_budget ? ("$" + FormatDollars(*t.soft_budget)).c_str() : "-");
    }
    for (const auto& [model, limits] : t.model_limits) {
      std::printf("  model %s: %s\n", model.c_str(), LimitsText(limits).c_str());
    }
  }
}

void PrintKeys(const Config& c) {
  if (c.keys.empty()) {
    std::printf("no keys\n");
    return;
  }
  std::printf("%-16s  %-24s  %s\n", "ID", "TENANT", "CREATED");
  for (const auto& k : c.keys) {
    std::printf("%-16s  %-24s  %s\n", k.id.c_str(), k.tenant.c_str(), Utc(k.created).c_str());
  }
}

// Runs `edit` through EditConfig; a Failure the edit raises keeps its exit code.
Outcome Edit(const std::string& data_dir, const std::function<Outcome(Config&)>& edit) {
  std::optional<Failure> failure;
  auto ok = tenancy::EditConfig(data_dir, [&](Config& c) -> Status {
    if (auto done = edit(c); !done) {
      failure = done.error();
      return InvalidArgument(done.error().message);
    }
    return {};
  });
  if (failure) return std::unexpected(*failure);
  if (!ok) return Failed(ok.error());
  return {};
}

Outcome Add(const TenancyCommands::Flags& f) {
  if (!tenancy::IsValidTenantName(f.name)) {
    return Usage(StrCat("invalid tenant name \"", f.name,
                        "\": use 1-63 of a-z 0-9 . _ -, starting with a letter or digit"));
  }
  auto done = Edit(f.data_dir, [&](Config& c) -> Outcome {
    if (c.FindTenant(f.name)) return Failed(StrCat("tenant ", f.name, " exists"));
    Tenant t;
    t.name = f.name;
    if (auto ok = ApplyTenantFlags(f, t); !ok) return ok;
    c.tenants.push_back(std::move(t));
    return {};
  });
  if (done) std::printf("added tenant %s\n", f.name.c_str());
  return done;
}

Outcome Set(const TenancyCommands::Flags& f) {
  if (f.enabled && f.disabled) return Usage("--enabled and --disabled contradict");
  auto done = Edit(f.data_dir, [&](Config& c) -> Outcome {
    Tenant* t = c.FindTenant(f.name);
    if (!t) return Failed(StrCat("no tenant ", f.name));
    return ApplyTenantFlags(f, *t);
  });
  if (done) std::printf("updated tenant %s\n", f.name.c_str());
  return done;
}

Outcome Remove(const TenancyCommands::Flags& f) {
  std::size_t keys = 0;
  auto done = Edit(f.data_dir, [&](Config& c) -> Outcome {
    auto it = std::find_if(c.tenants.begin(), c.tenants.end(),
                           [&](const Tenant& t) { return t.name == f.name; });
    if (it == c.tenants.end()) return Failed(StrCat("no tenant ", f.name));
    c.tenants.erase(it);
    keys = std::erase_if(c.keys, [&](const tenancy::ApiKey& k) { return k.tenant == f.name; });
    return {};
  });
  if (done) {
    std::printf("removed tenant %s and its %zu key%s\n", f.name.c_str(), keys,
                keys == 1 ? "" : "s");
  }
  return done;
}

Outcome CreateKey(const TenancyCommands::Flags& f) {
  std::string key, id;
  auto done = Edit(f.data_dir, [&](Config& c) -> Outcome {
    if (!c.FindTenant(f.tenant)) return Failed(StrCat("no tenant ", f.tenant));
    do {
      id = tenancy::NewKeyId();
    } while (std::any_of(c.keys.begin(), c.keys.end(),
                         [&](const tenancy::ApiKey& k) { return k.id == id; }));
    key = tenancy::NewApiKey();
    c.keys.push_back(tenancy::ApiKey{.id = id,
                                     .tenant = f.tenant,
                                     .sha256_hex = Sha256Hex(key),
                                     .created = static_cast<std::int64_t>(std::time(nullptr))});
    return {};
  });
  if (!done) return done;
  // The key alone on the last line, so that scripts can take it with `tail -n 1`.
  std::printf(
      "created key %s for tenant %s. The key is shown once, now; ember keeps only its "
      "SHA-256:\n%s\n",
      id.c_str(), f.tenant.c_str(), key.c_str());
  return {};
}

Outcome RevokeKey(const TenancyCommands::Flags& f) {
  std::string tenant;
  auto done = Edit(f.data_dir, [&](Config& c) -> Outcome {
    auto it = std::find_if(c.keys.begin(), c.keys.end(),
                           [&](const tenancy::ApiKey& k) { return k.id == f.key_id; });
    if (it == c.keys.end()) return Failed(StrCat("no key ", f.key_id));
    tenant = it->tenant;
    c.keys.erase(it);
    return {};
  });
  if (done) std::printf("revoked key %s of tenant %s\n", f.key_id.c_str(), tenant.c_str());
  return done;
}

Outcome List(const TenancyCommands::Flags& f, bool keys) {
  auto c = tenancy::ReadConfigFile(tenancy::ConfigPath(f.data_dir));
  if (!c) return Failed(c.error());
  if (f.json) {
    std::printf("%s\n", (keys ? tenancy::KeysJson(*c) : tenancy::TenantsJson(*c)).c_str());
  } else if (keys) {
    PrintKeys(*c);
  } else {
    PrintTenants(*c);
  }
  return {};
}

}  // namespace

TenancyCommands::TenancyCommands(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  Flags& f = *flags_;
  f.tenants = app.add_subcommand("tenants", "Manage tenants in DATA_DIR/tenants.toml");
  f.keys = app.add_subcommand("keys", "Manage tenants' API keys in DATA_DIR/tenants.toml");
  for (CLI::App* group : {f.tenants, f.keys}) {
    group->require_subcommand(1);
    group
        ->add_option("--data-dir", f.data_dir,
                     "ember's state on disk (as for `ember serve`); tenants live in "
                     "DIR/tenants.toml")
        ->envname("EMBER_DATA_DIR");
  }
  f.add = f.tenants->add_subcommand("add", "Add a tenant");
  AddTenantFlags(f.add, f);
  f.set = f.tenants->add_subcommand("set", "Change a tenant's settings or limits");
  AddTenantFlags(f.set, f);
  f.set->add_flag("--enabled", f.enabled, "Accept the tenant's requests again");
  f.set->add_flag("--disabled", f.disabled, "Refuse the tenant's requests (403)");
  f.set->add_option("--clear", f.clear,
                    "Remove a limit (rpm, input-tpm, output-tpm, max-concurrent, max-queued, "
                    "max-tokens, or all) or a budget (hard-budget, soft-budget); repeatable");
  f.set->add_option("--model", f.model,
                    "Apply the limit flags and --clear to this model's limits for the tenant");
  f.list = f.tenants->add_subcommand("list", "List tenants");
  f.remove = f.tenants->add_subcommand("remove", "Remove a tenant and its keys");
  f.remove->add_option("name", f.name, "Tenant name")->required();
  f.create =
      f.keys->add_subcommand("create", "Create an API key; prints it once, on the last line");
  f.create->add_option("--tenant", f.tenant, "The tenant the key belongs to")->required();
  f.key_list = f.keys->add_subcommand("list", "List keys (ids and tenants, never the keys)");
  f.revoke = f.keys->add_subcommand("revoke", "Revoke a key: refused from the next request on");
  f.revoke->add_option("id", f.key_id, "Key id (key_...)")->required();
  for (CLI::App* l : {f.list, f.key_list}) l->add_flag("--json", f.json, "Print JSON");
  // `ember tenants add x --data-dir D` as well as `ember tenants --data-dir D add x`.
  for (CLI::App* leaf : {f.add, f.set, f.list, f.remove, f.create, f.key_list, f.revoke}) {
    leaf->fallthrough();
  }
}

TenancyCommands::~TenancyCommands() = default;

bool TenancyCommands::Selected() const {
  return flags_->tenants->parsed() || flags_->keys->parsed();
}

int TenancyCommands::ParseFailed(CLI::App& app, const CLI::ParseError& error) const {
  const int code = app.exit(error);
  return code != 0 && Selected() ? 2 : code;
}

int TenancyCommands::Run() {
  const Flags& f = *flags_;
  Outcome done;
  if (f.data_dir.empty()) {
    done = Usage(StrCat(f.tenants->parsed() ? "tenants" : "keys",
                        " needs --data-dir DIR (or EMBER_DATA_DIR): the same directory "
                        "`ember serve` uses; tenants are kept in DIR/tenants.toml"));
  } else if (f.add->parsed()) {
    done = Add(f);
  } else if (f.set->parsed()) {
    done = Set(f);
  } else if (f.list->parsed()) {
    done = List(f, /*keys=*/false);
  } else if (f.remove->parsed()) {
    done = Remove(f);
  } else if (f.create->parsed()) {
    done = CreateKey(f);
  } else if (f.key_list->parsed()) {
    done = List(f, /*keys=*/true);
  } else {
    done = RevokeKey(f);
  }
  std::fflush(stdout);
  if (done) return 0;
  std::fprintf(stderr, "ember: %s\n", done.error().message.c_str());
  return done.error().code;
}

}  // namespace ember::cli
