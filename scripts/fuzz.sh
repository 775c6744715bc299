#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ (preset `fuzz`: clang 19, ASan + UBSan) and runs each
# for a bounded time, single process, over a scratch copy of its seed corpus fuzz/corpus/NAME/
# (the repository is never written). Exits non-zero when a target crashes, leaks, times out or
# runs out of memory, and names the reproducer to rerun:
#   build/fuzz/fuzz/fuzz_NAME REPRODUCER
#   scripts/fuzz.sh [seconds-per-target, default 60] [target...]   (targets: request sse responses gguf_header tenants prices)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(request sse responses gguf_header tenants prices)

if ! command -v clang++-19 >/dev/null ||
  ! dpkg-query -W -f='${Status}' libclang-rt-19-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "[fuzz] needs clang-19 and libclang-rt-19-dev (libFuzzer): apt-get install clang-19" \
    "libclang-rt-19-dev, or run scripts/setup.sh" >&2
  exit 2
fi

cmake --preset fuzz -S "$repo" >/dev/null
cmake --build "$repo/build/fuzz" -j "$(nproc)"
# Every seed, past reproducers included, must still pass before fuzzing starts.
ctest --test-dir "$repo/build/fuzz" --output-on-failure -L fuzz

work="$(mktemp -d "${TMPDIR:-/tmp}/ember-fuzz.XXXXXX")"
failed=()
for name in "${targets[@]}"; do
  dir="$work/$name"
  mkdir -p "$dir/corpus"
  cp -R "$repo/fuzz/corpus/$name/." "$dir/corpus/"
  echo "[fuzz] $name: ${seconds}s" >&2
  # -timeout: seconds one input may take; -rss_limit_mb also caps a single allocation.
  if ! "$repo/build/fuzz/fuzz/fuzz_$name" "$dir/corpus" -dict="$repo/fuzz/$name.dict" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$dir/" -print_final_stats=1 >"$dir/log" 2>&1; then
    failed+=("$name")
    tail -n 60 "$dir/log" >&2
    for reproducer in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
      [[ -e "$reproducer" ]] || continue
      echo "[fuzz] $name failed; reproduce with: $repo/build/fuzz/fuzz/fuzz_$name $reproducer" >&2
    done
  else
    grep -E "DONE|^stat::average_exec_per_sec" "$dir/log" >&2 || true
  fi
done

if ((${#failed[@]})); then
  echo "[fuzz] FAILED: ${failed[*]} (logs and reproducers in $work)" >&2
  exit 1
fi
rm -rf "$work"
echo "[fuzz] ok: ${targets[*]}, ${seconds}s each" >&2
