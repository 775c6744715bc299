#!/usr/bin/env bash
# Runs the same `ember bench` load against llama-server and against ember (same model, threads,
# context and slots), one server at a time, and prints a markdown table of output tok/s, TTFT
# p99 and peak RSS. With --out FILE the table replaces this model's section of FILE
# (between <!-- compare:MODEL:begin --> and <!-- compare:MODEL:end -->), or is appended.
#
#   bench/compare-llama-server.sh [--model PATH] [--threads N] [--ctx N] [--parallel N]
#       [--requests N] [--max-tokens N] [--concurrency "1 8 32"] [--out BENCHMARKS.md]
#       [--ember-args "EXTRA SERVE FLAGS"] [--repeat N] [--label NAME]
#
# --label NAME keeps a section per label (e.g. the machine or the CPU variant compared), so a
# run on another CPU does not replace this model's other tables: its markers become
# <!-- compare:MODEL:NAME:begin --> ... end.
# With --repeat N the two servers run alternately N times and the table shows medians.
#
# Every run sends fresh prompts (the generator's seed differs per run), so neither server's
# prompt cache turns a later run into a replay of an earlier one.
#
# Environment: EMBER_BIN (default build/release/src/cli/ember).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
shell_quote() {  # ARGS... -> one line a reader can paste back into a shell
  local arg line=""
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      line+=" $arg"
    else
      line+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  echo "${line# }"
}
command_line="$(shell_quote "bench/$(basename "$0")" "$@")"

model="$repo/../shared/models/stories260K.gguf"
threads=2
ctx=8192
parallel=32
requests=64
max_tokens=64
concurrency="1 8 32"
out=""
ember_extra=""
repeat=1
label=""
ember_bin="${EMBER_BIN:-$repo/build/release/src/cli/ember}"
readonly startup_timeout_s=180

log() { echo "[compare] $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) need_value "$@"; model="$2"; shift 2 ;;
    --threads) need_value "$@"; threads="$2"; shift 2 ;;
    --ctx) need_value "$@"; ctx="$2"; shift 2 ;;
    --parallel) need_value "$@"; parallel="$2"; shift 2 ;;
    --requests) need_value "$@"; requests="$2"; shift 2 ;;
    --max-tokens) need_value "$@"; max_tokens="$2"; shift 2 ;;
    --concurrency) need_value "$@"; concurrency="$2"; shift 2 ;;
    --out) need_value "$@"; out="$2"; shift 2 ;;
    --ember-args) need_value "$@"; ember_extra="$2"; shift 2 ;;
    --repeat) need_value "$@"; repeat="$2"; shift 2 ;;
    --label) need_value "$@"; label="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

for pair in "repeat:$repeat" "threads:$threads" "ctx:$ctx" "parallel:$parallel" "requests:$requests" \
            "max-tokens:$max_tokens"; do
  [[ "${pair#*:}" =~ ^[1-9][0-9]*$ ]] || die "--${pair%%:*} must be a positive integer"
