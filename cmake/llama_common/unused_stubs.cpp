// ember's stand-ins for the parts of llama.cpp's common library it leaves out of the archive:
// common.cpp (needed for its string and token helpers) also holds common_init_from_params, the
// model loader of llama.cpp's own tools, which calls into sampling, speculative decoding and
// memory fitting. ember loads models itself (engine/llama) and never calls that loader, so
// these are only here to resolve its references; reaching one is a bug and aborts.
#include <cstdio>
#include <cstdlib>

#include "fit.h"
#include "sampling.h"
#include "speculative.h"

namespace {
[[noreturn]] void Unavailable(const char* what) {
  std::fprintf(stderr, "ember: %s is not part of ember's build of llama.cpp's common library\n",
               what);
  std::abort();
}
}  // namespace

common_params_fit_status common_fit_params(const char*, llama_model_params*, llama_context_params*,
                                           float*, llama_model_tensor_buft_override*, size_t*,
                                           uint32_t, const common_fit_extra_model*,
                                           ggml_log_level) {
  Unavailable("common_fit_params");
}
common_sampler* common_sampler_init(const llama_model*, common_params_sampling&) {
  Unavailable("common_sampler_init");
}
void common_sampler_free(common_sampler*) { Unavailable("common_sampler_free"); }
llama_sampler* common_sampler_get(const common_sampler*) { Unavailable("common_sampler_get"); }
std::vector<common_sampler_type> common_sampler_types_from_names(const std::vector<std::string>&) {
  Unavailable("common_sampler_types_from_names");
}
common_params common_base_params_to_speculative(const common_params&) {
  Unavailable("common_base_params_to_speculative");
}
