// libFuzzer target: the ledger's prices file and instance table (ledger::ParsePrices and
// ParseInstanceTable over common/toml_reader.cc) fed arbitrary text. They must never crash or
// hang; a rejection is InvalidArgument naming the file; an accepted prices file holds only
// non-negative micro-dollar amounts.
//
// Input (see fuzz/corpus/prices/): any bytes; the seeds are small valid and invalid files.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "ledger/advise.h"
#include "ledger/prices.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto prices = ember::ledger::ParsePrices(text, "prices.toml");
  if (!prices) {
    FUZZ_CHECK(prices.error().code == ember::ErrorCode::kInvalidArgument, "code %d: %s",
               static_cast<int>(prices.error().code), prices.error().message.c_str());
    FUZZ_CHECK(prices.error().message.starts_with("prices.toml"), "no file: %s",
               prices.error().message.c_str());
  } else {
    for (const auto& [model, p] : prices->models) {
      FUZZ_CHECK(p.input_per_mtok >= 0 && p.cached_input_per_mtok >= 0 && p.output_per_mtok >= 0,
                 "negative price for %s", model.c_str());
    }
    FUZZ_CHECK(prices->instance.price_per_hour >= 0, "negative instance price");
  }
  auto offers = ember::ledger::ParseInstanceTable(text, "instances.toml");
  if (!offers) {
    FUZZ_CHECK(offers.error().message.starts_with("instances.toml"), "no file: %s",
               offers.error().message.c_str());
  }
  return 0;
}