done
for c in $concurrency; do
  [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "--concurrency values must be positive integers: '$c'"
done
[[ -n "${concurrency// /}" ]] || die "--concurrency is empty"
[[ -f "$model" ]] || die "model not found: $model"
model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"
model_name="$(basename "$model")"
section_key="$model_name${label:+:$label}"
[[ -x "$ember_bin" ]] || die "ember binary not found at $ember_bin (build it or set EMBER_BIN)"
command -v python3 >/dev/null || die "python3 is required"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/ember-compare.XXXXXX")"
server_pid=""

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$server_pid" 2>/dev/null && (( waited < 300 )); do
      sleep 0.1; waited=$((waited + 1))
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "server $server_pid ignored SIGTERM for 30 s; killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
cleanup() { stop_server; rm -rf "$workdir"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

http_status() {  # URL -> HTTP status code, 0 when nothing answered
  python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
}

wait_for_200() {  # URL NAME LOGFILE
  local deadline=$((SECONDS + startup_timeout_s))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      tail -n 30 "$3" >&2 || true
      die "$2 exited during startup (log above)"
    fi
    [[ "$(http_status "$1")" == 200 ]] && return 0
    sleep 0.25
  done
  tail -n 30 "$3" >&2 || true
  die "$2 did not answer 200 on $1 within ${startup_timeout_s} s"
}

json_field() {  # FILE FIELD [SCALE]
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = float(d[sys.argv[2]]) * float(sys.argv[3])
print(int(v) if v == int(v) else round(v, 2))' "$1" "$2" "${3:-1}"
}

declare -A tok_s ttft_ms peak_rss_mib ran_with

run_bench() {  # NAME PORT CONCURRENCY REQUESTS MAX_TOKENS [extra args...]
  local name="$1" port="$2" c="$3" n="$4" mt="$5"
  shift 5
  "$ember_bin" bench --host 127.0.0.1 --port "$port" --concurrency "$c" --requests "$n" \
    --max-tokens "$mt" --label "$name" --json "$@"
}

bench_server() {  # NAME: start it, warm up, run every concurrency, record peak RSS, stop it
  local name="$1" port log_file
  port="$(free_port)"
  log_file="$workdir/$name.log"
  case "$name" in
    llama-server)
      "$llama_server" -m "$model" -t "$threads" -c "$ctx" -np "$parallel" --port "$port" \
        --host 127.0.0.1 -b 512 >"$log_file" 2>&1 &
      ;;
    ember)
      "$ember_bin" serve --model "$model" --threads "$threads" --ctx-size "$ctx" \
        --parallel "$parallel" --port "$port" --host 127.0.0.1 $ember_extra >"$log_file" 2>&1 &
      ;;
  esac
  server_pid=$!
  log "$name: pid $server_pid on port $port, waiting for it to load $model_name"
  wait_for_200 "http://127.0.0.1:$port/health" "$name" "$log_file"
  [[ "$name" == ember ]] && wait_for_200 "http://127.0.0.1:$port/ready" "$name" "$log_file"

  log "$name: warm-up"
  run_bench "$name" "$port" 2 4 8 --seed 7 >/dev/null || log "warning: $name warm-up had failures"
  for c in $concurrency; do
    local result="$workdir/$name-$c.json"
    log "$name: concurrency $c, $requests requests, max_tokens $max_tokens"
    # `ember bench` exits 1 when some requests failed (still printing its report), 2 when it
    # could not run at all.
    run_bench "$name" "$port" "$c" "$requests" "$max_tokens" --seed "$((1000 + c))" \
      >"$result" || true
    json_field "$result" requests_failed >/dev/null 2>&1 || die "ember bench printed no report"
    local failed
    failed="$(json_field "$result" requests_failed)"
    [[ "$failed" == 0 ]] || \
      log "warning: $name had $failed failed requests at concurrency $c: $(cat "$result")"
    tok_s[$name,$c]+=" $(json_field "$result" output_tokens_per_s)"
    ttft_ms[$name,$c]+=" $(json_field "$result" ttft_p99_s 1000)"
  done
  # what each computed with: ember's CPU variant; llama-server's instruction sets (built
  # -march=native here, so the ones this CPU reports, unless EMBER_LLAMA_SERVER_FLAGS chose)
  if [[ "$name" == ember ]]; then
    ran_with[ember]="$(grep -o -m1 'CPU variant [^;]*' "$log_file" \
                       | sed 's/^CPU variant //; s/ (the best this CPU runs/ (auto)/;
                              s/ (forced by --cpu-variant/ (forced)/' || true)"
  elif [[ -n "${EMBER_LLAMA_SERVER_FLAGS:-}" ]]; then
    ran_with[llama-server]="built with $EMBER_LLAMA_SERVER_FLAGS"
  else
    ran_with[llama-server]="-march=native ($(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' \
      | grep -xE 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_int8' | tr '\n' ' ' | sed 's/ $//' \
      || true))"
  fi
  local hwm_kb
  hwm_kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || true)"
  peak_rss_mib[$name]+=" $(awk -v kb="${hwm_kb:-0}" 'BEGIN { printf "%.1f", kb / 1024 }')"
  stop_server
  log "$name: stopped (peak RSS MiB so far:${peak_rss_mib[$name]})"
}

median() {  # "V1 V2 ..." -> their median
  python3 -c 'import statistics, sys; print(round(statistics.median(map(float, sys.argv[1:])), 2))' $1
}

