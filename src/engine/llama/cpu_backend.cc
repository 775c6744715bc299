#include "engine/llama/cpu_backend.h"

#include <dlfcn.h>
#include <ggml-backend.h>
#include <ggml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string_view>

#include "common/log.h"

namespace ember::engine {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "libggml-cpu-";
constexpr std::string_view kSuffix = ".so";

std::vector<std::string> SplitList(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    if (comma != 0) out.emplace_back(list.substr(0, comma));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const std::string& item : items) out += StrCat(out.empty() ? "" : sep, item);
  return out;
}

// EMBER_CPU_VARIANT_DIR, else: an install keeps the variants in <prefix>/lib/ember beside
// <prefix>/bin/ember; the build tree finds them in the pinned llama.cpp's cache (its install
// puts modules in bin/).
std::vector<fs::path> CandidateDirectories() {
  // A developer's scratch build of ggml (testing a kernel change without reinstalling).
  if (const char* dir = std::getenv("EMBER_CPU_VARIANT_DIR"); dir != nullptr && *dir != '\0') {
    return {fs::path(dir)};
  }
  std::vector<fs::path> dirs;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(exe.parent_path().parent_path() / "lib" / "ember");
#ifdef EMBER_CPU_VARIANT_DIR
  dirs.emplace_back(EMBER_CPU_VARIANT_DIR);
#endif
  return dirs;
}

// ggml's own rank of a variant on this CPU (its cpu-feats code, compiled without the
// variant's instruction set, so calling it cannot fault); 0 when it cannot run here.
int ScoreVariant(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (handle == nullptr) {
    log::Warn("cannot open CPU variant ", path, ": ", dlerror());
    return 0;
  }
  int score = 0;
  if (auto* fn = reinterpret_cast<int (*)()>(dlsym(handle, "ggml_backend_score"))) score = fn();
  dlclose(handle);
  return score;
}

std::vector<CpuVariant> VariantsIn(const fs::path& dir) {
  std::vector<CpuVariant> found;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (!file.starts_with(kPrefix) || !file.ends_with(kSuffix)) continue;
    const std::string name =
        file.substr(kPrefix.size(), file.size() - kPrefix.size() - kSuffix.size());
    found.push_back({name, entry.path().string(), 0});
  }
  return found;
}

std::string Features(ggml_backend_reg_t reg) {
  auto get = reinterpret_cast<ggml_backend_get_features_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
  if (get == nullptr) return "";
  std::string out;
  for (const ggml_backend_feature* f = get(reg); f != nullptr && f->name != nullptr; ++f) {
    out += StrCat(out.empty() ? "" : " | ", f->name, " = ", f->value);
  }
  return out;
}

std::string Runnable(const std::vector<CpuVariant>& variants) {
  std::vector<std::string> names;
  for (const CpuVariant& v : variants) {
    if (v.score > 0) names.push_back(v.name);
  }
  return names.empty() ? "none" : Join(names, ", ");
}

struct Loaded {
  std::mutex mu;
  std::optional<CpuBackend> backend;  // GUARDED_BY(mu); set once
  std::string request;                // GUARDED_BY(mu)
  ggml_backend_reg_t reg = nullptr;   // written once under mu, before backend is set
  void* handle = nullptr;             // the loaded variant's dlopen handle (for symbols)
};
Loaded& State() {
  static Loaded state;
  return state;
}

Result<CpuBackend> LoadBuiltin(const std::string& requested) {
  if (!requested.empty() && requested != "auto" && requested != "builtin") {
    return InvalidArgument(StrCat("--cpu-variant ", requested,
                                  ": this build's llama.cpp has its CPU backend linked in (one "
                                  "build, no variants to choose from)"));
  }
  ggml_backend_reg_t reg = ggml_backend_reg_by_name("CPU");
  if (reg == nullptr) return Internal("this ggml build has no CPU backend");
  State().reg = reg;
  CpuBackend backend;
  backend.variant = "builtin";
  backend.features = Features(reg);
  return backend;
}

}  // namespace

