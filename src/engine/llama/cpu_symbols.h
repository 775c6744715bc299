// The CPU backend's own C API (ggml-cpu.h: ggml_graph_compute_with_ctx, ggml_cpu_has_avx2,
// ...) for kernel tests and probes. With ggml's CPU backend built as run-time variants these
// functions live in the loaded variant's library, not in anything the test links, so they are
// looked up there: EMBER_CPU_FN(ggml_graph_compute_with_ctx)(ctx, graph, threads).
// Call LoadCpuBackend first (cpu_test_main.cc does).
#pragma once

#include <cstdio>
#include <cstdlib>

#include "engine/llama/cpu_backend.h"

namespace ember::engine {

inline void* RequireCpuSymbol(const char* name) {
  void* fn = CpuBackendSymbol(name);
  if (fn == nullptr) {
    std::fprintf(stderr, "the loaded CPU backend does not export %s\n", name);
    std::abort();
  }
  return fn;
}

}  // namespace ember::engine

// decltype only names the function's type: nothing links against the symbol itself.
#define EMBER_CPU_FN(fn) (reinterpret_cast<decltype(&fn)>(::ember::engine::RequireCpuSymbol(#fn)))
