// Which build of ggml's CPU backend this process computes with. ember's pinned llama.cpp
// builds the backend once per CPU variant (libggml-cpu-<name>.so: x64, sse42, haswell,
// skylakex, icelake, sapphirerapids; docs/cpu.md), and one of them is loaded at start-up:
// the best this CPU can run, or the one --cpu-variant names. A variant this CPU cannot run
// is refused here with a message, never loaded (which could end in SIGILL).
//
// A llama.cpp built without variants (a user's own checkout, EMBER_LLAMA_CPP_DIR) has its
// CPU backend linked in; it is reported as the variant "builtin" and cannot be switched.
//
// Threads: LoadCpuBackend runs once, on the main thread, before any model loads; the
// accessors are safe from any thread after it returned.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace ember::engine {

struct CpuVariant {
  std::string name;  // ggml's name: "haswell"
  std::string path;  // its shared library
  int score = 0;     // ggml's rank of the variant on this CPU; 0 = this CPU cannot run it
};

struct CpuBackend {
  std::string variant;    // the loaded one's name, or "builtin"
  bool forced = false;    // named by --cpu-variant rather than chosen
  std::string features;   // ggml's report of the loaded build, "AVX2 = 1 | FMA = 1 | ..."
  std::string directory;  // where the variants were found (empty for "builtin")
  std::vector<CpuVariant> variants;  // every variant found, ordered from the most capable
};

// The variants in $EMBER_CPU_VARIANT_DIR (a developer's own ggml build), else next to this
// binary (an install: <prefix>/lib/ember), else in the pinned build's cache; none for
// "builtin". Loads none of them (each is opened just to ask its score).
[[nodiscard]] Result<std::vector<CpuVariant>> ListCpuVariants(std::string* directory = nullptr);

// Loads `requested` ("" or "auto": the best this CPU runs). InvalidArgument for a name that
// was not built or that this CPU cannot run, listing what it can. Calling it again with the
// same request returns the loaded backend; with another, FailedPrecondition-like Internal.
[[nodiscard]] Result<CpuBackend> LoadCpuBackend(const std::string& requested);

// The loaded backend; nullptr before LoadCpuBackend succeeded.
const CpuBackend* LoadedCpuBackend();

// A function of the loaded CPU backend by name (ggml's get_proc_address, which ember's
// patches extend with ggml_cpu_set_batch_invariant and ggml_cpu_repack_set_allocator);
// nullptr when it has none or nothing is loaded.
void* CpuBackendFunction(const char* name);

// An exported symbol of the loaded CPU backend's library (ggml_graph_compute_with_ctx, ...),
// for kernel tests and probes that call the CPU backend's own API; nullptr when absent.
void* CpuBackendSymbol(const char* name);

// The CPU's model name from /proc/cpuinfo ("AMD EPYC 9B14"), or "unknown".
std::string CpuModelName();

// The llama.cpp build ember was compiled against: commit, ember's patches, variants built.
struct LlamaBuild {
  std::string commit;                // 40 hex digits, or "checkout"
  std::vector<std::string> patches;  // "0001-kv-cache-pad-stream-view-to-32", ...
  std::vector<std::string> variants_built;
};
const LlamaBuild& LlamaBuildInfo();

// What `ember --version` prints after ember's own version: the llama.cpp commit and patches,
// the variants built and which of them this CPU runs, and the one it gets for `requested`
// ("" = auto). Opens each variant to ask its score; loads none.
std::string BuildReport(const std::string& requested);

// What the CPU backend contributes to a model's numerics (and so to system_fingerprint):
// variants whose kernels give bit-identical results for every weight type in the model share
// one name, any other variant its own (docs/cpu.md, "Numerics"). `weight_types` are the
// model's tensors' ggml types. For "builtin", the features the build was compiled with.
std::string NumericsClass(const CpuBackend& backend,
                          const std::vector<std::uint32_t>& weight_types);

// One line for the start-up log: the loaded variant, how it was chosen, the CPU and the build.
std::string DescribeCpuBackend(const CpuBackend& backend);

}  // namespace ember::engine
