// Deterministic benchmark prompts and the OpenAI request bodies that carry them. Prompt i
// depends only on (seed, i), so every server under comparison receives the same prompts in
// the same order no matter how requests are spread over workers. Pure; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ember::bench {

// The built-in vocabulary prompts are drawn from (~200 common English words).
std::string_view Word(std::size_t index);
std::size_t WordCount();

// Prompt number `index`: between min_words and max_words words (uniform), space separated.
std::string GeneratePrompt(std::uint64_t seed, std::uint64_t index, int min_words, int max_words);

// Escapes `text` for use inside a JSON string literal (without the quotes).
std::string JsonEscape(std::string_view text);

struct RequestBodyOptions {
  std::string model;  // omitted when empty
  bool chat = false;  // "messages" instead of "prompt"
  int max_tokens = 64;
  float temperature = 0.0f;
  bool stream = true;  // adds stream_options.include_usage
};

std::string BuildRequestBody(const RequestBodyOptions& options, std::string_view prompt);

}  // namespace ember::bench
