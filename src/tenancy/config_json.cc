// TenantsJson and KeysJson, hand-written: nlohmann is private to api/, and the two shapes are
// small and fixed. detail::Quote escapes every string the user wrote.
#include "common/log.h"
#include "tenancy/store.h"
#include "tenancy/validate.h"

namespace ember::tenancy {
namespace {

using detail::Quote;

void AppendLimits(std::string& out, const Limits& limits) {
  for (const LimitField& f : kLimitFields) {
    if (const auto& v = limits.*f.member; v) out += StrCat(",", Quote(f.key), ":", *v);
  }
}

}  // namespace

std::string TenantsJson(const Config& config) {
  std::string out = "[";
  for (const Tenant& t : config.tenants) {
    if (out.size() > 1) out += ",";
    out += StrCat("{\"name\":", Quote(t.name), ",\"display_name\":", Quote(t.display_name),
                  ",\"weight\":", detail::FormatDouble(t.weight),
                  ",\"priority\":", Quote(PriorityName(t.priority)),
                  ",\"enabled\":", t.enabled ? "true" : "false");
    AppendLimits(out, t.limits);
    if (t.hard_budget) out += StrCat(",\"hard_budget_microdollars\":", *t.hard_budget);
    if (t.soft_budget) out += StrCat(",\"soft_budget_microdollars\":", *t.soft_budget);
    if (t.hard_budget || t.soft_budget) {
      out += StrCat(",\"budget_window\":", Quote(BudgetWindowName(t.budget_window)));
    }
    out += ",\"models\":{";
    bool first = true;
    for (const auto& [model, limits] : t.model_limits) {
      std::string fields;
      AppendLimits(fields, limits);
      if (!fields.empty()) fields.erase(0, 1);  // the leading comma
      out += StrCat(first ? "" : ",", Quote(model), ":{", fields, "}");
      first = false;
    }
    out += "}}";
  }
  return out + "]";
}

std::string KeysJson(const Config& config) {
  std::string out = "[";
  for (const ApiKey& k : config.keys) {
    if (out.size() > 1) out += ",";
    out += StrCat("{\"id\":", Quote(k.id), ",\"tenant\":", Quote(k.tenant),
                  ",\"created\":", k.created, "}");
  }
  return out + "]";
}

}  // namespace ember::tenancy
