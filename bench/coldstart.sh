#!/usr/bin/env bash
# Cold start, ember vs llama-server (issue 4): builds or finds llama-server from the pinned
# llama.cpp source, then runs `ember bench coldstart` with both, run by run in turn, and prints
# its table followed by the machine, date and command.
#
#   bench/coldstart.sh MODEL [RUNS] [extra `ember bench coldstart` flags...]
#   e.g. bench/coldstart.sh /tmp/synth-1b-q4_0.gguf 5 --threads 2 --ctx-size 4096 \
#            --parallel 4 --decode-tokens 64
#
# Environment: EMBER_BIN (default build/release/src/cli/ember). With COLDSTART_JSON=FILE the
# JSON report (per-run values) is also written to FILE.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
log() { echo "[coldstart] $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -ge 1 ]] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
model="$1"
runs="${2:-5}"
shift $(( $# >= 2 ? 2 : 1 ))
[[ -f "$model" ]] || die "model not found: $model"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer: '$runs'"
ember_bin="${EMBER_BIN:-$repo/build/release/src/cli/ember}"
[[ -x "$ember_bin" ]] || die "ember binary not found at $ember_bin (build it or set EMBER_BIN)"

log "building or locating llama-server"
llama_server="$("$repo/scripts/llama_cpp.sh" server)"
[[ -x "$llama_server" ]] || die "scripts/llama_cpp.sh server did not produce a binary"

json="$(mktemp "${TMPDIR:-/tmp}/ember-coldstart.XXXXXX")"
trap 'rm -f "$json"' EXIT
status=0
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
"$ember_bin" bench coldstart --model "$model" --runs "$runs" --llama-server "$llama_server" \
  --json "$@" >"$json" || status=$?
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
[[ -s "$json" ]] || die "ember bench coldstart printed no report (exit status $status)"
[[ -z "${COLDSTART_JSON:-}" ]] || cp "$json" "$COLDSTART_JSON"

python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def ms(v): return "-" if v is None else f"{1000 * v:.1f}"
def num(v): return "-" if v is None else f"{v:.1f}"
print("| server | ok runs | exec→ready ms | exec→first token ms | peak RSS MiB | decode tok/s |")
print("|---|---:|---:|---:|---:|---:|")
for name, s in r["servers"].items():
    m = s["median"]
    print(f"| {name} | {s['runs_ok']}/{s['runs_ok'] + s['runs_failed']} | {ms(m['exec_to_ready_s'])} "
          f"| {ms(m['exec_to_first_token_s'])} | {num(m['peak_rss_mib'])} "
          f"| {num(m['decode_tokens_per_s'])} |")
phases = r["servers"]["ember"]["median"]["phases_s"]
if phases:
    print()
    print("ember start-up phases (median ms, from `ember_startup_seconds{phase}`): " +
          ", ".join(f"{k} {ms(v)}" for k, v in phases.items()))
for name, s in r["servers"].items():
    for run in s["runs"]:
        if not run["ok"]:
            print(f"\nFAILED {name} run {run['run']}: {run['error']}")
PY
cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
echo
echo "- machine: ${cpu:-unknown CPU}, $(nproc) CPUs; date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- load average (1, 5, 15 min) before: $load_before; after: $load_after"
echo "- llama.cpp: $(sed -n 's/^readonly LLAMA_COMMIT="\([0-9a-f]*\)".*/\1/p' "$repo/scripts/llama_cpp.sh")"
echo "- settings: threads $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["threads"], "ctx", r["ctx_size"], "parallel", r["parallel"], "max_tokens", r["max_tokens"], "decode_tokens", r["decode_tokens"], "runs", r["runs_per_server"])' "$json")"
echo "- command: \`bench/coldstart.sh $model $runs${*:+ $*}\`"
exit "$status"
