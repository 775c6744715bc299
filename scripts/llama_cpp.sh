#!/usr/bin/env bash
# Fetches llama.cpp from the npm package node-llama-cpp (the only source this project
# reaches), verifies the pinned commit, applies ember's patches (third_party/llama.cpp-patches,
# each explained in its header) and builds libllama + ggml as shared libraries with the CPU
# backend as run-time-selected variants (one per instruction-set level; docs/cpu.md), into a
# cache directory keyed by commit, patches, flags and compiler. The build is the same on every
# machine (nothing depends on the CPU it runs on) and reused when present.
# llama-server (for the comparison benchmark) is built natively from the pristine source.
#
#   scripts/llama_cpp.sh prefix        -> builds (if needed) and prints the install prefix
#   scripts/llama_cpp.sh server        -> builds (if needed) llama-server and prints its path
#   scripts/llama_cpp.sh common        -> builds (if needed) llama.cpp's chat library (common/
#                                         chat, Jinja, JSON schema -> GBNF) as a static archive
#                                         against the `prefix` build and prints its install prefix
#   scripts/llama_cpp.sh source        -> prints the path of the checked-out source
#   scripts/llama_cpp.sh check         -> applies the patch series to the pristine source and
#                                         names the first patch that fails, and why
#
# Environment: EMBER_CACHE_DIR (default ~/.cache/ember), EMBER_LLAMA_JOBS (default nproc),
# EMBER_CPU_VARIANTS (comma-separated ggml variant names; default: the set below),
# EMBER_LLAMA_SERVER_FLAGS (extra CMake flags for llama-server, e.g. "-DGGML_NATIVE=OFF
# -DGGML_AVX2=ON -DGGML_AVX512=ON ..." for an AVX-512 build without AMX),
# EMBER_TARGET (x86_64, the default, or aarch64: cross-compiled with cmake/aarch64-linux-gnu.cmake
# and ggml's ARM variants; scripts/cross_aarch64.sh).
set -euo pipefail

readonly NPM_PACKAGE="node-llama-cpp@3.22.1"
readonly LLAMA_COMMIT="de3ff815ea7d559ee917f063901b8986f038abc6"
readonly CACHE="${EMBER_CACHE_DIR:-$HOME/.cache/ember}"
readonly JOBS="${EMBER_LLAMA_JOBS:-$(nproc)}"
readonly PATCH_DIR="$(cd "$(dirname "$0")/.." && pwd)/third_party/llama.cpp-patches"
# x86-64 baseline, x86-64-v2, AVX2, AVX-512 (F/CD/VL/DQ/BW), + VNNI, + VBMI/VNNI, + BF16, + AMX:
# docs/cpu.md says which CPUs get which and why the other ggml variants are left out.
readonly TARGET="${EMBER_TARGET:-x86_64}"
readonly REPO="$(cd "$(dirname "$0")/.." && pwd)"
case "$TARGET" in
  x86_64) DEFAULT_CPU_VARIANTS="x64,sse42,haswell,skylakex,cascadelake,icelake,zen4,sapphirerapids"
          TARGET_FLAGS=() ;;
  # ARMv8.0; + dot product and FP16 (Graviton 2, Neoverse N1); + SVE and int8 matmul
  # (Graviton 3, Neoverse V1); + SVE2 (Graviton 4, Neoverse V2). ggml's armv9.2 variants need
  # SME, which g++ 12 cannot compile.
  aarch64) DEFAULT_CPU_VARIANTS="armv8.0_1,armv8.2_2,armv8.6_1,armv8.6_2"
           TARGET_FLAGS=(-DCMAKE_TOOLCHAIN_FILE="$REPO/cmake/aarch64-linux-gnu.cmake") ;;
  *) echo "EMBER_TARGET must be x86_64 or aarch64, not $TARGET" >&2; exit 2 ;;
esac
readonly DEFAULT_CPU_VARIANTS TARGET_FLAGS
readonly CPU_VARIANTS="${EMBER_CPU_VARIANTS:-$DEFAULT_CPU_VARIANTS}"
readonly COMMON_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release -DGGML_CPU=ON -DGGML_OPENMP=ON
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF)

log() { echo "[llama_cpp] $*" >&2; }

flags_key() {  # stable short hash of the flags and the compiler
  local cxx=g++
  [[ "$TARGET" == aarch64 ]] && cxx=aarch64-linux-gnu-g++
  { printf '%s\n' "$@"; "$cxx" --version | head -1; } | sha256sum | cut -c1-12
}