ratio() {  # A B -> B/A with two decimals, "n/a" when A is zero
  awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 == 0) print "n/a"; else printf "%.2f", b / a }'
}

render_section() {
  local cpu llama_commit
  cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
  llama_commit="$(sed -n 's/^readonly LLAMA_COMMIT="\([0-9a-f]*\)".*/\1/p' "$repo/scripts/llama_cpp.sh")"
  echo "<!-- compare:$section_key:begin -->"
  echo "### ember vs llama-server: $model_name${label:+ ($label)}"
  echo
  echo "| concurrency | llama-server tok/s | ember tok/s | ratio | llama-server TTFT p99 ms | ember TTFT p99 ms | ratio |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  for c in $concurrency; do
    local lt et lf ef
    lt="$(median "${tok_s[llama-server,$c]}")"; et="$(median "${tok_s[ember,$c]}")"
    lf="$(median "${ttft_ms[llama-server,$c]}")"; ef="$(median "${ttft_ms[ember,$c]}")"
    echo "| $c | $lt | $et | $(ratio "$lt" "$et") | $lf | $ef | $(ratio "$lf" "$ef") |"
  done
  local lr er
  lr="$(median "${peak_rss_mib[llama-server]}")"; er="$(median "${peak_rss_mib[ember]}")"
  echo "| peak RSS MiB | $lr | $er | $(ratio "$lr" "$er") | | | |"
  echo
  echo "Medians of $repeat alternating run(s). Ratios are ember / llama-server (tok/s: higher is"
  echo "better; TTFT and RSS: lower is better). Per-run values, llama-server | ember:"
  echo
  for c in $concurrency; do
    echo "- c=$c tok/s:${tok_s[llama-server,$c]} |${tok_s[ember,$c]}; TTFT p99 ms:${ttft_ms[llama-server,$c]} |${ttft_ms[ember,$c]}"
  done
  echo "- peak RSS MiB:${peak_rss_mib[llama-server]} |${peak_rss_mib[ember]}"
  echo
  echo "Each run: $requests requests, max_tokens $max_tokens, streamed, fresh prompts of 16-64 words;"
  [[ -z "$ember_extra" ]] || echo "ember flags: \`$ember_extra\`;"
  echo "servers with $threads threads, context $ctx, $parallel slots."
  echo
  echo "- machine: ${cpu:-unknown CPU}, $(nproc) CPUs"
  echo "- ember CPU variant: ${ran_with[ember]:-unknown}; llama-server: ${ran_with[llama-server]:-unknown}"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- llama.cpp: ${llama_commit:-unknown}"
  echo "- command: \`$command_line\`"
  echo "<!-- compare:$section_key:end -->"
}

write_section() {  # SECTION_FILE OUT_FILE MODEL_NAME
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys
section_path, out_path, name = sys.argv[1:4]
section = open(section_path).read().rstrip("\n") + "\n"
begin, end = f"<!-- compare:{name}:begin -->", f"<!-- compare:{name}:end -->"
text = open(out_path).read() if os.path.exists(out_path) else ""
start = text.find(begin)
stop = text.find(end, start) if start >= 0 else -1
if start >= 0 and stop >= 0:
    stop += len(end)
    if text[stop:stop + 1] == "\n":
        stop += 1
    text = text[:start] + section + text[stop:]
else:
    if text and not text.endswith("\n"):
        text += "\n"
    text += ("\n" if text else "") + section
with open(out_path + ".tmp", "w") as f:
    f.write(text)
os.replace(out_path + ".tmp", out_path)
PY
}

log "building or locating llama-server"
llama_server="$("$repo/scripts/llama_cpp.sh" server)"
[[ -x "$llama_server" ]] || die "scripts/llama_cpp.sh server did not produce a binary"

for ((r = 1; r <= repeat; r++)); do
  log "round $r of $repeat"
  bench_server llama-server
  bench_server ember
done

render_section >"$workdir/section.md"
cat "$workdir/section.md"
if [[ -n "$out" ]]; then
  write_section "$workdir/section.md" "$out" "$section_key"
  log "updated $out"
fi
