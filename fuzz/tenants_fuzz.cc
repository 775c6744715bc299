// libFuzzer target: tenancy's tenants.toml reader (ParseConfig over common/toml_reader.cc) fed
// arbitrary text. It must never crash or hang; a rejection is InvalidArgument naming the file
// ("FILE:" or "FILE:LINE: ..."); an accepted configuration survives the CLI's rewrite:
// FormatConfig's text parses back to the same Config (what `ember tenants` writes, the server reads
// unchanged).
//
// Input (see fuzz/corpus/tenants/): any bytes; the seeds are small valid and invalid files.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "tenancy/store.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ember::tenancy::ParseConfig(text, "tenants.toml");
  if (!config) {
    FUZZ_CHECK(config.error().code == ember::ErrorCode::kInvalidArgument, "code %d: %s",
               static_cast<int>(config.error().code), config.error().message.c_str());
    FUZZ_CHECK(config.error().message.starts_with("tenants.toml:"), "no file: %s",
               config.error().message.c_str());
    return 0;
  }
  const std::string rewritten = ember::tenancy::FormatConfig(*config);
  auto again = ember::tenancy::ParseConfig(rewritten, "tenants.toml");
  FUZZ_CHECK(again.has_value(), "the rewrite does not parse: %s\n%s",
             again ? "" : again.error().message.c_str(), rewritten.c_str());
  FUZZ_CHECK(*again == *config, "the rewrite parses to another config:\n%s", rewritten.c_str());
  return 0;
}
