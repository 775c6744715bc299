// Tokenizer build time through libllama (vocab_only loads), and the fingerprints of what the
// build decided (engine/llama/vocab_fingerprint.h; vocab_fingerprint_test pins them for the
// vocabularies llama.cpp ships). The carried patches must leave them unchanged.
//
// Build against two cached libllamas (scripts/llama_cpp.sh prefix prints P; an older prefix
// directory under ~/.cache/ember/llama.cpp/ has the patches of its day):
//   L="-lllama -lggml -lggml-base -Wl,-rpath,$P/lib"
//   g++ -std=c++2b -O2 bench/probes/vocab_load.cc -Isrc -I$P/include -L$P/lib $L -o /tmp/vl
//   /tmp/vl MODEL.gguf [LOADS]        # prints each load's time, then the fingerprint
//   valgrind --tool=callgrind /tmp/vl MODEL.gguf 1   # repeatable instruction counts
#include <ggml-backend.h>
#include <llama.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/llama/vocab_fingerprint.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [LOADS]\n", argv[0]);
    return 2;
  }
  const int loads = argc > 2 ? std::atoi(argv[2]) : 5;
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  // ggml's CPU backend is one loadable module per CPU variant (docs/cpu.md): the one
  // CPU_VARIANT names ($P/bin/libggml-cpu-haswell.so), else the best in $P/bin (GGML_CPU_DIR).
  if (const char* v = std::getenv("CPU_VARIANT")) {
    ggml_backend_load(v);
  } else {
    ggml_backend_load_all_from_path(std::getenv("GGML_CPU_DIR"));
  }
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
  const int n = llama_vocab_n_tokens(v);
  int eog = 0;
  for (int i = 0; i < n; ++i) eog += llama_vocab_is_eog(v, i);
  std::printf("tokens %d, end-of-generation %d, eot %d, fingerprint %016llx\n", n, eog,
              llama_vocab_eot(v),
              static_cast<unsigned long long>(ember::engine::VocabFingerprint(v)));
  int nm = 0;
  const std::uint64_t pieces = ember::engine::PiecesFingerprint(v, &nm);
  std::printf("pieces+tokenization fingerprint %016llx (%d tokens)\n",
              static_cast<unsigned long long>(pieces), nm);
  llama_model_free(model);
}
