#!/usr/bin/env bash
# One command from a fresh clone to a serving ember: installs and builds everything
# (scripts/setup.sh), then serves ../shared/models/stories260K.gguf when present, else a
# synthesized tiny model, with the web console at /console (scripts/console.sh builds it, cached
# outside the clone). Extra arguments go to `ember serve` (e.g. --port 9000).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/setup.sh" release
ember="$repo/build/release/src/cli/ember"
model="${EMBER_MODEL:-$repo/../shared/models/stories260K.gguf}"
if [[ -f "$model" ]]; then
  echo "[serve] serving $model" >&2
else
  missing="$model"
  model="$repo/ember-data/models/tiny-f32.gguf"
  echo "[serve] $missing not found; serving a synthesized tiny model ($model)" >&2
  if [[ ! -f "$model" ]]; then
    mkdir -p "$(dirname "$model")"
    "$ember" model synth --shape tiny --type f32 -o "$model"
  fi
fi
console=()
if [[ -z "${EMBER_CONSOLE_DIR:-}" && " $* " != *" --console-dir"* ]]; then
  if dist="$("$repo/scripts/console.sh")"; then
    console=(--console-dir "$dist")
    echo "[serve] the web console is at /console on the port it serves (docs/console.md)" >&2
  else
    echo "[serve] WARNING: the console page could not be built (see above); serving without it" >&2
  fi
fi
exec "$ember" serve --model "$model" "${console[@]}" "$@"