Result<std::vector<CpuVariant>> ListCpuVariants(std::string* directory) {
  std::vector<std::string> searched;
  for (const fs::path& dir : CandidateDirectories()) {
    std::vector<CpuVariant> variants = VariantsIn(dir);
    searched.push_back(dir.string());
    if (variants.empty()) continue;
    for (CpuVariant& v : variants) v.score = ScoreVariant(v.path);
    std::sort(variants.begin(), variants.end(), [](const CpuVariant& a, const CpuVariant& b) {
      return a.score != b.score ? a.score > b.score : a.name < b.name;
    });
    if (directory != nullptr) *directory = dir.string();
    return variants;
  }
  if (LlamaBuildInfo().variants_built.empty()) return std::vector<CpuVariant>{};
  return NotFound(StrCat("no CPU backend variants (libggml-cpu-*.so) in ", Join(searched, " or "),
                         "; an install must keep lib/ember beside bin/ember"));
}

Result<CpuBackend> LoadCpuBackend(const std::string& requested) {
  Loaded& state = State();
  std::lock_guard lock(state.mu);
  if (state.backend) {
    if (requested == state.request) return *state.backend;
    return Internal(StrCat("the CPU backend is loaded already (", state.backend->variant,
                           "); it cannot change to '", requested, "' in this process"));
  }
  if (LlamaBuildInfo().variants_built.empty()) {
    auto builtin = LoadBuiltin(requested);
    if (!builtin) return builtin;
    state.request = requested;
    state.backend = *builtin;
    return *builtin;
  }
  CpuBackend backend;
  auto variants = ListCpuVariants(&backend.directory);
  if (!variants) return std::unexpected(variants.error());
  backend.variants = std::move(*variants);
  const CpuVariant* chosen = nullptr;
  if (requested.empty() || requested == "auto") {
    if (!backend.variants.empty() && backend.variants.front().score > 0) {
      chosen = &backend.variants.front();
    }
    if (chosen == nullptr) {
      return Unavailable(StrCat("this CPU (", CpuModelName(),
                                ") can run none of the CPU variants in ", backend.directory));
    }
  } else {
    backend.forced = true;
    for (const CpuVariant& v : backend.variants) {
      if (v.name == requested) chosen = &v;
    }
    std::vector<std::string> names;
    for (const CpuVariant& v : backend.variants) names.push_back(v.name);
    if (chosen == nullptr) {
      return InvalidArgument(StrCat("--cpu-variant ", requested, ": no such CPU variant in ",
                                    backend.directory, " (built: ", Join(names, ", "), ")"));
    }
    if (chosen->score == 0) {
      return InvalidArgument(StrCat(
          "--cpu-variant ", requested, ": this CPU (", CpuModelName(),
          ") lacks instructions that variant needs; it can run: ", Runnable(backend.variants)));
    }
  }
  ggml_backend_reg_t reg = ggml_backend_load(chosen->path.c_str());
  if (reg == nullptr) {
    return Internal(StrCat("ggml could not load the CPU variant ", chosen->path));
  }
  state.reg = reg;
  state.handle = dlopen(chosen->path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  backend.variant = chosen->name;
  backend.features = Features(reg);
  state.request = requested;
  state.backend = backend;
  return backend;
}

const CpuBackend* LoadedCpuBackend() {
  Loaded& state = State();
  std::lock_guard lock(state.mu);
  return state.backend ? &*state.backend : nullptr;
}

void* CpuBackendFunction(const char* name) {
  ggml_backend_reg_t reg = State().reg;
  return reg == nullptr ? nullptr : ggml_backend_reg_get_proc_address(reg, name);
}

void* CpuBackendSymbol(const char* name) {
  void* handle = State().handle;
  // "builtin": the backend is part of this executable, whose symbols are exported to
  // dlsym only when it is linked with ENABLE_EXPORTS (the kernel tests are).
  return dlsym(handle != nullptr ? handle : RTLD_DEFAULT, name);
}

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("model name")) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string name = line.substr(colon + 1);
    name.erase(0, name.find_first_not_of(' '));
    return name.empty() ? "unknown" : name;
  }
  return "unknown";
}

