// Batch-invariance probe (docs/determinism.md): does one sequence's logits depend on how its
// prompt is chunked and on what shares its steps? Runs a prompt of LEN random tokens alone in
// one chunk, then in chunks of 7, 63, 64, 100 and 200, and beside another sequence, with 12
// greedy decodes each, and prints how many outputs differ bit for bit and by how much.
// BI=1 in the environment turns on ggml's batch-invariant mode (ember's patch 0002).
//
// Build against the cached libllama (scripts/llama_cpp.sh prefix prints P):
//   L="-lllama -lggml -lggml-base -Wl,-rpath,$P/lib"
//   g++ -std=c++2b -O2 bench/probes/batch_invariance.cc -I$P/include -L$P/lib $L -o /tmp/bip
// Run with GGML_CPU_DIR=$P/bin (or CPU_VARIANT=one of its libggml-cpu-*.so files):
//   /tmp/bip MODEL.gguf [FLASH_ATTN=-1 auto|0|1] [LEN=300]; BI=1 /tmp/bip MODEL.gguf -1 600
#include <ggml-backend.h>
#include <ggml-cpu.h>
#include <llama.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
static int n_vocab;
static llama_context* make(llama_model* m, int nseq, int fa) {
  auto p = llama_context_default_params();
  p.n_ctx = 1024 * nseq;
  p.n_seq_max = nseq;
  p.n_batch = 1024;
  p.n_ubatch = 1024;
  p.n_threads = 2;
  p.n_threads_batch = 2;
  p.kv_unified = false;
  p.no_perf = true;
  p.flash_attn_type = fa == 1   ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                      : fa == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                : LLAMA_FLASH_ATTN_TYPE_AUTO;
  return llama_init_from_model(m, p);
}
struct Seq {
  int slot;
  std::vector<int> prompt;
  int fed = 0;
  int pos0 = 0;
  std::vector<std::vector<float>> outs;
  int last = -1;
  int n_gen = 0;
};
// run a set of sequences with given chunk size and max decode; tokens greedy
static void run(llama_context* c, std::vector<Seq>& seqs, int chunk, int n_decode,
                bool one_per_step = false) {
  llama_batch b = llama_batch_init(4096, 0, 1);
  while (true) {
    b.n_tokens = 0;
    std::vector<std::pair<int, int>> outrows;
    for (size_t si = 0; si < seqs.size(); ++si) {
      Seq& s = seqs[si];
      if (s.n_gen >= n_decode) continue;
      if (s.fed < (int)s.prompt.size()) {
        int n = std::min<int>(chunk, s.prompt.size() - s.fed);
        for (int i = 0; i < n; ++i) {
          int r = b.n_tokens++;
          b.token[r] = s.prompt[s.fed + i];
          b.pos[r] = s.pos0 + s.fed + i;
          b.n_seq_id[r] = 1;
          b.seq_id[r][0] = s.slot;
          b.logits[r] = (s.fed + i + 1 == (int)s.prompt.size());
          if (b.logits[r]) outrows.push_back({(int)si, r});
        }
        s.fed += n;
      } else {
        int r = b.n_tokens++;
        b.token[r] = s.last;
        b.pos[r] = s.pos0 + s.prompt.size() + s.n_gen - 1;
        b.n_seq_id[r] = 1;
        b.seq_id[r][0] = s.slot;
        b.logits[r] = 1;
        outrows.push_back({(int)si, r});
      }
      if (one_per_step) break;
    }
    if (b.n_tokens == 0) break;
    if (llama_decode(c, b)) {
      fprintf(stderr, "decode failed\n");
      exit(1);
    }
    for (auto [si, r] : outrows) {
      float* l = llama_get_logits_ith(c, r);
      seqs[si].outs.emplace_back(l, l + n_vocab);
      int best = 0;
      for (int v = 1; v < n_vocab; ++v)
        if (l[v] > l[best]) best = v;
      seqs[si].last = best;
      seqs[si].n_gen++;
    }
  }
  llama_batch_free(b);
}
static std::vector<int> rand_prompt(std::mt19937& g, int n) {
  std::vector<int> p;
  p.push_back(1);
  for (int i = 1; i < n; ++i) p.push_back(3 + g() % (n_vocab - 3));
  return p;
}
static void compare(const char* name, const Seq& a, const Seq& b) {
  int mism = 0;
  double maxd = 0;
  int first = -1;
  for (size_t i = 0; i < std::min(a.outs.size(), b.outs.size()); ++i) {
    if (memcmp(a.outs[i].data(), b.outs[i].data(), n_vocab * 4) != 0) {
      mism++;
      if (first < 0) first = i;
      for (int v = 0; v < n_vocab; ++v)
        maxd = std::max(maxd, (double)std::fabs(a.outs[i][v] - b.outs[i][v]));
    }
  }
  printf("  %-40s %s (%d/%zu steps differ, first %d, max|d| %.3g)\n", name, mism ? "DIFF" : "same",
         mism, a.outs.size(), first, maxd);
}
int main(int argc, char** argv) {
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  // ggml's CPU backend is one loadable module per CPU variant (docs/cpu.md): the one
  // CPU_VARIANT names ($P/bin/libggml-cpu-haswell.so), else the best in $P/bin (GGML_CPU_DIR).
  if (const char* v = std::getenv("CPU_VARIANT")) {
    ggml_backend_load(v);
  } else {
    ggml_backend_load_all_from_path(std::getenv("GGML_CPU_DIR"));
  }
  llama_backend_init();
  if (getenv("BI")) {  // patch 0002, through the loaded CPU module's proc address
    auto set = reinterpret_cast<void (*)(bool)>(ggml_backend_reg_get_proc_address(
        ggml_backend_reg_by_name("CPU"), "ggml_cpu_set_batch_invariant"));
    if (set != nullptr) set(true);
  }
  auto mp = llama_model_default_params();
  llama_model* m = llama_model_load_from_file(argv[1], mp);
  int fa = argc > 2 ? atoi(argv[2]) : -1;
  n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m));
  std::mt19937 g(42);
  const int ND = 12;
  int LP = argc > 3 ? atoi(argv[3]) : 300;
  auto P = rand_prompt(g, LP);
  std::vector<std::vector<int>> others;
  for (int k = 0; k < 8; ++k) others.push_back(rand_prompt(g, 30 + k));
  llama_context* c = make(m, 8, fa);
  std::vector<Seq> A{{0, P}};
  run(c, A, 4096, ND);
  llama_free(c);
  int chunks[] = {7, 63, 64, 100, 200};
  for (int ch : chunks) {
    c = make(m, 8, fa);
    std::vector<Seq> S{{0, P}};
    run(c, S, ch, ND);
    char name[64];
    snprintf(name, 64, "alone chunk %d", ch);
    compare(name, A[0], S[0]);
    llama_free(c);
  }
  c = make(m, 8, fa);
  {
    std::vector<Seq> S{{0, P}, {1, others[0]}};
    run(c, S, 4096, ND);
    compare("with 1 other, chunk 4096", A[0], S[0]);
  }
  llama_free(c);
  c = make(m, 8, fa);
  {
    std::vector<Seq> S{{0, P}, {1, others[0]}};
    run(c, S, 50, ND);
    compare("with 1 other, chunk 50", A[0], S[0]);
  }
  llama_free(c);
  return 0;
}
