// What constrained decoding costs per token (issue 15, "Benchmark"): a model loaded through
// the engine's factory, a JSON schema through the chat component's JsonSchemaToGrammar, and N
// tokens generated from the same prompt per strategy:
//   unconstrained   no grammar
//   <e>_default     the schema, sampled as the engine does for a request without logprobs:
//                   GBNF checks first (the chain picks a token from the unconstrained
//                   candidates and the grammar checks that one; only when it rejects it is the
//                   whole vocabulary masked and the chain run again over the allowed tokens);
//                   llguidance masks first (its mask is cheaper than the chain over the whole
//                   vocabulary)
//   <e>_logprobs    the schema with logprobs on (top_logprobs 0): the engine masks the whole
//                   vocabulary before every token
// where <e> is the constraint engine: gbnf (llama.cpp's grammar sampler over the schema's GBNF)
// or llg (llguidance, where this build has it: engine::JsonSchemaEngine()), at c sequences
// stepping together (c=1 and c=8).
// BM_Mask/<e> times the constraint alone, without a model's forward pass: along one valid answer
// (kAnswer, tokenized), the whole-vocabulary mask and the one-token check at every position. The
// sampling part of each step is read from the engine's SamplingCounters (wall clock around the
// step's sampling; per token = step / c), and so is how many check-first picks the grammar
// rejected. End to end tok/s counts every step (forward pass + sampling) after the prompt's.
//
// Lives in bench/, not src/: it joins two sibling components (engine and chat) that src/'s
// layering keeps apart (tools/check_layers.py); the server is where they meet in production.
//
//   build/release/bench/bench_grammar --model=/tmp/synth-1b-q4_0.gguf --tokens=64
//       --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true   (one line)
// Flags of its own: --model=PATH (required), --tokens=N per sequence per run (default 64),
// --threads=N (default 2), --cpu-variant=NAME (default: the best this CPU runs).
//
// BM_Mask counters: mask_p50_us / mask_p99_us, check_p50_us / check_p99_us over the answer's
// positions, every repetition's positions pooled.
// Counters of BM_Constrained (us = microseconds, per token): sample_p50_us / sample_p99_us over all
// steps, accept_p50_us / reject_p50_us over the steps where the check accepted / rejected every
// pick (c=1: each token on its own), reject_frac (check-first picks the grammar rejected / tokens
// sampled under the grammar), tok_s (generated tokens / wall time of their steps).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat.h"
#include "engine/engine.h"
#include "engine/llama/cpu_backend.h"
#include "engine/llama/llama_engine.h"

namespace ember {
namespace {

using engine::BatchEntry;
using engine::Engine;
using engine::SamplingParams;
using engine::Token;

// A realistic response_format: strings with a bounded length, an integer range, an enum, an
// array of strings, a boolean; every property required, nothing else allowed.
constexpr std::string_view kSchema = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 32},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "role": {"enum": ["admin", "editor", "viewer"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4},
    "active": {"type": "boolean"}
  },
  "required": ["name", "age", "role", "tags", "active"],
  "additionalProperties": false
})";

constexpr std::string_view kPrompt =
    "Extract the user from this text and answer with JSON only.\n"
    "Text: Maria Lopez, 34, edits the travel section; tags: travel, food. Active.\nJSON: ";

struct Flags {
  std::string model;
  int tokens = 64;
  int threads = 2;
  std::string cpu_variant;
};
Flags g_flags;

// A valid answer to kSchema, for BM_Mask.
constexpr std::string_view kAnswer =
    R"({"name": "Maria Lopez", "age": 34, "role": "editor", "tags": ["travel", "food"], )"
    R"("active": true})";

enum Strategy { kUnconstrained = 0, kDefault = 1, kLogprobs = 2 };
enum ConstraintEngine { kGbnf = 0, kLlg = 1 };
bool HasLlg() { return engine::JsonSchemaEngine() != "gbnf"; }

