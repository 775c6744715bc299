#!/usr/bin/env bash
# Fetches llama.cpp from the npm package node-llama-cpp (the only source this project
# reaches), verifies the pinned commit, applies ember's patches (third_party/llama.cpp-patches,
# each explained in its header) and builds libllama + ggml (CPU backend, native ISA) into a
# cache directory keyed by commit, patches and build flags. Reused when present.
# llama-server (for the comparison benchmark) is built from the pristine source.
#
#   scripts/llama_cpp.sh prefix        -> builds (if needed) and prints the install prefix
#   scripts/llama_cpp.sh server        -> builds (if needed) llama-server and prints its path
#   scripts/llama_cpp.sh source        -> prints the path of the checked-out source
#
# Environment: EMBER_CACHE_DIR (default ~/.cache/ember), EMBER_LLAMA_JOBS (default nproc).
set -euo pipefail

readonly NPM_PACKAGE="node-llama-cpp@3.22.1"
readonly LLAMA_COMMIT="de3ff815ea7d559ee917f063901b8986f038abc6"
readonly CACHE="${EMBER_CACHE_DIR:-$HOME/.cache/ember}"
readonly JOBS="${EMBER_LLAMA_JOBS:-$(nproc)}"
readonly PATCH_DIR="$(cd "$(dirname "$0")/.." && pwd)/third_party/llama.cpp-patches"
readonly COMMON_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CPU=ON -DGGML_OPENMP=ON
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF)

log() { echo "[llama_cpp] $*" >&2; }

flags_key() {  # stable short hash of the flags plus the host's CPU features (GGML_NATIVE)
  { printf '%s\n' "$@"; grep -m1 '^flags' /proc/cpuinfo || true; g++ --version | head -1; } \
    | sha256sum | cut -c1-12
}

fetch_source() {
  local src="$CACHE/llama.cpp-src/$LLAMA_COMMIT"
  if [[ -f "$src/.ember-verified" ]]; then echo "$src"; return; fi
  local tmp; tmp="$(mktemp -d "$CACHE/tmp.XXXXXX")"
  log "fetching $NPM_PACKAGE from the npm registry"
  (cd "$tmp" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/node-llama-cpp-*.tgz -C "$tmp" package/llama/gitRelease.bundle
  local head; head="$(git bundle list-heads "$tmp/package/llama/gitRelease.bundle" | awk '{print $1; exit}')"
  if [[ "$head" != "$LLAMA_COMMIT" ]]; then
    log "bundle HEAD is $head, expected $LLAMA_COMMIT; refusing to build"; exit 1
  fi
  rm -rf "$src"; mkdir -p "$(dirname "$src")"
  git clone -q "$tmp/package/llama/gitRelease.bundle" "$src.partial"
  git -C "$src.partial" -c advice.detachedHead=false checkout -q "$LLAMA_COMMIT"
  [[ "$(git -C "$src.partial" rev-parse HEAD)" == "$LLAMA_COMMIT" ]]
  touch "$src.partial/.ember-verified"
  mv "$src.partial" "$src"
  rm -rf "$tmp"
  echo "$src"
}

patches_key() {  # short hash of every patch's content, "none" without patches
  local files=("$PATCH_DIR"/*.patch)
  [[ -e "${files[0]}" ]] || { echo none; return; }
  cat "${files[@]}" | sha256sum | cut -c1-12
}

patched_source() {  # the pristine source plus ember's patches, in its own cached checkout
  local pristine; pristine="$(fetch_source)"
  local key; key="$(patches_key)"
  [[ "$key" == none ]] && { echo "$pristine"; return; }
  local src="$CACHE/llama.cpp-src/$LLAMA_COMMIT-p$key"
  if [[ -f "$src/.ember-patched" ]]; then echo "$src"; return; fi
  rm -rf "$src" "$src.partial"
  git clone -q --shared "$pristine" "$src.partial"
  git -C "$src.partial" -c advice.detachedHead=false checkout -q "$LLAMA_COMMIT"
  local patch
  for patch in "$PATCH_DIR"/*.patch; do
    log "applying $(basename "$patch")"
    git -C "$src.partial" apply "$patch"
  done
  touch "$src.partial/.ember-patched"
  mv "$src.partial" "$src"
  echo "$src"
}

build_libs() {
  local src; src="$(patched_source)"
  local flags=("${COMMON_FLAGS[@]}" -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON
               -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF)
  local key; key="$LLAMA_COMMIT-$(flags_key "${flags[@]}" "patches=$(patches_key)")"
  local prefix="$CACHE/llama.cpp/$key"
  if [[ -f "$prefix/.ember-complete" ]]; then echo "$prefix"; return; fi
  log "building libllama + ggml into $prefix (takes a few minutes on 2 cores)"
  local build="$CACHE/llama.cpp-build/$key"
  rm -rf "$build" "$prefix"
  cmake -S "$src" -B "$build" -G Ninja "${flags[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" >&2
  cmake --build "$build" -j "$JOBS" --target llama >&2
  cmake --install "$build" >&2
  touch "$prefix/.ember-complete"
  echo "$prefix"
}

build_server() {
  local src; src="$(fetch_source)"
  local flags=("${COMMON_FLAGS[@]}" -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_COMMON=ON
               -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON)
  local key; key="$LLAMA_COMMIT-$(flags_key "${flags[@]}")"
  local build="$CACHE/llama-server/$key"
  if [[ -x "$build/bin/llama-server" && -f "$build/.ember-complete" ]]; then
    echo "$build/bin/llama-server"; return
  fi
  log "building llama-server into $build"
  cmake -S "$src" -B "$build" -G Ninja "${flags[@]}" >&2
  cmake --build "$build" -j "$JOBS" --target llama-server >&2
  touch "$build/.ember-complete"
  echo "$build/bin/llama-server"
}

mkdir -p "$CACHE"
# One build at a time per machine: a second caller (another checkout, a parallel CI job) waits
# here and then finds the finished build instead of deleting it halfway.
exec 9>"$CACHE/.lock"
flock 9
case "${1:-prefix}" in
  prefix) build_libs ;;
  server) build_server ;;
  source) fetch_source ;;
  *) echo "usage: $0 {prefix|server|source}" >&2; exit 2 ;;
esac
