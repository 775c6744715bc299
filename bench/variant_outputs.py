#!/usr/bin/env python3
"""Does a deterministic request give the same output under every CPU variant of ggml?

For each weight type (stories260K's F32, and tiny F16 / Q8_0 / Q4_0 models from `ember model
synth`) and each CPU variant this machine runs, serves the model with --deterministic
--cpu-variant V, sends the same prompts one at a time (half greedy, half seeded sampling; some
past 64 tokens, some past 512 cells) and records each output and the system_fingerprint.
Prints, per weight type, which variants agree with each other on every prompt and how many
prompts differ otherwise: the table in BENCHMARKS.md, "Outputs across CPU variants".

    EMBER_BIN=build/release/src/cli/ember python3 bench/variant_outputs.py [PROMPTS]
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from determinism.test_determinism import VOCAB, Models, make_prompts, run_alone  # noqa: E402
from harness import Server, runnable_variants  # noqa: E402


def outputs(weight_type, variant, prompts):
    server = Server("--deterministic", "--cpu-variant", variant, "--parallel", "4",
                    "--ctx-size", "4096", model=Models.path(weight_type))
    try:
        status, data, _ = server.post_json("/v1/completions", {
            "prompt": "Once", "max_tokens": 1, "temperature": 0})
        assert status == 200, data
        return run_alone(server, prompts), data["system_fingerprint"]
    finally:
        server.stop()


def groups(results):
    """Variants whose outputs are identical on every prompt, as lists of names."""
    out = []
    for variant, res in results.items():
        for g in out:
            if results[g[0]] == res:
                g.append(variant)
                break
        else:
            out.append([variant])
    return out


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    variants, cpu = runnable_variants()
    print(f"CPU: {cpu}; variants: {', '.join(variants)}; {count} prompts per weight type; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print("| weight type | variants with identical outputs on every prompt | prompts that differ "
          "from the first group | distinct fingerprints |")
    print("|---|---|---|---|")
    for weight_type in ("f32", "f16", "q8_0", "q4_0"):
        prompts = make_prompts(VOCAB[weight_type], count)
        results, fingerprints = {}, set()
        for variant in variants:
            results[variant], fp = outputs(weight_type, variant, prompts)
            fingerprints.add(fp)
        gs = groups(results)
        first = results[gs[0][0]]
        differ = [f"{g[0]}: {sum(a != b for a, b in zip(first, results[g[0]]))}"
                  for g in gs[1:]]
        print(f"| {weight_type} | {' / '.join('{' + ', '.join(g) + '}' for g in gs)} | "
              f"{'; '.join(differ) or 'none'} | {len(fingerprints)} of {len(variants)} |",
              flush=True)


if __name__ == "__main__":
    main()
