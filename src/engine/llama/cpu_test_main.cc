// main() of the tests that compute with ggml's CPU backend or load models through libllama.
// It loads the CPU variant that EMBER_CPU_VARIANT names (unset: the best this CPU runs)
// before any test runs. ctest runs the kernel tests once per variant built, with that
// variable set (src/engine/CMakeLists.txt); a variant this CPU cannot run ends the binary
// with exit code 77, which ctest reports as skipped, after a line that says why.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/llama/cpu_backend.h"

namespace {

constexpr int kSkipped = 77;

// Whether `requested` is a variant that was found but that this CPU cannot run.
bool CannotRunHere(const std::string& requested) {
  auto variants = ember::engine::ListCpuVariants();
  if (!variants) return false;
  for (const ember::engine::CpuVariant& v : *variants) {
    if (v.name == requested) return v.score == 0;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (testing::GTEST_FLAG(list_tests)) return RUN_ALL_TESTS();  // ctest's discovery
  const char* env = std::getenv("EMBER_CPU_VARIANT");
  const std::string requested = env != nullptr ? env : "";
  if (!requested.empty() && CannotRunHere(requested)) {
    std::printf("[  SKIPPED ] this CPU (%s) cannot run the CPU variant %s\n",
                ember::engine::CpuModelName().c_str(), requested.c_str());
    return kSkipped;
  }
  auto loaded = ember::engine::LoadCpuBackend(requested);
  if (!loaded) {
    std::fprintf(stderr, "cannot load the CPU backend: %s\n", loaded.error().message.c_str());
    return 1;
  }
  std::printf("CPU backend: %s (%s)\n", loaded->variant.c_str(), loaded->features.c_str());
  return RUN_ALL_TESTS();
}
