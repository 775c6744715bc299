// Single-sequence decode speed through libllama: a 32-token prompt, then N decodes, printing
// tokens/s. BI=1 turns on ggml's batch-invariant mode (ember's patch 0002), where single rows
// of float weights go through tinyBLAS instead of vec_dot (BENCHMARKS.md).
//
// Build against the cached libllama (scripts/llama_cpp.sh prefix prints P):
//   L="-lllama -lggml -lggml-base -Wl,-rpath,$P/lib"
//   g++ -std=c++2b -O2 bench/probes/single_row_decode.cc -I$P/include -L$P/lib $L -o /tmp/srd
// Five alternating runs, default and batch-invariant:
//   for r in 1 2 3 4 5; do /tmp/srd M.gguf 60; BI=1 /tmp/srd M.gguf 60; done
#include <ggml-backend.h>
#include <ggml-cpu.h>
#include <llama.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
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
  llama_model* m = llama_model_load_from_file(argv[1], llama_model_default_params());
  int N = atoi(argv[2]);
  auto p = llama_context_default_params();
  p.n_ctx = 1024;
  p.n_seq_max = 1;
  p.n_batch = 512;
  p.n_threads = 2;
  p.n_threads_batch = 2;
  p.no_perf = true;
  llama_context* c = llama_init_from_model(m, p);
  int nv = llama_vocab_n_tokens(llama_model_get_vocab(m));
  llama_batch b = llama_batch_init(512, 0, 1);
  for (int i = 0; i < 32; ++i) {
    b.token[i] = 1 + i % (nv - 1);
    b.pos[i] = i;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = i == 31;
  }
  b.n_tokens = 32;
  llama_decode(c, b);
  auto t0 = std::chrono::steady_clock::now();
  for (int d = 0; d < N; ++d) {
    b.n_tokens = 1;
    b.token[0] = 5 + d % 100;
    b.pos[0] = 32 + d;
    b.logits[0] = 1;
    llama_decode(c, b);
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("%.1f\n", N / s);
}
