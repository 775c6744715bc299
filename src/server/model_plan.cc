// The pure parts of server/models.h: --model parsing and the eviction plan.
#include <algorithm>
#include <cctype>
#include <map>

#include "common/log.h"
#include "server/models.h"

namespace ember::server {

Result<std::vector<ModelSpec>> ParseModelSpecs(const std::vector<std::string>& values,
                                               const std::string& model_id) {
  if (values.empty()) return InvalidArgument("serve needs --model PATH (or EMBER_MODEL)", "model");
  if (!model_id.empty() && values.size() > 1) {
    return InvalidArgument(
        "--model-id names a single model; with several --model give each one as ID=PATH");
  }
  std::vector<ModelSpec> specs;
  std::map<std::string, std::string> seen;  // id -> the --model value that gave it
  for (const std::string& value : values) {
    ModelSpec spec;
    const auto eq = value.find('=');
    if (eq == std::string::npos) {
      spec.path = value;
      spec.id = model_id.empty() ? engine::DefaultModelId(value) : model_id;
    } else {
      if (!model_id.empty()) {
        return InvalidArgument(
            StrCat("--model '", value, "' names its id (ID=PATH) and --model-id names it too"));
      }
      spec.id = value.substr(0, eq);
      spec.path = value.substr(eq + 1);
    }
    if (spec.path.empty() || spec.id.empty()) {
      return InvalidArgument(
          StrCat("malformed --model '", value, "': expected PATH or ID=PATH, both non-empty"));
    }
    for (unsigned char c : spec.id) {
      if (std::isspace(c) || std::iscntrl(c)) {
        return InvalidArgument(
            StrCat("malformed --model '", value, "': a model id may not hold whitespace"));
      }
    }
    if (auto [it, fresh] = seen.emplace(spec.id, value); !fresh) {
      return InvalidArgument(StrCat("two models have the id '", spec.id, "' (--model '", it->second,
                                    "' and --model '", value, "'); give each its own as ID=PATH"));
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

std::optional<std::vector<std::string>> PlanEviction(std::vector<ResidentModel> resident,
                                                     std::uint64_t used, std::uint64_t need,
                                                     std::uint64_t budget) {
  if (budget == 0 || used + need <= budget) return std::vector<std::string>{};
  if (need > budget) return std::nullopt;
  std::erase_if(resident, [](const ResidentModel& r) { return r.busy; });
  std::stable_sort(
      resident.begin(), resident.end(),
      [](const ResidentModel& a, const ResidentModel& b) { return a.last_used < b.last_used; });
  std::vector<std::string> victims;
  std::uint64_t freed = 0;
  for (const ResidentModel& r : resident) {
    victims.push_back(r.id);
    freed += r.bytes;
    if (used + need <= budget + freed) return victims;
  }
  return std::nullopt;
}

std::string_view ModelStateName(ModelState state) {
  switch (state) {
    case ModelState::kUnloaded:
      return "unloaded";
    case ModelState::kLoading:
      return "loading";
    case ModelState::kLoaded:
      return "loaded";
    case ModelState::kUnloading:
      return "unloading";
  }
  return "unloaded";
}

}  // namespace ember::server
