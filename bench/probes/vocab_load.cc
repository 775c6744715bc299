// Tokenizer build time through libllama (vocab_only loads), and a fingerprint of what the
// build decided: every token's attributes, the end-of-generation set, the special ids and a
// tokenization. Patch 0004 must leave the fingerprint unchanged (BENCHMARKS.md, Cold start).
//
// Build against two cached libllamas (scripts/llama_cpp.sh prefix prints P; an older prefix
// directory under ~/.cache/ember/llama.cpp/ has the patches of its day):
//   L="-lllama -lggml -lggml-cpu -lggml-base -fopenmp"
//   g++ -std=c++2b -O2 bench/probes/vocab_load.cc -I$P/include -L$P/lib $L -o /tmp/vl
//   /tmp/vl MODEL.gguf [LOADS]        # prints each load's time, then the fingerprint
//   valgrind --tool=callgrind /tmp/vl MODEL.gguf 1   # repeatable instruction counts
#include <llama.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [LOADS]\n", argv[0]);
    return 2;
  }
  const int loads = argc > 2 ? std::atoi(argv[2]) : 5;
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model_params params = llama_model_default_params();
  params.vocab_only = true;
  llama_model* model = nullptr;
  for (int i = 0; i < loads; ++i) {
    if (model != nullptr) llama_model_free(model);
    const auto t0 = std::chrono::steady_clock::now();
    model = llama_model_load_from_file(argv[1], params);
    const auto t1 = std::chrono::steady_clock::now();
    if (model == nullptr) return 1;
    std::printf("vocab_only load %.1f ms\n",
                std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const llama_vocab* v = llama_model_get_vocab(model);
  unsigned long long h = 1469598103934665603ULL;  // FNV-1a over everything below
  auto mix = [&h](long long x) { h = (h ^ static_cast<unsigned long long>(x)) * 1099511628211ULL; };
  const int n = llama_vocab_n_tokens(v);
  int eog = 0;
  for (int i = 0; i < n; ++i) {
    mix(llama_vocab_get_attr(v, i));
    mix(llama_vocab_is_eog(v, i));
    eog += llama_vocab_is_eog(v, i);
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
  std::printf("tokens %d, end-of-generation %d, eot %d, fingerprint %016llx\n", n, eog,
              llama_vocab_eot(v), h);
  // Second fingerprint: every token's piece (special and not) and a longer tokenization
  // through many merges (patch 0006 changed the merge table and the byte decoding).
  unsigned long long h2 = 1469598103934665603ULL;
  auto mix2 = [&h2](unsigned char c) { h2 = (h2 ^ c) * 1099511628211ULL; };
  char piece[256];
  for (int i = 0; i < n; ++i) {
    for (bool special : {true, false}) {
      const int len = llama_token_to_piece(v, i, piece, sizeof piece, 0, special);
      for (int k = 0; k < len; ++k) mix2(static_cast<unsigned char>(piece[k]));
      mix2(0xFF);
    }
  }
  const char* long_text =
      "The quick brown fox jumps over the lazy dog 1234567890 times.\n\tIndented: "
      "caf\xC3\xA9, na\xC3\xAFve, \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E, emoji "
      "\xF0\x9F\x98\x80, <|begin_of_text|>special</s>   spaces   and\r\nnewlines; "
      "internationalization, antidisestablishmentarianism, don't won't y'all.";
  llama_token many[512];
  const int nm =
      llama_tokenize(v, long_text, static_cast<int>(std::strlen(long_text)), many, 512, true, true);
  for (int i = 0; i < nm; ++i) {
    for (int b = 0; b < 4; ++b) mix2(static_cast<unsigned char>(many[i] >> (8 * b)));
  }
  std::printf("pieces+tokenization fingerprint %016llx (%d tokens)\n", h2, nm);
  llama_model_free(model);
}
