// The cost model: what a model's tokens cost the tenant (list prices per million tokens) and
// what the machine costs per hour, read from the file given to `ember serve --prices FILE`
// (docs/examples/prices.toml). Parsed once at start-up (or on reload) on the caller's thread;
// a Prices value is plain data, safe to read from any thread once built. Money is exact
// integer micro-dollars: "0.15" in the file is 150000, never a double.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/money.h"

namespace ember::ledger {

// Micro-dollars per million tokens.
struct ModelPrice {
  Microdollars input_per_mtok = 0;         // prompt tokens not served from the KV cache
  Microdollars cached_input_per_mtok = 0;  // prompt tokens reused from the KV cache
  Microdollars output_per_mtok = 0;        // completion tokens

  bool operator==(const ModelPrice&) const = default;
};

struct InstancePrice {
  Microdollars price_per_hour = 0;  // what the machine costs while it runs
  // For a spot instance, what on-demand would cost (reports show the saving); otherwise
  // equal to price_per_hour.
  Microdollars on_demand_price_per_hour = 0;
  bool spot = false;
  std::string name = {};  // e.g. "m7i.2xlarge"; "" = not given
  // A spot instance's warning before it is taken back (AWS 120 s, GCP and Azure 30 s): the drain
  // after SIGTERM is bounded by it. 0 = not given (30 s is assumed for a spot instance).
  std::int64_t interruption_notice_seconds = 0;

  bool operator==(const InstancePrice&) const = default;
};

struct Prices {
  std::map<std::string, ModelPrice> models = {};      // [models."ID"]
  std::optional<ModelPrice> fallback = std::nullopt;  // [models."*"]: any model not listed
  InstancePrice instance = {};                        // [instance]

  // The price of `model`: its own entry, else the "*" entry, else nullptr (its tokens cost 0).
  const ModelPrice* For(std::string_view model) const;

  bool operator==(const Prices&) const = default;
};

// Parses a prices file. Money may be written as an integer or a decimal with at most six
// fraction digits; negative amounts, exponents, unknown keys and wrong types are refused with
// kInvalidArgument "FILE:LINE: ...". An empty file is valid: no prices, everything costs 0.
// cached_input_per_mtok defaults to input_per_mtok; on_demand_price_per_hour to
// price_per_hour.
[[nodiscard]] Result<Prices> ParsePrices(std::string_view text, std::string_view file_name);

// Reads and parses `path`; kNotFound when it cannot be read.
[[nodiscard]] Result<Prices> LoadPrices(const std::filesystem::path& path);

namespace detail {
// The whole of a small text file (prices.toml, instances.toml); kNotFound when unreadable.
[[nodiscard]] Result<std::string> ReadTextFile(const std::filesystem::path& path,
                                               std::string_view what);
}  // namespace detail

}  // namespace ember::ledger
