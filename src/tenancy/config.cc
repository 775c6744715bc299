#include "tenancy/config.h"

#include <algorithm>
#include <utility>

namespace ember::tenancy {

std::string_view PriorityName(Priority p) {
  switch (p) {
    case Priority::kInteractive:
      return "interactive";
    case Priority::kBatch:
      return "batch";
  }
  return "interactive";
}

std::optional<Priority> ParsePriority(std::string_view name) {
  if (name == "interactive") return Priority::kInteractive;
  if (name == "batch") return Priority::kBatch;
  return std::nullopt;
}

bool IsValidTenantName(std::string_view name) {
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (name.empty() || name.size() > 63 || !alnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

const Tenant* Config::FindTenant(std::string_view name) const {
  auto it =
      std::find_if(tenants.begin(), tenants.end(), [&](const Tenant& t) { return t.name == name; });
  return it == tenants.end() ? nullptr : &*it;
}

Tenant* Config::FindTenant(std::string_view name) {
  return const_cast<Tenant*>(std::as_const(*this).FindTenant(name));
}

}  // namespace ember::tenancy
