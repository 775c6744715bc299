#include "tenancy/keys.h"

#include <cstdint>
#include <random>
#include <string_view>

namespace ember::tenancy {
namespace {

// Draws `n` characters uniformly from `alphabet` (its size divides 256 or is below it), by
// rejecting the bytes that would make the low characters more likely than the others.
std::string RandomChars(std::string_view alphabet, int n) {
  std::random_device device;
  const unsigned limit = 256 - 256 % static_cast<unsigned>(alphabet.size());
  std::string out;
  out.reserve(n);
  while (static_cast<int>(out.size()) < n) {
    std::uint32_t word = device();
    for (int i = 0; i < 4 && static_cast<int>(out.size()) < n; ++i, word >>= 8) {
      const unsigned byte = word & 0xff;
      if (byte < limit) out += alphabet[byte % alphabet.size()];
    }
  }
  return out;
}

}  // namespace

std::string NewApiKey() {
  return "ek_" + RandomChars("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 40);
}

std::string NewKeyId() { return "key_" + RandomChars("0123456789abcdef", 12); }

}  // namespace ember::tenancy
