// Tokenizer over a loaded llama_vocab. Internal to engine/llama.
#pragma once

#include <string>

#include "engine/engine.h"

struct llama_model;
struct llama_vocab;

namespace ember::engine {

class LlamaTokenizer final : public Tokenizer {
 public:
  explicit LlamaTokenizer(const llama_model* model);

  Result<std::vector<Token>> Tokenize(std::string_view text, bool add_special) const override;
  std::string TokenPiece(Token token) const override;
  bool IsEndOfGeneration(Token token) const override;
  int VocabSize() const override;
  Result<std::string> ApplyChatTemplate(std::span<const ChatMessage> messages) const override;

  // "gguf:<first line>" when the model's template is one llama.cpp can apply, else "fallback".
  const std::string& TemplateDescription() const { return template_description_; }

 private:
  const llama_vocab* vocab_;
  std::string template_;  // empty = use the fallback format
  std::string template_description_;
};

// The documented fallback chat format (docs/api.md), used when a model has no usable template.
std::string FallbackChatPrompt(std::span<const ChatMessage> messages);

}  // namespace ember::engine
