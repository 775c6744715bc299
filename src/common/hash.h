// Fast non-cryptographic 64-bit hashing for integrity checks of large files (the repacked-
// weight cache verifies hundreds of MiB at every start, so speed matters more than strength:
// it catches truncation, bit rot and torn writes, not an adversary).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ember {

// Four independent multiply-rotate lanes over 32-byte stripes, mixed at the end; ~1 cycle
// per byte on x86-64. Same input and seed, same value, on every machine (little-endian).
std::uint64_t Hash64(const void* data, std::size_t size, std::uint64_t seed = 0);

inline std::uint64_t Hash64(std::string_view text, std::uint64_t seed = 0) {
  return Hash64(text.data(), text.size(), seed);
}

// Hash64 of the sequence of Hash64 values of each kChunk-byte chunk of [data, data+size):
// the chunks are hashed on up to `threads` threads, and the value does not depend on how many.
inline constexpr std::size_t kHashChunk = std::size_t{64} << 20;
std::uint64_t ChunkedHash64(const void* data, std::size_t size, int threads);

// 16 lower-case hex digits.
std::string Hex64(std::uint64_t value);

}  // namespace ember
