// JSON-schema constrained decoding through llguidance, as a llama_sampler the libllama engine
// uses where it would use a GBNF grammar sampler. Internal to engine/llama; the only file that
// includes llguidance.h is llguidance_sampler.cc. Built only where llguidance is
// (EMBER_HAVE_LLGUIDANCE; cmake/Dependencies.cmake).
#pragma once

#include <memory>
#include <string>

#include "common/error.h"

struct llama_sampler;
struct llama_vocab;

namespace ember::engine {

// llguidance's view of one model's vocabulary: every token's bytes (control tokens marked as
// special) and the end-of-generation tokens. Built once per model (tens of milliseconds for a
// 128k vocabulary) and shared by every sampler over it.
class LlgVocabulary;
std::shared_ptr<LlgVocabulary> NewLlgVocabulary(const llama_vocab* vocab);

// A sampler enforcing the JSON Schema `schema` (its text). apply() sets the logit of every
// candidate the schema does not allow next to -inf: a few candidates are checked one by one
// (sample-first: the engine asks about the one token it sampled), more get the whole-vocabulary
// mask. accept() advances it and throws std::runtime_error for a token it does not allow, as
// libllama's grammar sampler does. After a complete value only end-of-generation tokens pass.
// Error: why the schema does not compile (its message names the keyword or the limit).
Result<llama_sampler*> NewLlgSampler(const std::shared_ptr<LlgVocabulary>& vocab,
                                     const std::string& schema);

// "llguidance <version>", as the library reports it.
std::string LlguidanceVersion();

}  // namespace ember::engine