// One engine per concurrency, loaded on first use and kept (loading the 1B takes seconds).
Engine* GetEngine(int parallel) {
  static std::unique_ptr<Engine> engines[9];
  if (!engines[parallel]) {
    engine::LlamaOptions options;
    options.model_path = g_flags.model;
    options.parallel = parallel;
    options.ctx_size = parallel * 1024;
    options.batch_size = 512;
    options.threads = g_flags.threads;
    auto created = engine::CreateLlamaEngine(options);
    if (!created) {
      std::fprintf(stderr, "cannot load %s: %s\n", g_flags.model.c_str(),
                   created.error().message.c_str());
      std::exit(1);
    }
    if (auto warm = (*created)->WarmUp(); !warm) {
      std::fprintf(stderr, "warm-up failed: %s\n", warm.error().message.c_str());
      std::exit(1);
    }
    // First steps run slower (first-touch pages, thread pools): 16 untimed tokens per slot.
    auto prompt = (*created)->tokenizer().Tokenize("Once upon a time", /*add_special=*/true);
    if (!prompt) std::exit(1);
    std::vector<BatchEntry> batch;
    std::vector<Token> next(parallel);
    for (int s = 0; s < parallel; ++s) {
      engine::SamplingParams params;
      params.seed = 7;
      if (!(*created)->BeginSequence(s, params, 0)) std::exit(1);
      batch.push_back(BatchEntry{s, *prompt, 0, true});
    }
    const int n = static_cast<int>(prompt->size());
    for (int t = 0; t < 16; ++t) {
      auto step = (*created)->Step(batch);
      if (!step) std::exit(1);
      for (int s = 0; s < parallel; ++s) {
        next[s] = (*step)[s].token;
        batch[s] = BatchEntry{s, std::span<const Token>(&next[s], 1), n + t, true};
      }
    }
    for (int s = 0; s < parallel; ++s) (*created)->EndSequence(s, /*keep_cells=*/false);
    engines[parallel] = std::move(*created);
  }
  return engines[parallel].get();
}

std::string SchemaGbnf() {
  auto gbnf = chat::JsonSchemaToGrammar(kSchema);
  if (!gbnf) {
    std::fprintf(stderr, "JsonSchemaToGrammar: %s\n", gbnf.error().message.c_str());
    std::exit(1);
  }
  return *gbnf;
}

// The schema for `e`: its GBNF alone, or (as the server sends it) with the schema itself, which
// an engine with llguidance enforces instead.
std::shared_ptr<const engine::Grammar> SchemaGrammar(ConstraintEngine e) {
  static const std::shared_ptr<const engine::Grammar> grammars[2] = {
      [] {
        auto g = std::make_shared<engine::Grammar>();
        g->gbnf = SchemaGbnf();
        return g;
      }(),
      [] {
        auto g = std::make_shared<engine::Grammar>();
        g->gbnf = SchemaGbnf();
        g->json_schema = std::string(kSchema);
        return g;
      }()};
  return grammars[e];
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(q * (v.size() - 1) + 0.5));
  return v[i];
}

