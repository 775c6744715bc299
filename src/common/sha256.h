// SHA-256 (FIPS 180-4) for API keys: the tenancy store keeps only the hash of each key, and the
// server hashes a presented key to look it up. Short inputs, so a plain portable implementation
// is enough; no third-party crypto library for one function. Thread-safe (no state).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ember {

std::array<std::uint8_t, 32> Sha256(std::string_view data);

// 64 lower-case hex digits.
std::string Sha256Hex(std::string_view data);

// Whether a == b, taking a time that depends on the lengths only, never on where the contents
// differ (a secret compared with a guess must not leak how much of the guess was right).
bool ConstantTimeEqual(std::string_view a, std::string_view b);

}  // namespace ember
