// ParsePrices: common/toml_reader.h reads the text into nodes; the Parser below checks them
// against the prices.toml schema, each error with its FILE:LINE, and turns money into exact
// micro-dollars through the number as written (Node::number_text), never through a double.
#include "ledger/prices.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>

#include "common/log.h"
#include "common/toml_reader.h"

namespace ember::ledger {
namespace {

using toml::Node;

constexpr std::array<std::string_view, 2> kRootKeys = {"models", "instance"};
constexpr std::array<std::string_view, 3> kModelKeys = {"input_per_mtok", "cached_input_per_mtok",
                                                        "output_per_mtok"};
constexpr std::array<std::string_view, 5> kInstanceKeys = {
    "price_per_hour", "spot", "on_demand_price_per_hour", "name", "interruption_notice_seconds"};

class Parser {
 public:
  explicit Parser(std::string_view file) : file_(file) {}

  Result<Prices> Parse(const Node& root) {
    Prices prices;
    for (const auto& [key, value] : root.table) {
      if (auto ok = Known(key, *value, "at the top level", kRootKeys); !ok) {
        return std::unexpected(ok.error());
      }
      if (key == "models") {
        if (auto ok = Models(*value, prices); !ok) return std::unexpected(ok.error());
      } else if (auto ok = Instance(*value, prices.instance); !ok) {
        return std::unexpected(ok.error());
      }
    }
    return prices;
  }

 private:
  std::unexpected<Error> Fail(const Node& at, std::string_view why) const {
    return toml::ErrorAt(file_, at, why);
  }
  Status Known(const std::string& key, const Node& value, std::string_view where,
               std::span<const std::string_view> allowed) const {
    return toml::CheckKey(file_, key, value, where, allowed);
  }
  Result<Microdollars> Money(const Node& v, std::string_view what) const {
    return toml::Dollars(file_, v, what);
  }

  Status Models(const Node& models, Prices& prices) const {
    if (!models.is_table()) {
      return Fail(models, StrCat("models must be a table of models ([models.\"ID\"]), not ",
                                 toml::KindName(models)));
    }
    for (const auto& [id, value] : models.table) {
      auto price = Model(id, *value);
      if (!price) return std::unexpected(price.error());
      if (id == "*") {
        prices.fallback = *price;
      } else {
        prices.models[id] = *price;
      }
    }
    return {};
  }

  Result<ModelPrice> Model(const std::string& id, const Node& table) const {
    const std::string where = StrCat("[models.\"", id, "\"]");
    if (!table.is_table()) {
      return Fail(table, StrCat(where, " must be a table of prices, not ", toml::KindName(table)));
    }
    ModelPrice price;
    bool cached_given = false;
    for (const auto& [key, value] : table.table) {
      if (auto ok = Known(key, *value, StrCat("in ", where), kModelKeys); !ok) {
        return std::unexpected(ok.error());
      }
      auto money = Money(*value, StrCat("models.\"", id, "\".", key));
      if (!money) return std::unexpected(money.error());
      if (key == "input_per_mtok") {
        price.input_per_mtok = *money;
      } else if (key == "cached_input_per_mtok") {
        price.cached_input_per_mtok = *money;
        cached_given = true;
      } else {
        price.output_per_mtok = *money;
      }
    }
    if (!cached_given) price.cached_input_per_mtok = price.input_per_mtok;
    return price;
  }

  Status Instance(const Node& table, InstancePrice& instance) const {
    if (!table.is_table()) {
      return Fail(table,
                  StrCat("instance must be a table ([instance]), not ", toml::KindName(table)));
    }
    std::optional<Microdollars> on_demand;
    const Node* on_demand_node = nullptr;
    for (const auto& [key, value] : table.table) {
      if (auto ok = Known(key, *value, "in [instance]", kInstanceKeys); !ok) {
        return std::unexpected(ok.error());
      }
      if (key == "spot") {
        if (!value->is_boolean()) {
          return Fail(*value,
                      StrCat("instance.spot must be true or false, not ", toml::KindName(*value)));
        }
        instance.spot = value->boolean;
      } else if (key == "interruption_notice_seconds") {
        if (!value->is_integer() || value->integer < 1 || value->integer > 3600) {
          return Fail(*value,
                      "instance.interruption_notice_seconds must be an integer of "
                      "seconds from 1 to 3600");
        }
        instance.interruption_notice_seconds = value->integer;
      } else if (key == "name") {
        if (!value->is_string()) {
          return Fail(*value,
                      StrCat("instance.name must be a string, not ", toml::KindName(*value)));
        }
        instance.name = value->string;
      } else {
        auto money = Money(*value, StrCat("instance.", key));
        if (!money) return std::unexpected(money.error());
        if (key == "price_per_hour") {
          instance.price_per_hour = *money;
        } else {
          on_demand = *money;
          on_demand_node = value.get();
        }
      }
    }
    if (on_demand && !instance.spot && *on_demand != instance.price_per_hour) {
      return Fail(*on_demand_node,
                  "instance.on_demand_price_per_hour is for spot instances (spot = true); an "
                  "on-demand instance's price is price_per_hour");
    }
    instance.on_demand_price_per_hour = on_demand.value_or(instance.price_per_hour);
    return {};
  }

  std::string_view file_;
};

}  // namespace

const ModelPrice* Prices::For(std::string_view model) const {
  if (auto it = models.find(std::string(model)); it != models.end()) return &it->second;
  return fallback ? &*fallback : nullptr;
}

Result<Prices> ParsePrices(std::string_view text, std::string_view file_name) {
  auto root = toml::Read(text, file_name);
  if (!root) return std::unexpected(root.error());
  return Parser(file_name).Parse(**root);
}

Result<Prices> LoadPrices(const std::filesystem::path& path) {
  auto text = detail::ReadTextFile(path, "prices file");
  if (!text) return std::unexpected(text.error());
  return ParsePrices(*text, path.string());
}

namespace detail {

Result<std::string> ReadTextFile(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return NotFound(StrCat("cannot read ", what, " ", path.string(), ": ", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return NotFound(StrCat("cannot read ", what, " ", path.string(), ": ", std::strerror(errno)));
  }
  return std::move(text).str();
}

}  // namespace detail
}  // namespace ember::ledger
