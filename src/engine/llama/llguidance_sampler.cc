#include "engine/llama/llguidance_sampler.h"

#include <llama.h>
#include <llguidance.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/log.h"

namespace ember::engine {

class LlgVocabulary {
 public:
  LlgVocabulary(const llama_vocab* vocab, LlgTokenizer* tokenizer)
      : vocab_(vocab), tokenizer_(tokenizer) {}
  ~LlgVocabulary() { llg_free_tokenizer(tokenizer_); }
  LlgVocabulary(const LlgVocabulary&) = delete;
  LlgVocabulary& operator=(const LlgVocabulary&) = delete;

  const llama_vocab* vocab() const { return vocab_; }
  const LlgTokenizer* tokenizer() const { return tokenizer_; }

 private:
  const llama_vocab* vocab_;
  LlgTokenizer* tokenizer_;
};

namespace {

// A JSON string holding a Rust regex: " " or 1-2 newlines then up to 20 spaces or tabs.
constexpr const char* kWhitespace = R"(\\x20|\\n{1,2}[\\x20\\t]{0,20})";

// llguidance's tokenize callback: the bytes as libllama tokenizes text, with no BOS and no
// special-token parsing. Returns the full count even when `out` is shorter. Thread-safe
// (libllama's tokenizer only reads the vocabulary).
std::size_t Tokenize(const void* user, const std::uint8_t* bytes, std::size_t len,
                     std::uint32_t* out, std::size_t out_len) {
  const auto* vocab = static_cast<const llama_vocab*>(user);
  // llama_token and std::uint32_t are the signed and unsigned forms of one type: aliasing is
  // allowed, and token ids are never negative.
  const int n = llama_tokenize(vocab, reinterpret_cast<const char*>(bytes),
                               static_cast<std::int32_t>(len), reinterpret_cast<llama_token*>(out),
                               static_cast<std::int32_t>(out_len), false, false);
  return static_cast<std::size_t>(n < 0 ? -n : n);
}

// One token's bytes as generated text shows them; a control token (which prints nothing as
// text) is its special form behind llguidance's 0xFF marker, so no JSON string can contain it.
void AppendPiece(const llama_vocab* vocab, llama_token id, std::vector<std::uint8_t>& bytes,
                 std::vector<std::uint32_t>& lens) {
  std::string piece(64, '\0');
  auto render = [&](bool special) {
    int n = llama_token_to_piece(vocab, id, piece.data(), static_cast<std::int32_t>(piece.size()),
                                 0, special);
    if (n < 0) {
      piece.resize(static_cast<std::size_t>(-n));
      n = llama_token_to_piece(vocab, id, piece.data(), static_cast<std::int32_t>(piece.size()), 0,
                               special);
    }
    return n < 0 ? 0 : n;
  };
  int n = render(false);
  bool marked = false;
  if (n == 0) {
    n = render(true);
    marked = n > 0;
  }
  if (marked) bytes.push_back(0xFF);
  bytes.insert(bytes.end(), piece.data(), piece.data() + n);
  lens.push_back(static_cast<std::uint32_t>(n) + (marked ? 1 : 0));
}

// Whether libllama's tokenizer writes "a" as " a": its first token's text starts with a space.
bool AddsSpacePrefix(const llama_vocab* vocab) {
  llama_token first[8];
  const int n = llama_tokenize(vocab, "a", 1, first, 8, false, false);
  if (n <= 0) return false;
  char piece[16];
  const int len = llama_token_to_piece(vocab, first[0], piece, sizeof(piece), 0, false);
  return len > 0 && piece[0] == ' ';
}

struct SamplerCtx {
  std::shared_ptr<LlgVocabulary> vocab;
  LlgMatcher* matcher = nullptr;
  std::vector<std::uint32_t> mask;  // one bit per token, the last whole-vocabulary mask
};

SamplerCtx* Ctx(const llama_sampler* s) { return static_cast<SamplerCtx*>(s->ctx); }

void Reject(llama_token_data& d) { d.logit = -INFINITY; }

void Apply(llama_sampler* s, llama_token_data_array* cur) {
  SamplerCtx* c = Ctx(s);
  if (llg_matcher_is_error(c->matcher)) {
    // Nothing can follow: only the end of the sequence may (its caller ends it).
    for (std::size_t i = 0; i < cur->size; ++i) {
      if (!llama_vocab_is_eog(c->vocab->vocab(), cur->data[i].id)) Reject(cur->data[i]);
    }
    return;
  }
  // Sample-first: the engine asks about the token it sampled. Checking a few tokens costs
  // microseconds; a whole-vocabulary mask costs far more.
  constexpr std::size_t kCheckEach = 4;
  if (cur->size <= kCheckEach) {
    for (std::size_t i = 0; i < cur->size; ++i) {
      const llama_token id = cur->data[i].id;
      const auto token = static_cast<std::uint32_t>(id);
      // The end passes where the value may end (validation reads a token's bytes, and an
      // end-of-generation token has none that JSON could hold).
      const bool ok = llama_vocab_is_eog(c->vocab->vocab(), id)
                          ? llg_matcher_is_accepting(c->matcher)
                          : llg_matcher_validate_tokens(c->matcher, &token, 1) == 1;
      if (!ok) Reject(cur->data[i]);
    }
    return;
  }
  const std::size_t bytes = llg_matcher_get_mask_byte_size(c->matcher);
  c->mask.resize((bytes + 3) / 4);
  if (llg_matcher_compute_mask_into(c->matcher, c->mask.data(), bytes) != 0) {
    for (std::size_t i = 0; i < cur->size; ++i) {
      if (!llama_vocab_is_eog(c->vocab->vocab(), cur->data[i].id)) Reject(cur->data[i]);
    }
    return;
  }
  const std::size_t n_bits = bytes * 8;
  for (std::size_t i = 0; i < cur->size; ++i) {
    const auto id = static_cast<std::size_t>(cur->data[i].id);
    if (id >= n_bits || (c->mask[id / 32] & (std::uint32_t{1} << (id % 32))) == 0) {
      Reject(cur->data[i]);
    }
  }
}

void Accept(llama_sampler* s, llama_token token) {
  SamplerCtx* c = Ctx(s);
  if (llg_matcher_is_stopped(c->matcher) && llama_vocab_is_eog(c->vocab->vocab(), token)) return;
  if (llg_matcher_consume_token(c->matcher, static_cast<std::uint32_t>(token)) != 0) {
    const char* why = llg_matcher_get_error(c->matcher);
    throw std::runtime_error(why != nullptr ? why : "llguidance refused the token");
  }
}

void Reset(llama_sampler* s) {
  // A matcher in an error state cannot be reset; the engine never reuses one (it clones).
  (void)llg_matcher_reset(Ctx(s)->matcher);
}

const char* Name(const llama_sampler*) { return "llguidance"; }

void Free(llama_sampler* s);
llama_sampler* Clone(const llama_sampler* s);

llama_sampler_i kInterface = {
    /*name=*/Name,
    /*accept=*/Accept,
    /*apply=*/Apply,
    /*reset=*/Reset,
    /*clone=*/Clone,
    /*free=*/Free,
    /*backend_init=*/nullptr,
    /*backend_accept=*/nullptr,
    /*backend_apply=*/nullptr,
    /*backend_set_input=*/nullptr,
    /*backend_reset=*/nullptr,
    /*copy_state=*/nullptr,
};

void Free(llama_sampler* s) {
  SamplerCtx* c = Ctx(s);
  llg_free_matcher(c->matcher);
  delete c;
}

llama_sampler* Clone(const llama_sampler* s) {
  const SamplerCtx* from = Ctx(s);
  auto* c = new SamplerCtx{from->vocab, llg_clone_matcher(from->matcher), {}};
  return llama_sampler_init(&kInterface, c);
}

}  // namespace

std::shared_ptr<LlgVocabulary> NewLlgVocabulary(const llama_vocab* vocab) {
  const int n_vocab = llama_vocab_n_tokens(vocab);
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint32_t> lens;
  lens.reserve(static_cast<std::size_t>(n_vocab));
  std::vector<LlgToken> eog;
  for (llama_token id = 0; id < n_vocab; ++id) {
    AppendPiece(vocab, id, bytes, lens);
    if (llama_vocab_is_eog(vocab, id)) eog.push_back(static_cast<LlgToken>(id));
  }
  llama_token eos = llama_vocab_eot(vocab);
  if (eos == LLAMA_TOKEN_NULL) eos = llama_vocab_eos(vocab);
  LlgTokenizerInitV2 init = {};
  init.struct_size = sizeof(init);
  init.vocab_size = static_cast<std::uint32_t>(n_vocab);
  init.tok_eos = static_cast<LlgToken>(eos == LLAMA_TOKEN_NULL ? 0 : eos);
  init.token_lens = lens.data();
  init.token_bytes = bytes.data();
  // llguidance tokenizes text it forces (a key's name, say) to match what the model would have
  // written. libllama's tokenizer puts a space before the text when its vocabulary adds a
  // "dummy prefix" (SentencePiece models such as Llama 2): such text would gain a space, so
  // these vocabularies get llguidance's greedy tokenizer over the token bytes instead.
  if (AddsSpacePrefix(vocab)) {
    init.use_approximate_greedy_tokenize_fn = true;
  } else {
    init.tokenize_assumes_string = true;
    init.tokenize_fn = Tokenize;
    init.tokenize_user_data = vocab;
  }
  init.tok_eos_extra = eog.data();
  init.tok_eos_extra_count = static_cast<std::uint32_t>(eog.size());
  char error[512] = {};
  LlgTokenizer* tokenizer = llg_new_tokenizer_v2(&init, error, sizeof(error));
  if (tokenizer == nullptr) return nullptr;
  return std::make_shared<LlgVocabulary>(vocab, tokenizer);
}

std::string LlguidanceVersion() {
  // "llguidance@1.9.1 derivre@..." or similar: the first word, as name and version.
  std::string v = llg_get_version();
  v = v.substr(0, v.find(' '));
  if (const std::size_t at = v.find('@'); at != std::string::npos) v[at] = ' ';
  return v;
}

Result<llama_sampler*> NewLlgSampler(const std::shared_ptr<LlgVocabulary>& vocab,
                                     const std::string& schema) {
  LlgConstraintInit init = {};
  llg_constraint_init_set_defaults(&init, vocab->tokenizer());
  init.log_stderr_level = 0;  // a refused schema is the client's error, answered as such
  init.log_buffer_level = 0;
  // Whitespace between JSON tokens as the GBNF converter allows it (json-schema-to-grammar's
  // `space`): one space, or one or two newlines and an indent of at most 20. llguidance's
  // default (any run of whitespace) lets a weak model spend its whole budget on blank lines.
  // The schema's own "x-guidance" options, if any, come later in the object and win.
  std::string text = schema;
  if (const std::size_t open = text.find_first_not_of(" \t\r\n");
      open != std::string::npos && text[open] == '{') {
    const std::size_t body = text.find_first_not_of(" \t\r\n", open + 1);
    const bool empty = body != std::string::npos && text[body] == '}';
    text.insert(open + 1, StrCat(R"("x-guidance":{"whitespace_pattern":")", kWhitespace, R"("})",
                                 empty ? "" : ","));
  }
  LlgMatcher* matcher = llg_new_matcher(&init, "json_schema", text.c_str());
  if (const char* why = llg_matcher_get_error(matcher); why != nullptr) {
    std::string message = why;
    llg_free_matcher(matcher);
    return InvalidArgument("the JSON schema cannot be enforced: " + message, "response_format");
  }
  return llama_sampler_init(&kInterface, new SamplerCtx{vocab, matcher, {}});
}

}  // namespace ember::engine
