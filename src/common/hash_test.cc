#include "common/hash.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ember {
namespace {

TEST(Hash64, StableAcrossRunsAndMachines) {
  // Cache files written by one build are checked by the next: the function must never change.
  EXPECT_EQ(Hex64(Hash64("")), Hex64(Hash64("", 0)));
  EXPECT_EQ(Hex64(Hash64("ember")), "b974abecff7cb306");
}

TEST(Hash64, EveryByteAndTheSeedMatter) {
  std::vector<unsigned char> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 7);
  const std::uint64_t base = Hash64(data.data(), data.size());
  for (std::size_t i = 0; i < data.size(); i += 37) {
    data[i] ^= 1;
    EXPECT_NE(Hash64(data.data(), data.size()), base) << "flipped bit at " << i;
    data[i] ^= 1;
  }
  EXPECT_NE(Hash64(data.data(), data.size(), 1), base);
  EXPECT_NE(Hash64(data.data(), data.size() - 1), base);  // truncation
}

TEST(ChunkedHash64, SameValueOnAnyNumberOfThreads) {
  std::vector<unsigned char> data(kHashChunk * 2 + 12345);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i ^ (i >> 9));
  const std::uint64_t one = ChunkedHash64(data.data(), data.size(), 1);
  EXPECT_EQ(ChunkedHash64(data.data(), data.size(), 2), one);
  EXPECT_EQ(ChunkedHash64(data.data(), data.size(), 8), one);
  data[kHashChunk + 5] ^= 0x80;  // a flip in the second chunk
  EXPECT_NE(ChunkedHash64(data.data(), data.size(), 2), one);
}

TEST(Hex64, SixteenLowerCaseDigits) {
  EXPECT_EQ(Hex64(0), "0000000000000000");
  EXPECT_EQ(Hex64(0xABCDEF0123456789ULL), "abcdef0123456789");
}

}  // namespace
}  // namespace ember
