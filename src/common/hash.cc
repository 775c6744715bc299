#include "common/hash.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace ember {
namespace {

constexpr std::uint64_t kP1 = 0x9E3779B185EBCA87ULL;
constexpr std::uint64_t kP2 = 0xC2B2AE3D27D4EB4FULL;
constexpr std::uint64_t kP3 = 0x165667B19E3779F9ULL;

inline std::uint64_t Rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline std::uint64_t Load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline std::uint64_t Lane(std::uint64_t acc, std::uint64_t word) {
  return Rotl(acc + word * kP2, 31) * kP1;
}

inline std::uint64_t Avalanche(std::uint64_t h) {
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

}  // namespace

std::uint64_t Hash64(const void* data, std::size_t size, std::uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  std::uint64_t a = seed + kP1 + kP2, b = seed + kP2, c = seed, d = seed - kP1;
  while (end - p >= 32) {
    a = Lane(a, Load64(p));
    b = Lane(b, Load64(p + 8));
    c = Lane(c, Load64(p + 16));
    d = Lane(d, Load64(p + 24));
    p += 32;
  }
  std::uint64_t h = Rotl(a, 1) + Rotl(b, 7) + Rotl(c, 12) + Rotl(d, 18) + size;
  while (end - p >= 8) {
    h = Rotl(h ^ Lane(0, Load64(p)), 27) * kP1 + kP3;
    p += 8;
  }
  while (p < end) {
    h = Rotl(h ^ (*p++ * kP3), 11) * kP1;
  }
  return Avalanche(h);
}

std::uint64_t ChunkedHash64(const void* data, std::size_t size, int threads) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  const std::size_t chunks = std::max<std::size_t>(1, (size + kHashChunk - 1) / kHashChunk);
  std::vector<std::uint64_t> hashes(chunks);
  auto work = [&](std::size_t first, std::size_t step) {
    for (std::size_t i = first; i < chunks; i += step) {
      const std::size_t off = i * kHashChunk;
      hashes[i] = Hash64(bytes + off, std::min(kHashChunk, size - std::min(size, off)), i);
    }
  };
  const std::size_t n = std::clamp<std::size_t>(threads, 1, chunks);
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < n; ++t) pool.emplace_back(work, t, n);
  work(0, n);
  for (std::thread& t : pool) t.join();
  return Hash64(hashes.data(), hashes.size() * sizeof(std::uint64_t), size);
}

std::string Hex64(std::uint64_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) out[i] = kDigits[value & 15];
  return out;
}

}  // namespace ember
