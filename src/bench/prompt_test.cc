#include "bench/prompt.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <sstream>

namespace ember::bench {
namespace {

using ::testing::HasSubstr;

int CountWords(const std::string& text) {
  std::istringstream in(text);
  int count = 0;
  for (std::string word; in >> word;) ++count;
  return count;
}

TEST(PromptTest, VocabularyIsTwoHundredDistinctWords) {
  std::set<std::string_view> words;
  for (std::size_t i = 0; i < WordCount(); ++i) {
    EXPECT_FALSE(Word(i).empty()) << i;
    words.insert(Word(i));
  }
  EXPECT_EQ(WordCount(), 200u);
  EXPECT_EQ(words.size(), WordCount());
}

TEST(PromptTest, SameSeedAndIndexGiveSamePrompt) {
  EXPECT_EQ(GeneratePrompt(42, 7, 16, 64), GeneratePrompt(42, 7, 16, 64));
  EXPECT_NE(GeneratePrompt(42, 7, 16, 64), GeneratePrompt(42, 8, 16, 64));
  EXPECT_NE(GeneratePrompt(42, 7, 16, 64), GeneratePrompt(43, 7, 16, 64));
}

TEST(PromptTest, PinnedOutputSoServersAndRunsCompareLikeForLike) {
  // Changing the generator silently would make old BENCHMARKS.md rows incomparable.
  EXPECT_EQ(GeneratePrompt(42, 0, 4, 4), "some went other like");
  EXPECT_EQ(GeneratePrompt(42, 1, 3, 6), "of take animal but");
}

TEST(PromptTest, LengthsStayInRangeAndVary) {
  std::set<int> lengths;
  for (std::uint64_t i = 0; i < 500; ++i) {
    const int words = CountWords(GeneratePrompt(1, i, 16, 64));
    EXPECT_GE(words, 16);
    EXPECT_LE(words, 64);
    lengths.insert(words);
  }
  EXPECT_GT(lengths.size(), 30u);
  EXPECT_EQ(CountWords(GeneratePrompt(1, 0, 5, 5)), 5);
}

TEST(PromptTest, CompletionBody) {
  RequestBodyOptions options;
  options.model = "m\"x";
  options.max_tokens = 8;
  options.temperature = 0.7f;
  EXPECT_EQ(BuildRequestBody(options, "hello world"),
            R"({"model":"m\"x","prompt":"hello world","max_tokens":8,"temperature":0.7,)"
            R"("stream":true,"stream_options":{"include_usage":true}})");
}

TEST(PromptTest, ChatBodyWithoutModelNotStreamed) {
  RequestBodyOptions options;
  options.chat = true;
  options.stream = false;
  EXPECT_EQ(BuildRequestBody(options, "hi"),
            R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":64,)"
            R"("temperature":0,"stream":false})");
}

TEST(PromptTest, JsonEscape) {
  EXPECT_EQ(JsonEscape("a\"b\\c\nd\x01"), "a\\\"b\\\\c\\nd\\u0001");
  EXPECT_THAT(JsonEscape("plain"), HasSubstr("plain"));
}

}  // namespace
}  // namespace ember::bench
