#include "engine/llama/llama_tokenizer.h"

#include <llama.h>

#include <vector>

#include "common/log.h"

namespace ember::engine {
namespace {

// Builds llama_chat_message views; the strings must outlive the returned vector.
std::vector<llama_chat_message> ToLlamaMessages(std::span<const ChatMessage> messages) {
  std::vector<llama_chat_message> out;
  out.reserve(messages.size());
  for (const ChatMessage& m : messages) out.push_back({m.role.c_str(), m.content.c_str()});
  return out;
}

// Returns the rendered prompt, or nullopt when llama.cpp does not know the template.
std::optional<std::string> Render(const std::string& tmpl, std::span<const ChatMessage> messages) {
  const auto chat = ToLlamaMessages(messages);
  std::size_t total = 0;
  for (const ChatMessage& m : messages) total += m.content.size();
  std::string buf(2 * total + 256, '\0');
  int n = llama_chat_apply_template(tmpl.c_str(), chat.data(), chat.size(), true, buf.data(),
                                    static_cast<int32_t>(buf.size()));
  if (n < 0) return std::nullopt;
  if (static_cast<std::size_t>(n) > buf.size()) {
    buf.resize(n);
    n = llama_chat_apply_template(tmpl.c_str(), chat.data(), chat.size(), true, buf.data(),
                                  static_cast<int32_t>(buf.size()));
    if (n < 0) return std::nullopt;
  }
  buf.resize(n);
  return buf;
}

}  // namespace

std::string FallbackChatPrompt(std::span<const ChatMessage> messages) {
  std::string out;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      out += m.content;
      out += "\n\n";
    } else {
      out += m.role == "assistant" ? "Assistant: " : "User: ";
      out += m.content;
      out += "\n";
    }
  }
  out += "Assistant:";
  return out;
}

LlamaTokenizer::LlamaTokenizer(const llama_model* model) : vocab_(llama_model_get_vocab(model)) {
  const char* tmpl = llama_model_chat_template(model, nullptr);
  if (tmpl == nullptr) {
    template_description_ = "fallback";
    return;
  }
  const ChatMessage probe[] = {{"system", "s"}, {"user", "u"}};
  if (!Render(tmpl, probe)) {
    log::Warn("the model's chat template is not one llama.cpp can apply; chat requests use ",
              "ember's documented fallback format");
    template_description_ = "fallback";
    return;
  }
  template_ = tmpl;
  std::string first_line = template_.substr(0, template_.find('\n')).substr(0, 60);
  template_description_ = "gguf:" + first_line;
}

Result<std::vector<Token>> LlamaTokenizer::Tokenize(std::string_view text, bool add_special) const {
  if (text.size() > static_cast<std::size_t>(INT32_MAX / 2)) {
    return InvalidArgument("prompt is too long", "prompt");
  }
  std::vector<Token> tokens(text.size() + 8);
  int n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                         static_cast<int32_t>(tokens.size()), add_special, true);
  if (n < 0) {
    tokens.resize(-n);
    n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                       static_cast<int32_t>(tokens.size()), add_special, true);
  }
  if (n < 0) return Internal("tokenizer failed on the prompt");
  tokens.resize(n);
  return tokens;
}

std::string LlamaTokenizer::TokenPiece(Token token) const {
  char buf[128];
  int n = llama_token_to_piece(vocab_, token, buf, sizeof(buf), 0, false);
  if (n >= 0) return std::string(buf, n);
  std::string big(-n, '\0');
  n = llama_token_to_piece(vocab_, token, big.data(), static_cast<int32_t>(big.size()), 0, false);
  big.resize(n < 0 ? 0 : n);
  return big;
}

bool LlamaTokenizer::IsEndOfGeneration(Token token) const {
  return llama_vocab_is_eog(vocab_, token);
}

int LlamaTokenizer::VocabSize() const { return llama_vocab_n_tokens(vocab_); }

Result<std::string> LlamaTokenizer::ApplyChatTemplate(std::span<const ChatMessage> messages) const {
  if (template_.empty()) return FallbackChatPrompt(messages);
  auto rendered = Render(template_, messages);
  if (!rendered)
    return InvalidArgument("the model's chat template rejected these messages", "messages");
  return *rendered;
}

}  // namespace ember::engine
