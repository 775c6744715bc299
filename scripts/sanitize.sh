#!/usr/bin/env bash
# Builds ember under AddressSanitizer + UndefinedBehaviorSanitizer (preset `asan`) and/or
# ThreadSanitizer (preset `tsan`) through scripts/setup.sh, then runs the unit and integration
# tests under it with `ctest --preset NAME`: the test presets in CMakePresets.json set
# ASAN/LSAN/UBSAN/TSAN_OPTIONS (stop at the first report, exit non-zero) and the suppression
# files in tools/sanitizers/ (third-party code only). Any report fails the run. libllama and
# ggml stay uninstrumented (the cached release build). Extra arguments go to ctest.
#   scripts/sanitize.sh [asan|tsan|all] [ctest args...]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
which="${1:-all}"
(($#)) && shift
case "$which" in
  asan | tsan) presets=("$which") ;;
  all) presets=(asan tsan) ;;
  *) echo "usage: scripts/sanitize.sh [asan|tsan|all] [ctest args...]" >&2; exit 2 ;;
esac

failed=()
for preset in "${presets[@]}"; do
  start=$SECONDS
  "$repo/scripts/setup.sh" "$preset"
  built=$SECONDS
  status=0
  (cd "$repo" && ctest --preset "$preset" "$@") || status=$?
  echo "[sanitize] $preset: build $((built - start)) s, tests $((SECONDS - built)) s," \
    "$( ((status)) && echo FAILED || echo passed)" >&2
  ((status)) && failed+=("$preset")
done
# CI keeps only the tail of the output: repeat each failed test's name and the end of its output
# (from ctest's log) after the last preset, so the tail says what failed under which sanitizer.
summarize() {
  local dir="$repo/build/$1/Testing/Temporary" name
  [[ -f "$dir/LastTestsFailed.log" ]] || return 0
  while IFS=: read -r _ name; do
    echo "[sanitize] $1: $name failed; the end of its output:" >&2
    awk -v t="$name" 'index($0, " Testing: ") { on = substr($0, index($0, " Testing: ") + 10) == t
      next } on && /^<end of output>/ { on = 0 } on' "$dir/LastTest.log" | tail -n 40 >&2
  done < <(head -n 5 "$dir/LastTestsFailed.log")
}
if ((${#failed[@]})); then
  for preset in "${failed[@]}"; do summarize "$preset"; done
  echo "[sanitize] failed under: ${failed[*]}" >&2
  exit 1
fi