// One iteration: `c` sequences from the same prompt, each sampling g_flags.tokens tokens. A
// sequence that ends (end of generation: the grammar's object is complete) starts again from
// its prompt, whose cells it keeps, so every step is a one-token decode per sequence.
void BM_Constrained(benchmark::State& state) {
  const auto strategy = static_cast<Strategy>(state.range(0));
  const int c = static_cast<int>(state.range(1));
  const auto constraint = static_cast<ConstraintEngine>(state.range(2));
  Engine* engine = GetEngine(c);
  auto prompt = engine->tokenizer().Tokenize(kPrompt, /*add_special=*/true);
  if (!prompt) return state.SkipWithError(prompt.error().message.c_str());
  const int n_prompt = static_cast<int>(prompt->size());

  std::uint64_t seed = 1;
  auto params = [&] {
    SamplingParams p;  // temperature 1, no filters: the engine's defaults
    p.seed = seed++;
    if (strategy != kUnconstrained) p.grammar = SchemaGrammar(constraint);
    if (strategy == kLogprobs) {
      p.logprobs = true;
      p.top_logprobs = 0;
    }
    return p;
  };

  std::vector<double> per_token_us, accept_us, reject_us;
  double generated = 0, step_seconds = 0;
  std::uint64_t constrained = 0, rejected = 0, restarts = 0;
  for (auto _ : state) {
    // Prefill: every sequence's whole prompt in one step (not counted).
    std::vector<BatchEntry> batch;
    for (int s = 0; s < c; ++s) {
      if (!engine->BeginSequence(s, params(), 0)) return state.SkipWithError("BeginSequence");
      batch.push_back(BatchEntry{s, *prompt, 0, true});
    }
    auto first = engine->Step(batch);
    if (!first) return state.SkipWithError(first.error().message.c_str());
    std::vector<Token> next(c);
    std::vector<int> pos(c, n_prompt);
    for (int s = 0; s < c; ++s) next[s] = (*first)[s].token;
    for (int t = 1; t < g_flags.tokens; ++t) {
      batch.clear();
      for (int s = 0; s < c; ++s) {
        if (engine->tokenizer().IsEndOfGeneration(next[s]) || pos[s] + 1 >= 1024) {
          // Again from the prompt: keep its cells but the last, which this step feeds.
          engine->EndSequence(s, /*keep_cells=*/true);
          auto kept = engine->BeginSequence(s, params(), n_prompt - 1);
          if (!kept) return state.SkipWithError("BeginSequence");
          pos[s] = *kept;
          batch.push_back(
              BatchEntry{s, std::span<const Token>(prompt->data() + *kept, prompt->size() - *kept),
                         *kept, true});
          ++restarts;
        } else {
          batch.push_back(BatchEntry{s, std::span<const Token>(&next[s], 1), pos[s], true});
        }
      }
      const engine::SamplingCounters before = engine->sampling_counters();
      const auto t0 = std::chrono::steady_clock::now();
      auto step = engine->Step(batch);
      const auto t1 = std::chrono::steady_clock::now();
      const engine::SamplingCounters after = engine->sampling_counters();
      if (!step) return state.SkipWithError(step.error().message.c_str());
      for (int s = 0; s < c; ++s) {
        pos[s] += static_cast<int>(batch[s].tokens.size());
        next[s] = (*step)[s].token;
      }
      const double us = static_cast<double>(after.nanoseconds - before.nanoseconds) / 1e3 / c;
      per_token_us.push_back(us);
      const std::uint64_t rej = after.check_rejected - before.check_rejected;
      const bool check_first = strategy == kDefault && constraint == kGbnf;
      if (check_first && rej == 0) accept_us.push_back(us);
      if (check_first && rej == static_cast<std::uint64_t>(c)) reject_us.push_back(us);
      constrained += after.constrained - before.constrained;
      rejected += rej;
      generated += c;
      step_seconds += std::chrono::duration<double>(t1 - t0).count();
    }
    for (int s = 0; s < c; ++s) engine->EndSequence(s, /*keep_cells=*/false);
  }
  state.counters["sample_p50_us"] = Percentile(per_token_us, 0.50);
  state.counters["sample_p99_us"] = Percentile(per_token_us, 0.99);
  state.counters["accept_p50_us"] = Percentile(accept_us, 0.50);
  state.counters["reject_p50_us"] = Percentile(reject_us, 0.50);
  state.counters["reject_frac"] =
      constrained > 0 ? static_cast<double>(rejected) / static_cast<double>(constrained) : 0.0;
  state.counters["tok_s"] = step_seconds > 0 ? generated / step_seconds : 0.0;
  state.counters["restarts"] = static_cast<double>(restarts);
}

