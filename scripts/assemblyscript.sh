#!/usr/bin/env bash
# Installs the AssemblyScript compiler and the AssemblyScript proxy-wasm SDK, pinned by
# src/plugins/examples/assemblyscript/package-lock.json (assemblyscript 0.14.13,
# @solo-io/proxy-runtime 0.1.8), with `npm ci` into a cache directory keyed by that lockfile and
# this script, and prints the prefix (the directory holding node_modules; the compiler is
# node_modules/.bin/asc). src/plugins/CMakeLists.txt compiles the example plugin written with the
# SDK (tenant_models.ts) with it when EMBER_ASSEMBLYSCRIPT_PREFIX is set (docs/plugins.md); without
# it (no node/npm, no registry) ember builds without that one example.
#
#   scripts/assemblyscript.sh prefix   -> installs (if needed) and prints the prefix
#
# Environment: EMBER_CACHE_DIR (default ~/.cache/ember).
set -euo pipefail

readonly ROOT="$(cd "$(dirname "$0")/.." && pwd)"
readonly PACKAGE="$ROOT/src/plugins/examples/assemblyscript"
readonly CACHE="${EMBER_CACHE_DIR:-$HOME/.cache/ember}"

log() { echo "[assemblyscript] $*" >&2; }

[[ "${1:-}" == prefix ]] || { echo "usage: $0 prefix" >&2; exit 2; }
command -v npm >/dev/null || { log "npm is not installed (Node.js provides it)"; exit 1; }

key="$(cat "$PACKAGE/package-lock.json" "$0" | sha256sum | cut -c1-12)"
prefix="$CACHE/assemblyscript/$key"
if [[ -f "$prefix/.ember-complete" ]]; then
  echo "$prefix"
  exit 0
fi

mkdir -p "$CACHE/assemblyscript"
staging="$(mktemp -d "$CACHE/assemblyscript/$key.tmp.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
cp "$PACKAGE/package.json" "$PACKAGE/package-lock.json" "$staging/"
log "installing from package-lock.json (npm ci)"
# --ignore-scripts: the packages need no install scripts; no prompts, no audit, no funding notes.
(cd "$staging" &&
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null >&2)
[[ -x "$staging/node_modules/.bin/asc" ]] || { log "npm ci installed no asc"; exit 1; }
touch "$staging/.ember-complete"
rm -rf "$prefix"
mv "$staging" "$prefix"
log "installed $prefix"
echo "$prefix"
