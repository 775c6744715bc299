#include "bench/prompt.h"

#include <array>
#include <cstdio>

namespace ember::bench {
namespace {

constexpr std::array<std::string_view, 200> kWords = {
    "the",      "of",        "and",    "to",     "in",     "is",     "you",    "that",
    "it",       "he",        "was",    "for",    "on",     "are",    "as",     "with",
    "his",      "they",      "at",     "be",     "this",   "have",   "from",   "or",
    "one",      "had",       "by",     "word",   "but",    "not",    "what",   "all",
    "were",     "we",        "when",   "your",   "can",    "said",   "there",  "use",
    "an",       "each",      "which",  "she",    "do",     "how",    "their",  "if",
    "will",     "up",        "other",  "about",  "out",    "many",   "then",   "them",
    "these",    "so",        "some",   "her",    "would",  "make",   "like",   "him",
    "into",     "time",      "has",    "look",   "two",    "more",   "write",  "go",
    "see",      "number",    "no",     "way",    "could",  "people", "my",     "than",
    "first",    "water",     "been",   "call",   "who",    "oil",    "its",    "now",
    "find",     "long",      "down",   "day",    "did",    "get",    "come",   "made",
    "may",      "part",      "over",   "new",    "sound",  "take",   "only",   "little",
    "work",     "know",      "place",  "year",   "live",   "me",     "back",   "give",
    "most",     "very",      "after",  "thing",  "our",    "just",   "name",   "good",
    "sentence", "man",       "think",  "say",    "great",  "where",  "help",   "through",
    "much",     "before",    "line",   "right",  "too",    "mean",   "old",    "any",
    "same",     "tell",      "boy",    "follow", "came",   "want",   "show",   "also",
    "around",   "form",      "three",  "small",  "set",    "put",    "end",    "does",
    "another",  "well",      "large",  "must",   "big",    "even",   "such",   "because",
    "turn",     "here",      "why",    "ask",    "went",   "men",    "read",   "need",
    "land",     "different", "home",   "us",     "move",   "try",    "kind",   "hand",
    "picture",  "again",     "change", "off",    "play",   "spell",  "air",    "away",
    "animal",   "house",     "point",  "page",   "letter", "mother", "answer", "found",
    "study",    "still",     "learn",  "should", "world",  "high",   "every",  "near",
};

// SplitMix64: tiny, portable and identical on every platform (unlike std distributions).
std::uint64_t SplitMix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::string_view Word(std::size_t index) { return kWords[index % kWords.size()]; }
std::size_t WordCount() { return kWords.size(); }

std::string GeneratePrompt(std::uint64_t seed, std::uint64_t index, int min_words, int max_words) {
  if (min_words < 1) min_words = 1;
  if (max_words < min_words) max_words = min_words;
  std::uint64_t state = seed ^ (index * 0xD1B54A32D192ED03ull);
  SplitMix64(state);
  const auto span = static_cast<std::uint64_t>(max_words - min_words + 1);
  const auto words = static_cast<int>(min_words + SplitMix64(state) % span);
  std::string prompt;
  for (int i = 0; i < words; ++i) {
    if (i > 0) prompt += ' ';
    prompt += kWords[SplitMix64(state) % kWords.size()];
  }
  return prompt;
}

std::string JsonEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string BuildRequestBody(const RequestBodyOptions& options, std::string_view prompt) {
  std::string body = "{";
  if (!options.model.empty()) body += "\"model\":\"" + JsonEscape(options.model) + "\",";
  if (options.chat) {
    body += "\"messages\":[{\"role\":\"user\",\"content\":\"" + JsonEscape(prompt) + "\"}],";
  } else {
    body += "\"prompt\":\"" + JsonEscape(prompt) + "\",";
  }
  char numbers[96];
  std::snprintf(numbers, sizeof(numbers), "\"max_tokens\":%d,\"temperature\":%g,",
                options.max_tokens, static_cast<double>(options.temperature));
  body += numbers;
  if (options.stream) {
    body += "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
  } else {
    body += "\"stream\":false}";
  }
  return body;
}

}  // namespace ember::bench