// The constraint alone along kAnswer: each position's whole-vocabulary mask and one-token check
// (the answer's next token), through the sampler the engine would use for `e`.
void BM_Mask(benchmark::State& state) {
  const auto e = static_cast<ConstraintEngine>(state.range(0));
  Engine* engine = GetEngine(1);
  auto answer = engine->tokenizer().Tokenize(kAnswer, /*add_special=*/false);
  if (!answer) return state.SkipWithError(answer.error().message.c_str());
  // Some tokenizers put a space before the first piece; the answer starts with '{'.
  if (!answer->empty() && engine->tokenizer().TokenPiece(answer->front()) == " ") {
    answer->erase(answer->begin());
  }
  std::vector<double> mask_us, check_us;
  for (auto _ : state) {
    auto probe = engine::ProbeConstraint(*engine, *SchemaGrammar(e));
    if (!probe) return state.SkipWithError(probe.error().message.c_str());
    for (const Token t : *answer) {
      auto timed = (*probe)->MaskCheckAccept(t);
      if (!timed) return state.SkipWithError(timed.error().message.c_str());
      mask_us.push_back(timed->mask_seconds * 1e6);
      check_us.push_back(timed->check_seconds * 1e6);
    }
  }
  state.counters["mask_p50_us"] = Percentile(mask_us, 0.50);
  state.counters["mask_p99_us"] = Percentile(mask_us, 0.99);
  state.counters["check_p50_us"] = Percentile(check_us, 0.50);
  state.counters["check_p99_us"] = Percentile(check_us, 0.99);
  state.counters["positions"] = static_cast<double>(answer->size());
}

void Register() {
  static const char* kEngines[] = {"gbnf", "llg"};
  static const char* kStrategies[] = {"default", "logprobs"};
  std::vector<int> engines = {kGbnf};
  if (HasLlg()) engines.push_back(kLlg);
  for (const int e : engines) {
    benchmark::RegisterBenchmark((std::string("BM_Mask/") + kEngines[e]).c_str(), BM_Mask)
        ->Arg(e)
        ->Iterations(5)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (const int c : {1, 8}) {
    auto add = [&](const std::string& name, int s, int e) {
      benchmark::RegisterBenchmark(("BM_Constrained/" + name + "/c" + std::to_string(c)).c_str(),
                                   BM_Constrained)
          ->Args({s, c, e})
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    };
    add("unconstrained", kUnconstrained, kGbnf);
    for (const int e : engines) {
      for (const int s : {kDefault, kLogprobs}) {
        add(std::string(kEngines[e]) + "_" + kStrategies[s - 1], s, e);
      }
    }
  }
}

bool TakeFlag(std::string_view arg, std::string_view name, std::string& out) {
  if (!arg.starts_with(name) || arg.size() <= name.size() || arg[name.size()] != '=') {
    return false;
  }
  out = std::string(arg.substr(name.size() + 1));
  return true;
}

}  // namespace
}  // namespace ember

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  using ember::g_flags;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    if (ember::TakeFlag(argv[i], "--model", value)) {
      g_flags.model = value;
    } else if (ember::TakeFlag(argv[i], "--tokens", value)) {
      g_flags.tokens = std::max(2, std::atoi(value.c_str()));
    } else if (ember::TakeFlag(argv[i], "--threads", value)) {
      g_flags.threads = std::max(1, std::atoi(value.c_str()));
    } else if (ember::TakeFlag(argv[i], "--cpu-variant", value)) {
      g_flags.cpu_variant = value;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (g_flags.model.empty()) {
    std::fprintf(stderr,
                 "usage: bench_grammar --model=PATH [--tokens=N] [--threads=N] "
                 "[benchmark flags]\n");
    return 2;
  }
  auto loaded = ember::engine::LoadCpuBackend(g_flags.cpu_variant);
  if (!loaded) {
    std::fprintf(stderr, "cannot load the CPU backend: %s\n", loaded.error().message.c_str());
    return 1;
  }
  std::fprintf(stderr, "CPU backend: %s (%s); CPU: %s\n", loaded->variant.c_str(),
               loaded->features.c_str(), ember::engine::CpuModelName().c_str());
  ember::Register();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
