#!/usr/bin/env python3
"""Markdown tables of a bench_grammar run (its --benchmark_out JSON): the constraint alone
(BM_Mask, per engine) and end to end (BM_Constrained, per strategy and concurrency), each cell
the median of the repetitions with the per-run values after it.

  python3 bench/grammar_table.py /tmp/gb-1b.json
"""
import json
import statistics
import sys

COLUMNS = [("sample_p50_us", "sampling p50 us/token"), ("sample_p99_us", "p99"),
           ("accept_p50_us", "check accepted: p50"), ("reject_p50_us", "check rejected: p50"),
           ("reject_frac", "rejected"), ("tok_s", "tok/s")]
MASK_COLUMNS = [("mask_p50_us", "mask p50 us"), ("mask_p99_us", "mask p99 us"),
                ("check_p50_us", "check p50 us"), ("check_p99_us", "check p99 us")]


def cell(values, fmt):
    return f"**{fmt(statistics.median(values))}** ({' '.join(fmt(v) for v in values)})"


def main(path):
    runs, masks = {}, {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        parts = b["run_name"].split("/")
        if parts[0] == "BM_Mask":
            masks.setdefault(parts[1], []).append(b)
        else:
            runs.setdefault((parts[2], parts[1]), []).append(b)
    if masks:
        print("| engine | " + " | ".join(title for _, title in MASK_COLUMNS) + " |")
        print("|---|" + "---:|" * len(MASK_COLUMNS))
        for engine, bs in sorted(masks.items()):
            cells = [cell([b[k] for b in bs], lambda v: f"{v:,.1f}") for k, _ in MASK_COLUMNS]
            print(f"| {engine} | " + " | ".join(cells) + " |")
        print()
    print("| c | strategy | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for (c, strategy), bs in sorted(runs.items(), key=lambda kv: (int(kv[0][0][1:]), kv[0][1])):
        check_first = strategy == "gbnf_default"  # the one strategy that checks first
        cells = []
        for key, _ in COLUMNS:
            values = [b[key] for b in bs]
            if key == "reject_frac":
                cells.append(f"{statistics.median(values):.0%}" if check_first else "-")
            elif key in ("accept_p50_us", "reject_p50_us") and (
                    not check_first or not any(values)):
                cells.append("-")  # c > 1: no step where the check accepted all c picks
            elif key == "tok_s":
                cells.append(cell(values, lambda v: f"{v:.2f}"))
            else:
                cells.append(cell(values, lambda v: f"{v:,.0f}"))
        print(f"| {c[1:]} | {strategy} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
