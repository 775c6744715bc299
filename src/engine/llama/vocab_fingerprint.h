// Fingerprints of what libllama built from a vocabulary, for checking that a change to its
// tokenizer load (the carried patches 0004, 0006, 0008) leaves the tokenizer the same to the
// bit. Header-only on llama.h, so bench/probes/vocab_load.cc compiles it standalone.
#pragma once

#include <llama.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>

namespace ember::engine {

// Every token's attributes and end-of-generation flag, the special ids, and a short
// tokenization through special-token text.
inline std::uint64_t VocabFingerprint(const llama_vocab* v) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&h](long long x) { h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ULL; };
  const int n = llama_vocab_n_tokens(v);
  for (int i = 0; i < n; ++i) {
    mix(llama_vocab_get_attr(v, i));
    mix(llama_vocab_is_eog(v, i));
  }
  for (llama_token t : {llama_vocab_eot(v), llama_vocab_fim_pre(v), llama_vocab_fim_suf(v),
                        llama_vocab_fim_mid(v), llama_vocab_fim_pad(v), llama_vocab_fim_rep(v),
                        llama_vocab_fim_sep(v), llama_vocab_bos(v), llama_vocab_eos(v)}) {
    mix(t);
  }
  const char* text = "Hello world, <|eot_id|> \xE2\x96\x81<PRE> tokenizers!";
  llama_token tokens[64];
  const int nt =
      llama_tokenize(v, text, static_cast<int>(std::strlen(text)), tokens, 64, true, true);
  for (int i = 0; i < nt; ++i) mix(tokens[i]);
  return h;
}

// Every token's piece (with and without special tokens rendered) and a longer tokenization
// through many merges and byte-level characters. `*n_tokens` gets that tokenization's length.
inline std::uint64_t PiecesFingerprint(const llama_vocab* v, int* n_tokens = nullptr) {
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](unsigned char c) { h = (h ^ c) * 1099511628211ULL; };
  char piece[256];
  const int n = llama_vocab_n_tokens(v);
  for (int i = 0; i < n; ++i) {
    for (bool special : {true, false}) {
      const int len = llama_token_to_piece(v, i, piece, sizeof piece, 0, special);
      for (int k = 0; k < len; ++k) mix(static_cast<unsigned char>(piece[k]));
      mix(0xFF);
    }
  }
  const char* text =
      "The quick brown fox jumps over the lazy dog 1234567890 times.\n\tIndented: "
      "caf\xC3\xA9, na\xC3\xAFve, \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E, emoji "
      "\xF0\x9F\x98\x80, <|begin_of_text|>special</s>   spaces   and\r\nnewlines; "
      "internationalization, antidisestablishmentarianism, don't won't y'all.";
  llama_token tokens[512];
  const int nt =
      llama_tokenize(v, text, static_cast<int>(std::strlen(text)), tokens, 512, true, true);
  for (int i = 0; i < nt; ++i) {
    for (int b = 0; b < 4; ++b) mix(static_cast<unsigned char>(tokens[i] >> (8 * b)));
  }
  if (n_tokens != nullptr) *n_tokens = nt;
  return h;
}

}  // namespace ember::engine
