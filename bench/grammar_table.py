#!/usr/bin/env python3
"""Markdown table of a bench_grammar run (its --benchmark_out JSON): per strategy and
concurrency, the median of the repetitions and the per-run values of each counter.

  python3 bench/grammar_table.py /tmp/gb-1b.json
"""
import json
import statistics
import sys

COLUMNS = [("sample_p50_us", "sampling p50 us/token"), ("sample_p99_us", "p99"),
           ("accept_p50_us", "check accepted: p50"), ("reject_p50_us", "check rejected: p50"),
           ("reject_frac", "rejected"), ("tok_s", "tok/s")]


def main(path):
    runs = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        _, strategy, c = b["run_name"].split("/")[:3]
        runs.setdefault((c, strategy), []).append(b)
    print("| c | strategy | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for (c, strategy), bs in sorted(runs.items(), key=lambda kv: (int(kv[0][0][1:]), kv[0][1])):
        cells = []
        for key, _ in COLUMNS:
            values = [b[key] for b in bs]
            med = statistics.median(values)
            if key == "reject_frac":
                cells.append(f"{med:.0%}" if strategy == "check_first" else "-")
            elif key in ("accept_p50_us", "reject_p50_us") and (
                    strategy != "check_first" or not any(values)):
                cells.append("-")  # c > 1: no step where the check accepted all c picks
            elif key == "tok_s":
                cells.append(f"**{med:.2f}** ({' '.join(f'{v:.2f}' for v in values)})")
            else:
                cells.append(f"**{med:,.0f}** ({' '.join(f'{v:,.0f}' for v in values)})")
        print(f"| {c[1:]} | {strategy} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