std::string BuildReport(const std::string& requested) {
  const LlamaBuild& build = LlamaBuildInfo();
  std::string out = StrCat("llama.cpp ", build.commit, " with ", build.patches.size(),
                           " ember patches", build.patches.empty() ? "\n" : ":\n");
  for (const std::string& patch : build.patches) out += StrCat("  ", patch, "\n");
  std::string dir;
  auto variants = ListCpuVariants(&dir);
  if (!variants) return out + StrCat("CPU variants: ", variants.error().message, "\n");
  if (variants->empty()) {
    return out + "CPU backend: builtin (llama.cpp built without CPU variants)\n";
  }
  std::vector<std::string> names;
  for (const CpuVariant& v : *variants) names.push_back(v.name);
  out += StrCat("CPU variants: ", Join(names, " "), " (", dir, ")\n");
  std::string gets = variants->front().score > 0 ? variants->front().name : "none";
  if (!requested.empty() && requested != "auto") {
    auto it = std::find_if(variants->begin(), variants->end(),
                           [&](const CpuVariant& v) { return v.name == requested; });
    gets = it == variants->end() ? StrCat(requested, " (forced; not built: refused)")
           : it->score == 0      ? StrCat(requested, " (forced; cannot run here: refused)")
                                 : StrCat(requested, " (forced)");
  }
  return out + StrCat("this CPU: ", CpuModelName(), "; runs ", Runnable(*variants), "; gets ", gets,
                      "\n");
}

std::string NumericsClass(const CpuBackend& backend,
                          const std::vector<std::uint32_t>& weight_types) {
  if (backend.variant == "builtin") return StrCat("builtin:", backend.features);
  // skylakex, cascadelake, icelake and zen4 compile the same float kernels (AVX-512 F/BW/DQ/VL)
  // and differ in integer instructions (VNNI's vpdpbusd vs vpmaddubsw + vpmaddwd: the same
  // exact sums), in VBMI permutes and in BF16 dot products. For F32, F16, Q8_0 and Q4_0
  // weights their outputs are bit-identical (measured: BENCHMARKS.md, "Outputs across CPU
  // variants"); any other type (BF16, K-quants, IQ...) keeps the variant's own name.
  static const char* const kAvx512[] = {"skylakex", "cascadelake", "icelake", "zen4"};
  const bool avx512 =
      std::find(std::begin(kAvx512), std::end(kAvx512), backend.variant) != std::end(kAvx512);
  const bool plain_types =
      std::all_of(weight_types.begin(), weight_types.end(), [](std::uint32_t t) {
        return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_Q8_0 ||
               t == GGML_TYPE_Q4_0;
      });
  return avx512 && plain_types ? "avx512" : backend.variant;
}

std::string DescribeCpuBackend(const CpuBackend& backend) {
  const LlamaBuild& build = LlamaBuildInfo();
  std::string how = backend.variant == "builtin" ? "linked in"
                    : backend.forced             ? "forced by --cpu-variant"
                                                 : "the best this CPU runs";
  return StrCat("CPU variant ", backend.variant, " (", how, "; ", CpuModelName(),
                backend.variants.empty() ? "" : StrCat("; runs ", Runnable(backend.variants)),
                ") with llama.cpp ", build.commit.substr(0, 12), " + ", build.patches.size(),
                " ember patches");
}

const LlamaBuild& LlamaBuildInfo() {
  static const LlamaBuild build{
#ifdef EMBER_LLAMA_COMMIT
      .commit = EMBER_LLAMA_COMMIT,
#else
      .commit = "checkout",
#endif
#ifdef EMBER_LLAMA_PATCHES
      .patches = SplitList(EMBER_LLAMA_PATCHES),
#endif
#ifdef EMBER_CPU_VARIANTS_BUILT
      .variants_built = SplitList(EMBER_CPU_VARIANTS_BUILT),
#endif
  };
  return build;
}

}  // namespace ember::engine