native_key() {  # the same plus the host's CPU features, for a -march=native build
  flags_key "$@" "$(grep -m1 '^flags' /proc/cpuinfo || true)"
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

patches_key() {  # short hash of the patches' names and diffs, "none" without patches
  local files=("$PATCH_DIR"/*.patch) f
  [[ -e "${files[0]}" ]] || { echo none; return; }
  # A patch's header (its reason and measurements) is not compiled: editing it keeps the key.
  for f in "${files[@]}"; do basename "$f"; sed -n '/^diff --git /,$p' "$f"; done \
    | sha256sum | cut -c1-12
}

apply_patches() {  # applies the series in order to the checkout $1; names a patch that fails
  local patch out n=0
  for patch in "$PATCH_DIR"/*.patch; do
    if ! out="$(git -C "$1" apply "$patch" 2>&1)"; then
      log "patch $(basename "$patch") does not apply to $LLAMA_COMMIT after the $n before it:"
      printf '%s\n' "$out" | sed 's/^/[llama_cpp]   /' >&2
      log "rework it in a patch work tree: tools/llama_patches.py worktree DIR"
      return 1
    fi
    n=$((n + 1))
    log "applied $(basename "$patch")"
  done
}

check_patches() {
  local pristine; pristine="$(fetch_source)"
  local tmp; tmp="$(mktemp -d "$CACHE/tmp.XXXXXX")"
  git clone -q --shared "$pristine" "$tmp/src"
  git -C "$tmp/src" -c advice.detachedHead=false checkout -q "$LLAMA_COMMIT"
  local rc=0
  apply_patches "$tmp/src" || rc=1
  rm -rf "$tmp"
  ((rc == 0)) && log "all $(ls "$PATCH_DIR"/*.patch | wc -l) patches apply to $LLAMA_COMMIT"
  return $rc
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
  apply_patches "$src.partial" || exit 1
  touch "$src.partial/.ember-patched"
  mv "$src.partial" "$src"
  echo "$src"
}

build_libs() {
  local src; src="$(patched_source)"
  local flags=("${COMMON_FLAGS[@]}" "${TARGET_FLAGS[@]}" -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=ON
               -DGGML_BACKEND_DL=ON
               -DGGML_CPU_ALL_VARIANTS=ON "-DGGML_CPU_VARIANTS=${CPU_VARIANTS//,/;}"
               -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF)
  # The key names the toolchain by its content, not its path: another clone reuses the build.
  local key_flags=("${flags[@]}")
  if [[ "$TARGET" != x86_64 ]]; then
    key_flags=("${key_flags[@]/#-DCMAKE_TOOLCHAIN_FILE=*/toolchain=$(sha256sum < \
      "$REPO/cmake/aarch64-linux-gnu.cmake" | cut -c1-12)}")
  fi
  local key; key="$LLAMA_COMMIT-$(flags_key "${key_flags[@]}" "patches=$(patches_key)")"
  [[ "$TARGET" == x86_64 ]] || key="$TARGET-$key"
  local prefix="$CACHE/llama.cpp/$key"
  if [[ -f "$prefix/.ember-complete" ]]; then echo "$prefix"; return; fi
  log "building libllama + ggml into $prefix (takes a few minutes on 2 cores)"
  local build="$CACHE/llama.cpp-build/$key"
  rm -rf "$build" "$prefix"
  cmake -S "$src" -B "$build" -G Ninja "${flags[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" >&2
  cmake --build "$build" -j "$JOBS" --target llama >&2
  cmake --install "$build" >&2
  write_build_info "$prefix"
  touch "$prefix/.ember-complete"
  echo "$prefix"
}

write_build_info() {  # what ember's CMake reads: --version and /metrics report it
  local names=() patch
  for patch in "$PATCH_DIR"/*.patch; do names+=("$(basename "$patch" .patch)"); done
  {
    echo "commit=$LLAMA_COMMIT"
    echo "package=$NPM_PACKAGE"
    echo "patches=$(IFS=,; echo "${names[*]}")"
    echo "variants=$CPU_VARIANTS"
    echo "variant_dir=$1/bin"
    echo "target=$TARGET"
  } > "$1/ember-build.txt"
}

# llama.cpp's common chat library (src/chat/ only; docs/chat.md), compiled by ember's own small
# CMake project (cmake/llama_common) against the installed libllama, into its own cache
# directory: the libllama build and its key stay as they are, and ggml is not rebuilt. The key
# adds to the libllama build's key (commit, patches, flags, compiler, target) the hash of that
# CMake project.
build_common() {
  local libs; libs="$(build_libs)"
  local src; src="$(patched_source)"
  local project="$REPO/cmake/llama_common"
  local flags=(-DCMAKE_BUILD_TYPE=Release "${TARGET_FLAGS[@]}")
  local key_flags=(-DCMAKE_BUILD_TYPE=Release "libllama=$(basename "$libs")"
                   "project=$(cat "$project"/CMakeLists.txt "$project"/*.cpp | sha256sum | cut -c1-12)")
  local key; key="$(basename "$libs")-$(flags_key "${key_flags[@]}")"
  local prefix="$CACHE/llama-common/$key"
  if [[ -f "$prefix/.ember-complete" ]]; then echo "$prefix"; return; fi
  log "building llama.cpp's common chat library into $prefix (a few minutes on 2 cores)"
  local build="$CACHE/llama-common-build/$key" start=$SECONDS
  rm -rf "$build" "$prefix"
  cmake -S "$project" -B "$build" -G Ninja "${flags[@]}" -DLLAMA_SOURCE="$src" \
    -DLLAMA_PREFIX="$libs" -DLLAMA_COMMIT="$LLAMA_COMMIT" -DCMAKE_INSTALL_PREFIX="$prefix" >&2
  cmake --build "$build" -j "$JOBS" >&2
  cmake --install "$build" >&2
  { echo "commit=$LLAMA_COMMIT"; echo "libllama=$libs"; echo "target=$TARGET"
    echo "build_seconds=$((SECONDS - start))"; } > "$prefix/ember-common-build.txt"
  rm -rf "$build"
  touch "$prefix/.ember-complete"
  log "built the common chat library in $((SECONDS - start)) s"
  echo "$prefix"
}

build_server() {
  local src; src="$(fetch_source)"
  local flags=("${COMMON_FLAGS[@]}" -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF
               -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
               ${EMBER_LLAMA_SERVER_FLAGS:-})
  local key; key="$LLAMA_COMMIT-$(native_key "${flags[@]}")"
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
  common) build_common ;;
  check) check_patches ;;
  *) echo "usage: $0 {prefix|common|server|source|check}" >&2; exit 2 ;;
esac
