// Reading a model's GGUF header before its load (the memory estimate, engine/llama_memory):
// ggml's gguf_init_from_file (what the estimate used, allocating every vocabulary string) vs
// ember's scanner (engine/gguf/gguf_header, which steps over them). Medians of 30 reads each,
// alternating, page cache warm.
//
// Build against the cached libllama (scripts/llama_cpp.sh prefix prints P) and ember's build:
//   B=build/release; L="-lggml-base -Wl,-rpath,$P/lib"
//   g++ -std=c++2b -O2 bench/probes/gguf_header_read.cc -Isrc -I$P/include \
//       $B/src/engine/gguf/libember_engine_gguf_header.a $B/src/common/libember_common.a \
//       -L$P/lib $L -o /tmp/ghr
//   /tmp/ghr MODEL.gguf...
#include <gguf.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "engine/gguf/gguf_header.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf...\n", argv[0]);
    return 2;
  }
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  for (int a = 1; a < argc; ++a) {
    std::vector<double> ggml_ms, ember_ms;
    for (int i = 0; i < 30; ++i) {
      auto t0 = Clock::now();
      gguf_context* g = gguf_init_from_file(argv[a], {.no_alloc = true, .ctx = nullptr});
      ggml_ms.push_back(ms(Clock::now() - t0));
      if (g == nullptr) {
        std::fprintf(stderr, "%s: ggml cannot read it\n", argv[a]);
        return 1;
      }
      gguf_free(g);
      t0 = Clock::now();
      auto header = ember::engine::ReadGgufHeader(argv[a]);
      ember_ms.push_back(ms(Clock::now() - t0));
      if (!header) {
        std::fprintf(stderr, "%s: %s\n", argv[a], header.error().message.c_str());
        return 1;
      }
    }
    std::printf("%s: gguf_init_from_file %.2f ms, ReadGgufHeader %.2f ms (medians of 30)\n",
                argv[a], Median(ggml_ms), Median(ember_ms));
  }
}
